"""Validation throughput benchmark: the same synthetic bug candidates of one real repository,
validated three ways in one run.

  (a) warm + test selection  one warm container per worker, reset with git between candidates;
                             only the tests that cover the mutated function run first, the full
                             suite only for candidates that break one of them (swelego's default)
  (b) warm + full suite      the same warm containers, full suite for every candidate
  (c) fresh + full suite     a new container per candidate (start -> validate -> close) and the
                             full suite, the way SWE-smith validates

For each mode it reports candidates validated, wall time, candidates/min, yield (valid /
candidates) and the speedup of (a) and (b) over (c), and it checks that the modes agree on which
candidates are valid and on their FAIL_TO_PASS sets. The one-off per-repository setup (stable
baseline; coverage map for (a)) is timed separately. Issue target: (a) >= 10x (c) at equal yield
on a repository whose test suite takes more than a few seconds. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from data_gen.synth.candidates import Candidate, procedural_candidates
from data_gen.synth.pipeline import _read_sources
from data_gen.validate import Baseline, CoverageMap, coverage_map, stable_baseline, validate_patch
from swelego.sandbox import DockerSandbox, SandboxLimits, docker_client
from swelego.sandbox.images import build_env_image

NAMESPACE = "swelego-bench"
# python-dateutil: ~2000 tests over loosely coupled modules (parser, tz, rrule, relativedelta,
# easter, isoparser); its test deps are not in the sdist metadata, and its setup.cfg turns pytest
# warnings into errors, which pytest 9's parametrize deprecation trips, hence the pins.
DEFAULT_SOURCE = "pypi:python-dateutil==2.9.0.post0"  # 2014 passing tests, ~4.6 s suite
DEFAULT_EXTRA_DEPS = ("hypothesis", "freezegun", "pytest<9")
TARGET_SPEEDUP = 10.0
STATUSES = ("valid", "invalid", "no_break", "no_tests", "apply_failed", "timeout", "error")
MODES = {
    "a": "warm + test selection",
    "b": "warm + full suite",
    "c": "fresh container + full suite",
}
# Wide tables stay readable when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass
class Result:
    cid: str
    status: str
    f2p: frozenset[str] = frozenset()
    tests_run: int = 0
    seconds: float = 0.0  # test time inside validate_patch (Outcome.seconds)
    error: str = ""
    selected: int | None = None  # mode (a): baseline-passing tests that cover the candidate

    @property
    def confirmed(self) -> bool:
        """Mode (a): the candidate needed the confirmation full-suite run (it broke a selected
        test). A full run reports every test; a selected-only run reports `selected` of them."""
        if self.status in ("valid", "invalid"):
            return True
        if self.status == "no_break":
            return self.tests_run != self.selected
        return self.status == "timeout" and self.tests_run == 0 and bool(self.selected)


@dataclass
class ModeRun:
    mode: str
    wall: float = 0.0
    results: dict[str, Result] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def valid(self) -> set[str]:
        return {cid for cid, r in self.results.items() if r.status == "valid"}

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results.values())

    @property
    def test_seconds(self) -> float:
        return sum(r.seconds for r in self.results.values())


def covering_tests(c: Candidate, cov: CoverageMap) -> set[str]:
    out: set[str] = set()
    for path, start, end in c.spans:
        out |= cov.tests_for(path, start, end)
    return out


def _validate(sb: DockerSandbox, c: Candidate, baseline: Baseline, env, covering, timeout: float,
              warm: bool) -> Result:
    try:
        o = validate_patch(sb, c.patch, baseline, test_cmd=env.test_cmd, log_parser=env.log_parser,
                           covering=covering, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - one broken candidate must not stop the benchmark
        if warm:
            sb.reset("fresh")
        return Result(c.id, "error", error=str(e)[:200])
    if warm and o.status == "timeout":
        sb.reset("fresh")  # whatever hung may have left state behind (as the pipeline does)
    return Result(c.id, o.status, frozenset(o.fail_to_pass), o.tests_run, o.seconds,
                  selected=len(covering & set(baseline.passing)) if covering is not None else None)


def run_warm(mode: str, cands: list[Candidate], baseline: Baseline, cov: CoverageMap | None, env, client,
             limits: SandboxLimits, workers: int, timeout: float) -> ModeRun:
    """Modes (a) and (b): `workers` warm containers (their start is inside the timed wall),
    reset with git between candidates by validate_patch."""
    run = ModeRun(mode)
    t0 = time.perf_counter()
    sandboxes = [DockerSandbox(env.image, client=client, limits=limits) for _ in range(workers)]
    pool: queue.Queue[DockerSandbox] = queue.Queue()
    try:
        for sb in sandboxes:
            sb.start()
            pool.put(sb)

        def one(c: Candidate) -> Result:
            covering = covering_tests(c, cov) if cov is not None else None
            sb = pool.get()
            try:
                return _validate(sb, c, baseline, env, covering, timeout, warm=True)
            finally:
                pool.put(sb)

        with ThreadPoolExecutor(max_workers=workers) as ex:
            for r in ex.map(one, cands):
                run.results[r.cid] = r
                _progress(mode, run.n, len(cands), r)
    finally:
        for sb in sandboxes:
            sb.close()
        run.wall = time.perf_counter() - t0
    return run


def run_fresh(cands: list[Candidate], baseline: Baseline, env, client, limits: SandboxLimits, workers: int,
              timeout: float) -> ModeRun:
    """Mode (c): a new container per candidate, start -> validate (full suite) -> close, all timed."""
    run = ModeRun("c")
    t0 = time.perf_counter()

    def one(c: Candidate) -> Result:
        sb = DockerSandbox(env.image, client=client, limits=limits)
        try:
            sb.start()
            return _validate(sb, c, baseline, env, None, timeout, warm=False)
        except Exception as e:  # noqa: BLE001 - e.g. a container that fails to start
            return Result(c.id, "error", error=str(e)[:200])
        finally:
            sb.close()

    with ThreadPoolExecutor(max_workers=workers) as ex:
        for r in ex.map(one, cands):
            run.results[r.cid] = r
            _progress("c", run.n, len(cands), r)
    run.wall = time.perf_counter() - t0
    return run


def _progress(mode: str, done: int, total: int, r: Result) -> None:
    extra = f" f2p={len(r.f2p)}" if r.f2p else ""
    extra += f" [red]{escape(r.error)}[/red]" if r.error else ""
    console.print(f"[dim]({mode}) {done}/{total} {r.cid} {r.status} tests_run={r.tests_run} "
                  f"{r.seconds:.1f}s{extra}[/dim]", highlight=False)


def fmt_s(x: float) -> str:
    return f"{x:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="repository source of the environment image")
    ap.add_argument("--extra-dep", action="append", default=None,
                    help="extra pip requirement for the image (repeatable; pytest-cov is always added); "
                         f"default for the default source: {' '.join(DEFAULT_EXTRA_DEPS)}")
    ap.add_argument("--candidates", type=int, default=20, help="procedural bug candidates to validate")
    ap.add_argument("--seed", type=int, default=0, help="candidate generation seed")
    ap.add_argument("--targeting", choices=("uniform", "covered"), default="uniform",
                    help="candidate pool shared by all modes: 'uniform' = any function (SWE-smith-like, "
                         "keep=None); 'covered' = only functions some test covers (swelego's pipeline)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="cap in seconds for one candidate test run (default 300); each run's own budget is "
                         "sized from the clean baseline (data_gen.validate.time_budget), in every mode")
    ap.add_argument("--workers", type=int, default=1, help="containers validating in parallel, every mode")
    ap.add_argument("--baseline-runs", type=int, default=3, help="clean-suite runs for the flaky-test baseline")
    ap.add_argument("--modes", default="a,b,c", help="comma-separated subset of a,b,c")
    ap.add_argument("--cleanup", action="store_true", help=f"remove the {NAMESPACE}/... images at the end")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes must be a comma-separated subset of {','.join(MODES)}")
    workers = max(1, args.workers)

    client = docker_client()
    setup_timeout = 300.0
    limits = SandboxLimits(exec_timeout=max(setup_timeout, args.timeout or 0))
    try:
        # ---- environment ------------------------------------------------------------
        t0 = time.perf_counter()
        extra = args.extra_dep if args.extra_dep is not None else (
            list(DEFAULT_EXTRA_DEPS) if args.source == DEFAULT_SOURCE else [])
        env = build_env_image(args.source, namespace=NAMESPACE, extra_deps=("pytest-cov", *extra), client=client,
                              log=lambda m: console.print(f"[dim]{escape(m)}[/dim]"))
        env_s = time.perf_counter() - t0
        console.print(f"[bold]image[/bold] {env.image}: "
                      + (f"built in {env.build_seconds:.1f} s" if env.built else f"reused ({env_s:.1f} s)")
                      + f"; {env.repo} {env.version}; cmd: {escape(env.test_cmd)}", highlight=False)

        # ---- one-off setup: baseline, coverage map, candidates ---------------------
        with DockerSandbox(env.image, client=client, limits=limits) as sb:
            t0 = time.perf_counter()
            baseline = stable_baseline(sb, env.test_cmd, log_parser=env.log_parser, runs=args.baseline_runs,
                                       timeout=setup_timeout)
            baseline_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            cov = coverage_map(sb, env.test_cmd, timeout=setup_timeout)
            cov_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            files = _read_sources(sb)
            keep = ((lambda path, e: bool(cov.tests_for(path, e.start_line, e.end_line)))
                    if args.targeting == "covered" else None)
            cands = procedural_candidates(env.repo, files, seed=args.seed, limit=args.candidates, keep=keep)
            gen_s = time.perf_counter() - t0
        sel = [len(covering_tests(c, cov) & set(baseline.passing)) for c in cands]
        timeout = args.timeout or 300.0  # a cap: validate_patch sizes each run's budget from the baseline

        t = Table(title=f"Setup (one-off per repository): {env.repo} {env.version}")
        for col in ("step", "used by", "seconds", "result"):
            t.add_column(col, justify="right" if col == "seconds" else "left")
        t.add_row("environment image", "all", fmt_s(env_s), "built" if env.built else "reused")
        t.add_row(f"stable baseline ({baseline.runs} clean runs)", "a, b, c", fmt_s(baseline_s),
                  f"{len(baseline.passing)} passing / {len(baseline.failing)} failing / {len(baseline.flaky)} flaky; "
                  f"suite median {baseline.seconds:.2f} s")
        t.add_row("coverage map (pytest-cov, per-test contexts)", "a", fmt_s(cov_s),
                  f"{len(cov.lines)} files mapped")
        t.add_row(f"read sources + procedural candidates ({args.targeting})", "all", fmt_s(gen_s),
                  f"{len(cands)} candidates (seed {args.seed}, targeting {args.targeting}) from {len(files)} files")
        t.add_row("candidate test-run timeout", "all", fmt_s(timeout), "--timeout" if args.timeout else "default")
        if sel:
            t.caption = (f"selected tests per candidate (a): median {statistics.median(sel):.0f}, "
                         f"max {max(sel)} of {len(baseline.passing)}")
        console.print(t)
        if not cands:
            console.print("[red]no candidates were generated; nothing to compare[/red]")
            return

        # ---- the three modes ----------------------------------------------------------
        runs: dict[str, ModeRun] = {}
        for m in modes:
            console.print(f"[bold]mode ({m}) {MODES[m]}[/bold]: {len(cands)} candidates, {workers} worker(s)")
            if m == "a":
                runs[m] = run_warm("a", cands, baseline, cov, env, client, limits, workers, timeout)
            elif m == "b":
                runs[m] = run_warm("b", cands, baseline, None, env, client, limits, workers, timeout)
            else:
                runs[m] = run_fresh(cands, baseline, env, client, limits, workers, timeout)

        # ---- throughput table --------------------------------------------------------------
        setup_of = {"a": baseline_s + cov_s, "b": baseline_s, "c": baseline_s}
        ref = runs.get("c")
        t = Table(title=f"Validation throughput: {len(cands)} candidates of {env.repo} {env.version}, "
                        f"{workers} worker(s)")
        for col in ("mode", "validated", "wall", "cand/min", "speedup vs (c)", "test time", "cand/min (test time)",
                    "speedup vs (c) (test time)", "valid", "yield", "tests run / cand", "wall + setup",
                    "speedup vs (c) incl. setup"):
            t.add_column(col, justify="left" if col == "mode" else "right")
        for m, r in runs.items():
            rate = 60 * r.n / r.wall if r.wall else float("nan")
            trate = 60 * r.n / r.test_seconds if r.test_seconds else float("nan")
            tests = statistics.mean(x.tests_run for x in r.results.values()) if r.n else 0
            speed = f"{ref.wall / r.wall:.2f}x" if ref and r.wall else "-"
            tspeed = f"{ref.test_seconds / r.test_seconds:.2f}x" if ref and r.test_seconds else "-"
            speed_setup = (f"{(ref.wall + setup_of['c']) / (r.wall + setup_of[m]):.2f}x" if ref else "-")
            t.add_row(f"({m}) {MODES[m]}", str(r.n), fmt_s(r.wall), f"{rate:.1f}", speed, fmt_s(r.test_seconds),
                      f"{trate:.1f}", tspeed, str(len(r.valid)), f"{len(r.valid) / r.n:.0%}" if r.n else "-",
                      f"{tests:.0f}", fmt_s(r.wall + setup_of[m]), speed_setup)
        t.caption = (f"wall: candidates' end-to-end time incl. container start/close and git resets; test time: "
                     f"summed Outcome.seconds (test runs only). Wall excludes the one-off setup, amortized over "
                     f"candidates: baseline {baseline_s:.1f} s ({baseline.runs} clean runs, all modes) + coverage "
                     f"map {cov_s:.1f} s (mode a only); clean suite {baseline.seconds:.2f} s, "
                     f"{len(baseline.passing)} passing tests")
        console.print(t)

        # ---- mode (a): how candidates were settled ----------------------------------------
        if "a" in runs:
            ra = runs["a"].results.values()
            groups = {
                "no test run (apply_failed / no_tests)": [x for x in ra if x.status in ("apply_failed", "no_tests")],
                "selected run only (no selected test broke)": [x for x in ra if x.status == "no_break" and not x.confirmed],
                "selected run + confirmation full run": [x for x in ra if x.confirmed],
            }
            rest = [x for x in ra if not any(x in g for g in groups.values())]
            if rest:
                groups["other (error / timeout)"] = rest
            t = Table(title="Mode (a): how candidates were settled")
            for col in ("settled by", "candidates", "valid", "test time", "test time / cand"):
                t.add_column(col, justify="left" if col == "settled by" else "right")
            for name, g in groups.items():
                secs = sum(x.seconds for x in g)
                t.add_row(name, str(len(g)), str(sum(x.status == "valid" for x in g)), fmt_s(secs),
                          fmt_s(secs / len(g)) if g else "-")
            t.caption = "only candidates that break a selected test pay for a full-suite run (F2P / P2P)"
            console.print(t)

        # ---- outcomes per status ------------------------------------------------------------
        t = Table(title="Outcomes per mode")
        t.add_column("mode")
        for s in STATUSES:
            t.add_column(s, justify="right")
        for m, r in runs.items():
            t.add_row(f"({m}) {MODES[m]}", *[str(r.count(s)) for s in STATUSES])
        console.print(t)
        errors = [(m, x) for m, r in runs.items() for x in r.results.values() if x.error]
        for m, x in errors[:10]:
            console.print(f"[red]({m}) {x.cid}: {escape(x.error)}[/red]")

        # ---- agreement ----------------------------------------------------------------------
        agree_all = True
        if len(runs) > 1:
            first = next(iter(runs))
            base_m = "c" if "c" in runs else first
            t = Table(title=f"Agreement with ({base_m}) {MODES[base_m]}")
            for col in ("mode", "same valid set", "only here", f"only in ({base_m})", "same F2P (common valid)",
                        "same status (all)"):
                t.add_column(col, justify="left" if col == "mode" else "right")
            ref_r = runs[base_m]
            for m, r in runs.items():
                if m == base_m:
                    continue
                same_valid = r.valid == ref_r.valid
                common = r.valid & ref_r.valid
                f2p_same = sum(r.results[c].f2p == ref_r.results[c].f2p for c in common)
                status_same = sum(r.results[c].status == ref_r.results[c].status for c in ref_r.results
                                  if c in r.results)
                agree_all &= same_valid and f2p_same == len(common)
                t.add_row(f"({m}) {MODES[m]}", "yes" if same_valid else "[red]no[/red]",
                          ", ".join(sorted(r.valid - ref_r.valid)) or "-",
                          ", ".join(sorted(ref_r.valid - r.valid)) or "-",
                          f"{f2p_same}/{len(common)}", f"{status_same}/{ref_r.n}")
            t.caption = ("status may legitimately differ between no_break and no_tests; "
                         "only the valid set and F2P sets matter for yield")
            console.print(t)
            diffs = [cid for cid in ref_r.results
                     if len({runs[m].results[cid].status for m in runs if cid in runs[m].results}) > 1]
            if diffs:
                t = Table(title="Candidates whose status differs between modes")
                t.add_column("candidate")
                t.add_column("modifier / entity")
                for m in runs:
                    t.add_column(f"({m})")
                by_id = {c.id: c for c in cands}
                for cid in diffs:
                    c = by_id[cid]
                    t.add_row(cid, escape(f"{c.modifier} {c.file}:{c.entity}"),
                              *[f"{runs[m].results[cid].status} ({len(runs[m].results[cid].f2p)})" for m in runs])
                console.print(t)
            console.print(f"modes agree on valid candidates and F2P sets: "
                          f"{'[green]yes[/green]' if agree_all else '[red]no[/red]'}")

        # ---- target -------------------------------------------------------------------------
        if "a" in runs and "c" in runs:
            a, c = runs["a"], runs["c"]
            speed = c.wall / a.wall if a.wall else float("nan")
            equal_yield = a.valid == c.valid
            met = speed >= TARGET_SPEEDUP and equal_yield
            console.print(
                f"target: (a) >= {TARGET_SPEEDUP:g}x (c) at equal yield on a suite of more than a few seconds -> "
                f"measured {speed:.2f}x, yield {len(a.valid)}/{a.n} vs {len(c.valid)}/{c.n}, "
                f"suite {baseline.seconds:.2f} s: "
                + ("[green]MET[/green]" if met else "[red]NOT MET[/red]"), highlight=False)
        else:
            console.print("target: needs modes a and c to be evaluated")
    finally:
        if args.cleanup:
            for img in client.images.list():
                for tag in img.tags:
                    if tag.startswith(f"{NAMESPACE}/"):
                        try:
                            client.images.remove(tag, force=True)
                            console.print(f"removed image {tag}")
                        except Exception as e:  # noqa: BLE001
                            console.print(f"[yellow]could not remove {tag}: {escape(str(e))}[/yellow]")


if __name__ == "__main__":
    main()
