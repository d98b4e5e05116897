"""Official grading determinism: the unmodified `swebench.harness.run_evaluation` grades the same
rows the same way every time.

Rows are real synthetic tasks made by swelego's own pipeline (`synthesize_repo`) from PyPI sdists
with quick suites, or an existing set given with `--rows` (a synth output directory or a JSONL
file). The official harness (through `swelego.harness.evaluate_official`) then grades

  gold      the rows' gold patches, `--runs` times (separate run ids): 100% resolved every run
  no-op     a patch that applies but fixes nothing (adds one text file), once: 0% resolved
  empty     the empty patch "", once: swebench does not run these, it reports them as empty

and, `--naive-runs` times (default: as many as `--runs`), the gold patches again under the old
eval-script shape (`swelego.adversarial.naive_eval_script`: `set -x`, the markers only as trace
lines on stderr), whose start marker once went missing from the captured output.

It prints one table of runs (rows, resolved, resolved %, errors, seconds), the determinism per
shape (rows whose gold verdict differed between runs: 0 is the target), and for every gold row
not resolved in some run the cause read from the harness logs
(`WORKDIR/logs/run_evaluation/<run_id>/<model>/<instance>/`). Nothing is asserted.

Run it on an engine no other swelego process is using: images committed from a sandbox carry
its `swelego.sandbox` / `swelego.owner` labels, the harness's containers inherit them, and a
concurrent `gc_containers()` (every rollout start calls it) force-removes them mid-run. The
benchmark says when the row images carry the label, and names that cause per row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swelego.harness import APPLY_FAILED, END, RESET_FAILED, START, evaluate_official
from swelego.sandbox import docker_client
from swelego.sandbox.docker import LABEL as SANDBOX_LABEL
from swelego.schema import TaskInstance, load_dataset, save_dataset

NAMESPACE = "swelego-bench-official"
# Quick suites the project already uses (configs/data/demo.yaml, benchmarks/real_envs.py).
DEFAULT_SOURCES = ("pypi:toolz==1.0.0", "pypi:inflection==0.5.1", "pypi:cachetools==5.5.0")
MODEL = "swelego-determinism"
# Applies everywhere and touches nothing the tests read: graded like the unfixed row.
NOOP_PATCH = ("diff --git a/swelego_noop.txt b/swelego_noop.txt\nnew file mode 100644\n--- /dev/null\n"
              "+++ b/swelego_noop.txt\n@@ -0,0 +1 @@\n+no fix here\n")
# What swebench's instance log says when the eval container vanished under it.
CONTAINER_GONE = ("error executing setns process", "cannot exec in a stopped", "ttrpc: closed", "is not running",
                  "No such container", "Failed to kill container")
# Wide tables stay readable when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass
class Run:
    shape: str  # "current" (the rows' eval_script) or "naive" (the old set -x shape)
    kind: str  # gold / no-op / empty
    run_id: str
    verdicts: dict[str, str] = field(default_factory=dict)  # instance_id -> resolved/unresolved/error/empty
    seconds: float = 0.0
    failure: str = ""  # the harness itself failed

    def count(self, verdict: str) -> int:
        return sum(v == verdict for v in self.verdicts.values())


# ---- rows ------------------------------------------------------------------------------------

def load_rows(path: Path) -> list[TaskInstance]:
    """A JSONL file, a dataset directory, or a synth output directory (even one whose run was
    killed before it wrote tasks.jsonl: its candidate stores hold the rows)."""
    problems: list[str] = []
    if path.is_dir() and not (path / "tasks.jsonl").exists() and not (path / "dataset").exists() \
            and (path / "candidates").is_dir():
        from data_gen.synth.pipeline import collect_rows

        return collect_rows(path)
    rows = load_dataset(path, problems=problems)
    for p in problems:
        console.print(f"[yellow]{escape(p)}[/yellow]")
    return rows


def synthesize(sources: list[str], out: Path, *, max_candidates: int, workers: int, namespace: str,
               test_timeout: float) -> list[TaskInstance]:
    """The project's own pipeline, one repository after another; resumes in `out`."""
    from data_gen.synth.pipeline import SynthConfig, collect_rows, synthesize_repo
    from data_gen.validate import ValidateConfig

    cfg = SynthConfig(out=str(out.resolve()), max_candidates=max_candidates, workers=workers, namespace=namespace,
                      validate=ValidateConfig(test_timeout=test_timeout))
    for source in sources:
        t0 = time.perf_counter()

        def progress(repo: str, done: int, total: int) -> None:
            if done == total or done % 10 == 0:
                console.print(f"[dim]{escape(repo)}: {done}/{total} candidates[/dim]", highlight=False)

        try:
            rep = synthesize_repo(source, cfg, progress=progress)
        except Exception as e:  # noqa: BLE001 - one broken package must not stop the benchmark
            console.print(f"[red]{escape(source)}: {escape(str(e).splitlines()[0] if str(e) else repr(e))}[/red]")
            continue
        kept = sum(r["status"] == "kept" for r in rep.records)
        console.print(f"{escape(source)}: {kept} rows kept of {len(rep.records)} candidates in "
                      f"{time.perf_counter() - t0:.0f} s", highlight=False)
    rows = collect_rows(out)
    import datasets

    datasets.disable_progress_bars()
    save_dataset(rows, out)
    return rows


