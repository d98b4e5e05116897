"""The build engine: stages, their recorded state, their keys and the runner.

It knows nothing of the data stages themselves: `run_stages(cfg, stages, display=...)` runs any
tuple of `Stage`s over any config dataclass with an `out` (and a `name`), and reports to any
display with the `Display` methods (data_gen.build.display draws the rich one).

Skip and resume rule. A stage's *key* hashes the config it reads and the content (sha256) of
the upstream outputs it reads. A stage is complete when its state file holds the same key,
says it finished without failed items, and its outputs are on disk with the recorded hashes;
a complete stage is skipped. Otherwise it runs: in place, so the stage's own stores skip the
work already done (a killed build resumes mid-stage), unless the part of its config that
invalidates earlier work (its *reset* config: images, test timeouts, the policy, ...) changed
since, in which case its working files are cleared first. Downstream stages see upstream
outputs by content, so they rerun only when what they read really changed: deleting a stage's
output reruns that stage, and the next stages only if its new output differs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from swelego.config import config_to_dict, dump_config
from swelego.errors import SwelegoError
from swelego.records import append_jsonl, write_json_atomic

FORMAT = 1  # bump when the layout of a stage's outputs changes: every key changes with it


# -- stage records -------------------------------------------------------------------------------------


@dataclass
class StageState:
    """What `state/<stage>.json` records about a stage's last run."""

    stage: str
    key: str = ""
    reset_hash: str = ""
    complete: bool = False  # finished, and without failed items
    outputs: dict[str, str] = field(default_factory=dict)  # path under OUT -> sha256 (read downstream)
    artifacts: list[str] = field(default_factory=list)  # further paths that must exist
    seconds: float = 0.0  # wall time of the attempts that produced the outputs
    container_seconds: float = 0.0  # sandbox time, summed from the stage's own records
    failed: int = 0
    summary: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    attempts: int = 0

    @classmethod
    def load(cls, path: Path) -> StageState | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self), ensure_ascii=True, newline=False)


@dataclass
class StageResult:
    """What a stage's run function hands back."""

    outputs: list[str]  # paths under OUT whose content downstream stages read
    artifacts: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    container_seconds: float = 0.0
    failed: int = 0  # items that failed: the stage stays incomplete and a rerun retries them


class Bar(Protocol):
    """A stage's line in the display."""

    def update(self, completed: float | None = None, total: float | None = None, status: str | None = None,
               advance: float | None = None) -> None: ...


class Display(Protocol):
    """What the runner reports to (data_gen.build.display.BuildProgress draws it with rich)."""

    def bar(self, name: str) -> Bar: ...

    def start(self, name: str, status: str) -> None: ...

    def finish(self, name: str, status: str, done: bool = True) -> None: ...

    def print(self, msg: str) -> None: ...

    def __enter__(self) -> Display: ...

    def __exit__(self, *exc) -> None: ...


@dataclass
class Context:
    """Everything a stage's run function may use."""

    cfg: Any
    out: Path
    bar: Bar
    log: Callable[[str], None]
    states: dict[str, StageState]

    @property
    def executor(self) -> str:
        return self.cfg.executor


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]  # stages whose outputs this one reads
    paths: tuple[str, ...]  # its working files under OUT, cleared on reset
    config: Callable[[Any], Any]  # the config its key hashes
    reset: Callable[[Any], Any] | None  # config that invalidates partial work; None: always start clean
    run: Callable[[Context], StageResult]
    doc: str


@dataclass
class BuildReport:
    out: Path
    actions: dict[str, str]  # stage -> ran | resumed | skipped | not selected | failed
    states: dict[str, StageState]
    seconds: float


# -- helpers ---------------------------------------------------------------------------------------------


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(config_to_dict(obj), sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:300] if text else type(e).__name__)


def state_path(out: Path, stage: str) -> Path:
    return out / "state" / f"{stage}.json"


