"""The build's progress display (rich): a line per stage while it runs, a table at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_gen.build.engine import BuildReport


class StageBar:
    """The stage's line in the build's progress display."""

    def __init__(self, progress: Progress | None, task_id: int | None):
        self._p, self._t = progress, task_id

    def update(self, completed: float | None = None, total: float | None = None, status: str | None = None,
               advance: float | None = None) -> None:
        if self._p is None:
            return
        kw: dict[str, Any] = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if advance is not None:
            kw["advance"] = advance
        if status is not None:
            kw["status"] = status
        self._p.update(self._t, **kw)
        task = next((t for t in self._p.tasks if t.id == self._t), None)
        if task is not None:
            total_text = "?" if task.total is None else f"{int(task.total)}"
            self._p.update(self._t, count=f"{int(task.completed)}/{total_text}")


class BuildProgress:
    """One progress display for the whole build: a line per stage."""

    def __init__(self, console: Console, names: tuple[str, ...], enabled: bool = True):
        self.progress = Progress(
            TextColumn("[bold]{task.description:<8}"), BarColumn(bar_width=30), TextColumn("{task.fields[count]:>9}"),
            TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=console, transient=False,
            disable=not enabled)
        self.ids = {name: self.progress.add_task(name, total=None, start=False, count="", status="waiting")
                    for name in names}

    def bar(self, name: str) -> StageBar:
        return StageBar(self.progress, self.ids[name])

    def start(self, name: str, status: str) -> None:
        self.progress.start_task(self.ids[name])
        self.progress.update(self.ids[name], status=status)

    def finish(self, name: str, status: str, done: bool = True) -> None:
        tid = self.ids[name]
        task = self.progress.tasks[tid]
        if done:
            total = task.total if task.total else 1
            self.progress.update(tid, total=total, completed=total)
        self.progress.update(tid, status=status)
        if task.started:
            self.progress.stop_task(tid)

    def __enter__(self) -> BuildProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def print(self, msg: str) -> None:
        self.progress.console.print(escape(msg), highlight=False)


def result_text(name: str, s: dict) -> str:
    if name == "synth":
        return f"{s.get('rows', 0)} tasks from {s.get('repositories', 0)} repositories"
    if name == "real":
        return f"{s.get('rows', 0)} tasks"
    if name == "tasks":
        return f"{s.get('rows', 0)} tasks ({s.get('dropped', 0)} dropped)"
    if name == "rollout":
        return f"{s.get('trajectories', 0)} trajectories, {s.get('resolved', 0)} resolved"
    if name == "filter":
        return f"{s.get('kept', 0)}/{s.get('input', 0)} kept"
    if name == "export":
        return f"{s.get('records', 0)} records"
    return "README.md"


def print_summary(console: Console, report: BuildReport) -> None:
    t = Table(title=f"data build ({report.seconds:.0f}s)")
    for col in ("stage", "this run", "complete", "seconds", "container-h", "result"):
        t.add_column(col, justify="left" if col in ("stage", "this run", "result") else "right")
    for name in report.actions:
        st = report.states.get(name)
        act = report.actions.get(name, "")
        if st is None:
            t.add_row(name, act, "-", "-", "-", "")
            continue
        result = result_text(name, st.summary)
        t.add_row(name, act, "yes" if st.complete else "[yellow]no", f"{st.seconds:.0f}",
                  f"{st.container_seconds / 3600:.3f}", result)
    console.print(t)