# ---- grading ---------------------------------------------------------------------------------

def grade(rows: list[TaskInstance], patch_of, *, shape: str, kind: str, run_id: str, workdir: Path,
          workers: int, timeout: int) -> Run:
    run = Run(shape, kind, run_id)
    preds = [{"instance_id": t.instance_id, "model_patch": patch_of(t), "model_name_or_path": MODEL} for t in rows]
    console.print(f"[bold]{shape} / {kind}[/bold] run {run_id}: {len(rows)} rows, {workers} worker(s)")
    t0 = time.perf_counter()
    try:
        res = evaluate_official(rows, preds, run_id=run_id, workdir=workdir, max_workers=workers, timeout=timeout,
                                model=MODEL)
    except Exception as e:  # noqa: BLE001 - report it in the table, go on with the other runs
        run.seconds = time.perf_counter() - t0
        run.failure = str(e).splitlines()[0][:300] if str(e) else repr(e)
        run.verdicts = {t.instance_id: "error" for t in rows}
        console.print(f"[red]{escape(run.failure)}[/red]")
        return run
    run.seconds = time.perf_counter() - t0
    s = res.summary
    resolved, errors, empty = set(s.get("resolved_ids", [])), set(s.get("error_ids", [])), set(s.get("empty_patch_ids", []))
    for t in rows:
        i = t.instance_id
        run.verdicts[i] = ("resolved" if i in resolved else "error" if i in errors else "empty" if i in empty
                           else "unresolved")
    console.print(f"[dim]  {run.count('resolved')} resolved, {run.count('error')} errors, "
                  f"{run.seconds:.0f} s[/dim]", highlight=False)
    return run