def load_states(out: Path, names: tuple[str, ...]) -> dict[str, StageState]:
    states = {}
    for name in names:
        st = StageState.load(state_path(out, name))
        if st is not None:
            states[name] = st
    return states


def outputs_intact(out: Path, st: StageState) -> bool:
    """The recorded outputs are on disk with their recorded content, and the artifacts exist."""
    for rel, digest in st.outputs.items():
        p = out / rel
        if not p.is_file() or file_sha256(p) != digest:
            return False
    return all((out / rel).exists() for rel in st.artifacts)


def stage_key(stage: Stage, cfg: Any, states: dict[str, StageState]) -> str:
    inputs = {}
    for need in stage.needs:
        st = states.get(need)
        if st is None or not st.outputs:
            raise SwelegoError(f"stage {stage.name} reads the output of stage {need}, which has not run yet "
                               f"(run without --only / --from first)")
        inputs[need] = st.outputs
    return config_hash({"format": FORMAT, "stage": stage.name, "config": stage.config(cfg), "inputs": inputs})


def clear(out: Path, rels: tuple[str, ...]) -> None:
    for rel in rels:
        p = out / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def select_stages(names: tuple[str, ...], only: list[str] | tuple[str, ...] | None = None,
                  start: str | None = None) -> list[str]:
    for name in [*(only or ()), *([start] if start else [])]:
        if name not in names:
            raise SwelegoError(f"unknown stage {name!r} (stages: {', '.join(names)})")
    if only and start:
        raise SwelegoError("--only and --from do not combine; use one of them")
    if only:
        return [s for s in names if s in only]
    if start:
        return list(names[names.index(start):])
    return list(names)


# -- the runner ------------------------------------------------------------------------------------------