def diagnose(workdir: Path, run: Run, instance_id: str) -> str:
    """Why the official harness did not resolve one row, from what it left in its log folder."""
    d = workdir / "logs" / "run_evaluation" / run.run_id / MODEL / instance_id
    out_f, rep_f, inst_f = d / "test_output.txt", d / "report.json", d / "run_instance.log"
    inst = inst_f.read_text(errors="replace") if inst_f.exists() else ""
    gone = any(m in inst for m in CONTAINER_GONE)
    if not out_f.exists():
        if gone:
            return "no test output: the container went away before the tests ran"
        tail = [ln for ln in inst.splitlines() if ln.strip()]
        hint = next((ln for ln in reversed(tail) if "Error" in ln or "Failed" in ln or "timed out" in ln), "")
        return f"no test output ({escape(hint.strip()[:160]) or 'no instance log'})"
    log = out_f.read_text(errors="replace")
    causes = []
    if gone:
        # The eval container stopped under the running tests: the captured output ends early
        # (no end marker). A `gc_containers()` of a concurrent swelego process does this to a
        # container whose image carries the swelego.sandbox / swelego.owner labels.
        causes.append("the container went away while the tests ran (output cut short)")
    if START not in log:
        causes.append("start marker missing from the captured output")
    if END not in log:
        causes.append("end marker missing")
    if RESET_FAILED in log:
        causes.append("test-infrastructure reset failed")
    if APPLY_FAILED in log:
        causes.append("test patch did not apply")
    if "Timeout error" in log:
        causes.append("timed out")
    if rep_f.exists():
        rep = json.loads(rep_f.read_text()).get(instance_id, {})
        status = rep.get("tests_status") or {}
        for group in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            failed = (status.get(group) or {}).get("failure") or []
            if failed:
                causes.append(f"{group} failed: {len(failed)} ({escape(', '.join(failed[:3]))}"
                              f"{', ...' if len(failed) > 3 else ''})")
        if not causes and not rep.get("patch_successfully_applied", True):
            causes.append("graded as patch not applied (no status map)")
    return "; ".join(causes) or "unknown (see the log folder)"


# ---- report ----------------------------------------------------------------------------------

def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def print_runs(runs: list[Run], n: int) -> None:
    t = Table(title=f"Official harness (swebench run_evaluation, unmodified) over {n} rows")
    for col in ("eval script", "patch", "run", "rows", "resolved", "resolved %", "unresolved", "errors", "empty",
                "seconds", "s / row"):
        t.add_column(col, justify="left" if col in ("eval script", "patch", "run") else "right")
    for r in runs:
        rows = len(r.verdicts)
        t.add_row(r.shape, r.kind, r.run_id, str(rows), str(r.count("resolved")), pct(r.count("resolved"), rows),
                  str(r.count("unresolved")), str(r.count("error")), str(r.count("empty")), f"{r.seconds:.0f}",
                  f"{r.seconds / rows:.2f}" if rows else "-")
    t.caption = ("current = the rows' eval_script (one stream, markers echoed); naive = the swebench-standard "
                 "shape with set -x trace markers; no-op = a patch that adds one text file; empty = the patch \"\" "
                 "(swebench skips it without running the tests)")
    console.print(t)
    for r in runs:
        if r.failure:
            console.print(f"[red]{r.shape} / {r.kind} {r.run_id}: the harness failed: {escape(r.failure)}[/red]")


def zero_resolved(runs: list[Run], shape: str, kind: str) -> str:
    of_kind = [r for r in runs if r.shape == shape and r.kind == kind]
    if not of_kind:
        return "-"
    ok = all(r.count("resolved") == 0 and not r.failure for r in of_kind)
    return "[green]yes[/green]" if ok else "[red]no[/red]"


def print_determinism(runs: list[Run], workdir: Path) -> dict[str, dict]:
    result: dict[str, dict] = {}
    t = Table(title="Determinism of the gold verdicts")
    for col in ("eval script", "gold runs", "rows", "verdict differed between runs", "resolved every run",
                "gold 100% every run", "no-op 0%", "empty 0%"):
        t.add_column(col, justify="left" if col == "eval script" else "right")
    for shape in dict.fromkeys(r.shape for r in runs):
        gold = [r for r in runs if r.shape == shape and r.kind == "gold"]
        if not gold:
            continue
        ids = list(gold[0].verdicts)
        flipped = [i for i in ids if len({r.verdicts.get(i) for r in gold}) > 1]
        always = [i for i in ids if all(r.verdicts.get(i) == "resolved" for r in gold)]
        full = all(r.count("resolved") == len(r.verdicts) for r in gold)
        t.add_row(shape, str(len(gold)), str(len(ids)),
                  (f"[green]{len(flipped)}[/green]" if not flipped else f"[red]{len(flipped)}[/red]")
                  if len(gold) > 1 else "- (one run)",
                  f"{len(always)}/{len(ids)}", "[green]yes[/green]" if full else "[red]no[/red]",
                  zero_resolved(runs, shape, "no-op"), zero_resolved(runs, shape, "empty"))
        result[shape] = {"flipped": flipped, "always": len(always), "rows": len(ids), "full": full}
    console.print(t)

    bad = [(r, i) for r in runs if r.kind == "gold" for i, v in r.verdicts.items() if v != "resolved"]
    if bad:
        t = Table(title="Gold rows the official harness did not resolve, and why (from its logs)")
        for col in ("eval script", "run", "instance", "verdict", "cause"):
            t.add_column(col)
        for r, i in bad[:60]:
            t.add_row(r.shape, r.run_id, i, r.verdicts[i], diagnose(workdir, r, i))
        if len(bad) > 60:
            t.caption = f"{len(bad) - 60} more not shown"
        console.print(t)
    return result