class _Run:
    """One run of the engine: the log, the states and what happened to each stage."""

    def __init__(self, cfg: Any, out: Path, display: Display, logf, force: bool, names: tuple[str, ...],
                 selected: list[str]):
        self.cfg, self.out, self.display, self.logf, self.force = cfg, out, display, logf, force
        self.states = load_states(out, names)
        self.actions: dict[str, str] = {}
        self.current = ""
        self.record: dict[str, Any] = {"started_at": now(), "selected": selected, "force": force, "stages": {}}

    def note(self, stage: str, msg: str) -> None:
        """A line in logs/build.log only."""
        self.logf.write(f"{now()} [{stage}] {msg}\n")

    def log(self, msg: str) -> None:
        """A line in logs/build.log and on the display."""
        self.note(self.current, msg)
        self.logf.flush()
        self.display.print(msg)

    def not_selected(self, stage: Stage) -> None:
        prev = self.states.get(stage.name)
        try:
            stale = prev is not None and prev.key != stage_key(stage, self.cfg, self.states)
        except SwelegoError:
            stale = True
        self.actions[stage.name] = "not selected" + (" (stale)" if stale else "")
        self.display.finish(stage.name, f"[dim]{self.actions[stage.name]}", done=False)

    def run(self, stage: Stage) -> None:
        key = stage_key(stage, self.cfg, self.states)
        prev = self.states.get(stage.name)
        if not self.force and prev is not None and prev.complete and prev.key == key and outputs_intact(self.out, prev):
            self.display.finish(stage.name, "[green]complete, skipped")
            self.actions[stage.name] = "skipped"
            self.record["stages"][stage.name] = {"action": "skipped"}
            self.note(stage.name, "skipped: complete for the same inputs and config")
            return
        reset_hash = config_hash(stage.reset(self.cfg)) if stage.reset is not None else ""
        resume = (not self.force and stage.reset is not None and prev is not None and prev.reset_hash == reset_hash)
        if not resume:
            clear(self.out, stage.paths)
        carried = prev.seconds if resume and prev is not None and not prev.complete else 0.0
        st = StageState(stage=stage.name, key=key, reset_hash=reset_hash, started_at=now(),
                        attempts=(prev.attempts if resume and prev is not None else 0) + 1, seconds=carried)
        st.save(state_path(self.out, stage.name))
        self.states[stage.name] = st
        action = "resumed" if resume and prev is not None else "ran"
        self.display.start(stage.name, "running")
        self.note(stage.name, f"{'resuming' if action == 'resumed' else 'running'} ({stage.doc})")
        t0 = time.monotonic()
        ctx = Context(cfg=self.cfg, out=self.out, bar=self.display.bar(stage.name), log=self.log, states=self.states)
        try:
            result = stage.run(ctx)
        except BaseException as e:
            self.failed(stage, st, carried + time.monotonic() - t0)
            if isinstance(e, KeyboardInterrupt):
                raise
            self.logf.write(traceback.format_exc())
            msg = str(e) if isinstance(e, SwelegoError) else f"{type(e).__name__}: {e}"
            raise SwelegoError(f"stage {stage.name} failed: {msg.strip().splitlines()[0] if msg.strip() else msg}"
                               " (details in logs/build.log; rerun to resume)") from None
        st.seconds = round(carried + time.monotonic() - t0, 2)
        self.finished(stage, st, result, action)

    def failed(self, stage: Stage, st: StageState, seconds: float) -> None:
        st.seconds = round(seconds, 2)
        st.save(state_path(self.out, stage.name))
        self.display.finish(stage.name, "[red]failed", done=False)
        self.actions[stage.name] = "failed"
        self.record["stages"][stage.name] = {"action": "failed", "seconds": st.seconds}
        self.append_record()

    def finished(self, stage: Stage, st: StageState, result: StageResult, action: str) -> None:
        st.finished_at = now()
        missing = [rel for rel in result.outputs if not (self.out / rel).is_file()]
        if missing:
            raise SwelegoError(f"stage {stage.name} did not write {', '.join(missing)}")
        st.outputs = {rel: file_sha256(self.out / rel) for rel in result.outputs}
        st.artifacts = list(result.artifacts)
        st.summary = result.summary
        st.container_seconds = result.container_seconds
        st.failed = result.failed
        st.complete = result.failed == 0
        st.save(state_path(self.out, stage.name))
        if result.failed:
            self.display.finish(stage.name, f"[yellow]partial: {result.failed} failed (rerun retries them)")
            action = "partial"
        else:
            self.display.finish(stage.name,
                                f"[green]{'resumed, ' if action == 'resumed' else ''}done in {st.seconds:.0f}s")
        self.actions[stage.name] = action
        self.record["stages"][stage.name] = {"action": action, "seconds": st.seconds}
        self.note(stage.name, f"{action} in {st.seconds:.1f}s; failed items: {result.failed}")

    def append_record(self) -> None:
        self.record["finished_at"] = now()
        append_jsonl(self.out / "state" / "runs.jsonl", [self.record], ensure_ascii=True)


def run_stages(cfg: Any, stages: tuple[Stage, ...], *, display: Display, only: list[str] | None = None,
               start: str | None = None, force: bool = False) -> BuildReport:
    """Run (or skip) every selected stage of `stages` in order; see the module docstring for the rule.
    `cfg.out` is the output directory (made absolute in place); the config is saved as config.yaml."""
    names = tuple(s.name for s in stages)
    selected = select_stages(names, only, start)
    out = Path(cfg.out).resolve()
    cfg.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    # A config may say how it is shown (BuildConfig.to_dict leaves out what the build sets itself).
    dump_config(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg, out / "config.yaml")
    t_build = time.monotonic()
    with display, (out / "logs" / "build.log").open("a", encoding="utf-8") as logf:
        run = _Run(cfg, out, display, logf, force, names, selected)
        run.log(f"build {getattr(cfg, 'name', '')} -> {out} (stages: {', '.join(selected)})")
        for stage in stages:
            run.current = stage.name
            if stage.name in selected:
                run.run(stage)
            else:
                run.not_selected(stage)
        run.append_record()
    return BuildReport(out=out, actions=run.actions, states=run.states, seconds=round(time.monotonic() - t_build, 1))