# ---- main ------------------------------------------------------------------------------------

def namespace_tags(client, namespace: str) -> set[str]:
    return {tag for img in client.images.list() for tag in img.tags if tag.startswith(f"{namespace}/")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=Path, default=None,
                    help="existing rows (a synth output directory, a dataset directory or a JSONL file): "
                         "skips generation; their images must exist locally")
    ap.add_argument("--source", action="append", default=None,
                    help=f"repository source to synthesize rows from (repeatable; default: {' '.join(DEFAULT_SOURCES)})")
    ap.add_argument("--max-candidates", type=int, default=25,
                    help="synth cap: candidates per package and strategy (procedural, combine)")
    ap.add_argument("--synth-workers", type=int, default=2, help="warm sandboxes per package while synthesizing")
    ap.add_argument("--test-timeout", type=float, default=300.0, help="seconds for one synth test run")
    ap.add_argument("--min-rows", type=int, default=100, help="say so when fewer rows than this were obtained")
    ap.add_argument("--limit", type=int, default=None, help="grade only the first N rows (by instance id)")
    ap.add_argument("--runs", type=int, default=3, help="official gradings of the gold patches (separate run ids)")
    ap.add_argument("--naive-runs", type=int, default=None,
                    help="gold gradings with the old eval-script shape (naive_eval_script) for comparison "
                         "(default: as many as --runs; 0 skips them)")
    ap.add_argument("--workers", type=int, default=2, help="run_evaluation --max_workers")
    ap.add_argument("--timeout", type=int, default=900, help="run_evaluation --timeout per instance (seconds)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where rows (WORKDIR/rows), harness logs and reports go (default: a new temp dir)")
    ap.add_argument("--namespace", default=NAMESPACE, help="image name prefix of the images synthesis builds")
    ap.add_argument("--keep-images", action="store_true",
                    help=f"keep the images this run built (under --namespace, default {NAMESPACE}/)")
    args = ap.parse_args()

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="swelego-official-determinism-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"workdir {workdir}", highlight=False)
    client = docker_client()
    before = namespace_tags(client, args.namespace)
    try:
        # ---- rows ------------------------------------------------------------------------
        t0 = time.perf_counter()
        if args.rows is not None:
            rows = load_rows(args.rows)
            origin = f"reused from {args.rows}"
        else:
            sources = args.source or list(DEFAULT_SOURCES)
            rows = synthesize(sources, workdir / "rows", max_candidates=args.max_candidates,
                              workers=args.synth_workers, namespace=args.namespace, test_timeout=args.test_timeout)
            origin = f"synthesized from {', '.join(sources)} into {workdir / 'rows'} (--rows reuses them)"
        rows_s = time.perf_counter() - t0
        rows = sorted(rows, key=lambda t: t.instance_id)
        missing, sandbox_labelled = [], 0
        for t in rows:
            try:
                labels = client.images.get(t.image).labels or {}
            except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound and its kin
                missing.append(t)
                continue
            sandbox_labelled += SANDBOX_LABEL in labels
        if sandbox_labelled:
            # Containers inherit image labels: swebench's eval containers then look like orphaned
            # swelego sandboxes, and any swelego process's gc_containers() (a rollout's start)
            # force-removes them mid-run when the owner pid in the label is not alive.
            console.print(f"[yellow]{sandbox_labelled} row image(s) carry the {SANDBOX_LABEL} label: a concurrent "
                          f"`swelego sandbox gc` / rollout start may remove the harness's containers[/yellow]")
        if missing:
            console.print(f"[yellow]{len(missing)} row(s) skipped: their image is not here "
                          f"(e.g. {escape(missing[0].image)})[/yellow]")
            rows = [t for t in rows if t not in missing]
        if args.limit:
            rows = rows[:args.limit]
        by_repo: dict[str, int] = {}
        for t in rows:
            by_repo[t.repo] = by_repo.get(t.repo, 0) + 1
        console.print(f"[bold]rows[/bold] {len(rows)} ({', '.join(f'{k}: {v}' for k, v in by_repo.items())}); "
                      f"{origin}; {rows_s:.0f} s", highlight=False)
        if len(rows) < args.min_rows:
            console.print(f"[yellow]fewer than {args.min_rows} rows: raise --max-candidates or add a --source[/yellow]")
        if not rows:
            return

        # ---- gradings --------------------------------------------------------------------
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kw = dict(workdir=workdir, workers=args.workers, timeout=args.timeout)
        runs = [grade(rows, lambda t: t.patch, shape="current", kind="gold", run_id=f"det-{stamp}-gold{k}", **kw)
                for k in range(1, args.runs + 1)]
        runs.append(grade(rows, lambda t: NOOP_PATCH, shape="current", kind="no-op", run_id=f"det-{stamp}-noop", **kw))
        runs.append(grade(rows, lambda t: "", shape="current", kind="empty", run_id=f"det-{stamp}-empty", **kw))
        naive_runs = args.runs if args.naive_runs is None else args.naive_runs
        if naive_runs:
            from swelego.adversarial import naive_eval_script

            naive = [t.model_copy(update={"eval_script": naive_eval_script(t)}) for t in rows]
            runs += [grade(naive, lambda t: t.patch, shape="naive", kind="gold", run_id=f"det-{stamp}-naive{k}", **kw)
                     for k in range(1, naive_runs + 1)]

        # ---- report ----------------------------------------------------------------------
        print_runs(runs, len(rows))
        det = print_determinism(runs, workdir)
        cur = det.get("current")
        if cur:
            noop_zero = all(r.count("resolved") == 0 and not r.failure for r in runs if r.kind in ("no-op", "empty"))
            met = (cur["rows"] >= args.min_rows and not cur["flipped"] and cur["full"] and args.runs >= 3
                   and noop_zero)
            console.print(f"target: >= {args.min_rows} rows x >= 3 official gold gradings, 0 verdicts differing, "
                          f"100% resolved every run, no-op/empty 0% -> {cur['rows']} rows x {args.runs}, "
                          f"{len(cur['flipped'])} differing, {cur['always']}/{cur['rows']} resolved every run: "
                          + ("[green]MET[/green]" if met else "[red]NOT MET[/red]"), highlight=False)
        console.print(f"harness logs: {workdir / 'logs' / 'run_evaluation'}", highlight=False)
    finally:
        if not args.keep_images:
            removed = 0
            for tag in sorted(namespace_tags(client, args.namespace) - before):
                try:
                    client.images.remove(tag, force=True)
                    removed += 1
                except Exception as e:  # noqa: BLE001
                    console.print(f"[yellow]could not remove {tag}: {escape(str(e))}[/yellow]")
            console.print(f"[dim]removed {removed} image(s) this run built under {args.namespace}/[/dim]",
                          highlight=False)

if __name__ == "__main__":
    main()
