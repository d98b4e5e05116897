"""Validation throughput benchmark: the same synthetic bug candidates of real repositories,
validated three ways in one run.

  (a) new default      warm containers reset with git; the tests covering a candidate (coverage
                       map with per-test contexts, fixture and process closure) run with per-test
                       budgets; PASS_TO_PASS of a function-body change is inferred from the map and
                       its runs are served by the warm runner (one collected pytest session per
                       container, a hot-patched fork per candidate); a sample of inferred valid
                       candidates is audited by a full-suite run, other changes get the full suite
                       in a fresh process that reuses the clean tree's kept bytecode
                       (DockerSandbox.keep_bytecode) (data_gen.validate, ValidateConfig())
  (b) warm + selection today's previous default: covering tests first, a confirmation full-suite run
                       for every candidate that breaks one (`--p2p full`, no per-test budgets)
  (c) fresh + full     a new container per candidate (start -> validate -> close) and the full
                       suite, the way SWE-smith validates
  (d) (c), tracebacks  (c) with the repository's own traceback style; (a) to (c) pass pytest
                       `--tb=no` (validate.quiet_failures, as SWE-smith's own test command does)

Per repository it reports candidates/min, valid tasks/min, the ratio (a)/(c), agreement of (a)'s
and (b)'s valid set and FAIL_TO_PASS / PASS_TO_PASS lists with (c)'s (exact match), container-seconds
per valid task, how (a) settled its candidates, where (a)'s time goes against (c)'s on the same
candidates, (a)'s scaling over workers, and the cost of the
official-grading verify step that the pipeline runs on every kept row (swebench grades gold and
empty patch in the row's own image). The one-off setup (baseline, coverage map) is timed
separately. Issue target: (a) >= 10x (c) on valid tasks/min with the same valid set and >= 99% exact
agreement. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
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
from data_gen.synth.pipeline import ENV_EXTRA_DEPS, _read_sources, _verify
from data_gen.validate import (
    Baseline,
    CoverageMap,
    InferenceAudit,
    Item,
    ValidateConfig,
    coverage_map,
    failure_log,
    inference_blocker,
    per_test_budget,
    plan_batches,
    stable_baseline,
    validate_patch,
    validate_unit,
    validation_cmd,
    warm_runner,
)
from swelego.sandbox import DockerSandbox, SandboxLimits, docker_client
from swelego.sandbox.images import build_env_image

NAMESPACE = "swelego-bench"
# python-dateutil: ~2000 tests over loosely coupled modules (parser, tz, rrule, relativedelta,
# easter, isoparser); its test deps are not in the sdist metadata, and its setup.cfg turns pytest
# warnings into errors, which pytest 9's parametrize deprecation trips, hence the pins.
# marshmallow: 1,231 tests (schemas, fields, validation), a ~4 s suite; simplejson for its JSON tests.
SOURCES = {
    "pypi:python-dateutil==2.9.0.post0": ("hypothesis", "freezegun", "pytest<9"),
    "pypi:marshmallow==3.23.1": ("simplejson",),
}
TARGET_SPEEDUP = 10.0
STATUSES = ("valid", "invalid", "no_break", "no_tests", "apply_failed", "timeout", "error")
MODES = {
    "a": "new default (infer + audit + per-test budgets)",
    "b": "warm + selection + confirmation",
    "c": "fresh container + full suite",
    "d": "(c), tracebacks formatted",
}
FRESH = ("c", "d")  # a new container per candidate
# Wide tables stay readable when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 220)


@dataclass
class Result:
    cid: str
    status: str
    f2p: frozenset[str] = frozenset()
    p2p: frozenset[str] = frozenset()
    tests_run: int = 0
    seconds: float = 0.0  # test time inside validate_patch (Outcome.seconds)
    error: str = ""
    validation: str = ""  # (a): inferred | audited | full
    agreed: bool | None = None  # (a), audited: the full run confirmed the inference
    container_s: float = 0.0  # (c): this candidate's container lifetime
    warm: bool = False  # (a): served by the warm runner
    wall_s: float = 0.0  # this candidate's wall time in its worker (fresh: its container lifetime)


@dataclass
class ModeRun:
    mode: str
    workers: int = 1
    wall: float = 0.0
    results: dict[str, Result] = field(default_factory=dict)
    audit: dict = field(default_factory=dict)
    units: int = 0  # (a): test-run units after batching

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def valid(self) -> set[str]:
        return {cid for cid, r in self.results.items() if r.status == "valid"}

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results.values())

    @property
    def container_seconds(self) -> float:
        fresh = sum(r.container_s for r in self.results.values())
        return fresh if fresh else self.wall * self.workers  # warm: every container lives the whole run


def covering(c: Candidate, cov: CoverageMap, closure: bool) -> set[str]:
    out: set[str] = set()
    for path, start, end in c.spans:
        out |= cov.closure(path, start, end) if closure else cov.tests_for(path, start, end)
    return out


def _result(c: Candidate, o) -> Result:
    return Result(c.id, o.status, frozenset(o.fail_to_pass), frozenset(o.pass_to_pass), o.tests_run, o.seconds,
                  validation=o.validation, agreed=o.agreed, warm=o.warm)


def run_mode(mode: str, cands: list[Candidate], baseline: Baseline, cov: CoverageMap, files: dict[str, str], env,
             client, limits: SandboxLimits, workers: int, vc: ValidateConfig, bytecode: bytes = b"") -> ModeRun:
    """(a) and (b): `workers` warm containers (their start is inside the timed wall; (a)'s keep the
    clean tree's `bytecode` across resets, as the pipeline's do). (c), (d): a new container per
    candidate, start -> validate -> close, all timed."""
    run = ModeRun(mode, workers)
    audit = InferenceAudit(vc)
    cmd = env.test_cmd if mode == "d" else validation_cmd(env.test_cmd, env.log_parser, vc)
    tests = baseline.passing + baseline.failing + baseline.flaky
    t0 = time.perf_counter()

    def validate(sb: DockerSandbox, c: Candidate) -> Result:
        try:
            if mode == "a":
                blocker = inference_blocker(c.patch, files, cov, tests) if audit.enabled else "off"
                o = validate_patch(sb, c.patch, baseline, test_cmd=cmd, log_parser=env.log_parser,
                                   covering=covering(c, cov, closure=True), timeout=vc.test_timeout,
                                   infer=blocker is None, audit=audit.claim,
                                   budget=lambda ts: per_test_budget(cov, ts, vc), node_ids=cov.node_ids)
                audit.record(c.id, o)
            elif mode == "b":
                o = validate_patch(sb, c.patch, baseline, test_cmd=cmd, log_parser=env.log_parser,
                                   covering=covering(c, cov, closure=False), timeout=vc.test_timeout)
            else:
                o = validate_patch(sb, c.patch, baseline, test_cmd=cmd, log_parser=env.log_parser,
                                   covering=None, timeout=vc.test_timeout)
        except Exception as e:  # noqa: BLE001 - one broken candidate must not stop the benchmark
            if mode not in FRESH:
                sb.reset("fresh")
            return Result(c.id, "error", error=str(e)[:200])
        if mode not in FRESH and o.status == "timeout" and (o.backstop or mode == "b"):
            sb.reset("fresh")  # what the pipeline does when the sandbox had to kill the run
        return _result(c, o)

    if mode in FRESH:
        def one(c: Candidate) -> Result:
            t = time.perf_counter()
            sb = DockerSandbox(env.image, client=client, limits=limits)
            try:
                sb.start()
                r = validate(sb, c)
            except Exception as e:  # noqa: BLE001 - e.g. a container that fails to start
                r = Result(c.id, "error", error=str(e)[:200])
            finally:
                sb.close()
            r.container_s = r.wall_s = time.perf_counter() - t
            return r

        with ThreadPoolExecutor(max_workers=workers) as ex:
            for r in ex.map(one, cands):
                run.results[r.cid] = r
                _progress(run, len(cands), r)
        run.wall = time.perf_counter() - t0
        return run

    sandboxes = [DockerSandbox(env.image, client=client, limits=limits) for _ in range(workers)]
    runners = {id(sb): warm_runner(sb, cmd, env.log_parser, cov, vc) if mode == "a" else None
               for sb in sandboxes}
    pool: queue.Queue[DockerSandbox] = queue.Queue()
    try:
        for sb in sandboxes:
            sb.start()
            if mode == "a":
                sb.keep_bytecode(bytecode)
            pool.put(sb)

        def one(c: Candidate) -> list[Result]:
            sb = pool.get()
            t = time.perf_counter()
            try:
                r = validate(sb, c)
                r.wall_s = time.perf_counter() - t
                return [r]
            finally:
                pool.put(sb)

        by_id = {c.id: c for c in cands}

        def unit_of(unit: list[Item]) -> list[Result]:
            sb = pool.get()
            t = time.perf_counter()
            try:
                outs = validate_unit(sb, unit, baseline, test_cmd=cmd, log_parser=env.log_parser,
                                     timeout=vc.test_timeout, audit=audit, cov=cov, cfg=vc, warm=runners[id(sb)])
                if any(o.status == "timeout" and o.backstop for o in outs):
                    sb.reset("fresh")  # what the pipeline does when the sandbox had to kill the run
            except Exception as e:  # noqa: BLE001
                sb.reset("fresh")
                return [Result(it.cid, "error", error=str(e)[:200]) for it in unit]
            finally:
                pool.put(sb)
            rs = [_result(by_id[it.cid], o) for it, o in zip(unit, outs, strict=True)]
            for r in rs:
                r.wall_s = (time.perf_counter() - t) / len(rs)
            return rs

        if mode == "a":
            items = [Item(c.id, c.patch, covering(c, cov, closure=True),
                          inference_blocker(c.patch, files, cov, tests), c.spans) for c in cands]
            work, fn = plan_batches(items, baseline, vc.batch_size), unit_of
            run.units = len(work)
        else:
            work, fn = cands, one
        with ThreadPoolExecutor(max_workers=workers) as ex:
            for rs in ex.map(fn, work):
                for r in rs:
                    run.results[r.cid] = r
                    _progress(run, len(cands), r)
    finally:
        for sb in sandboxes:
            sb.close()
        run.wall = time.perf_counter() - t0
    run.audit = audit.summary() if mode == "a" else {}
    return run


def _progress(run: ModeRun, total: int, r: Result) -> None:
    extra = f" f2p={len(r.f2p)}" if r.f2p else ""
    extra += f" {r.validation}{' warm' if r.warm else ''}" if run.mode == "a" else ""
    extra += " [red]AUDIT DISAGREES[/red]" if r.agreed is False else ""
    extra += f" [red]{escape(r.error)}[/red]" if r.error else ""
    console.print(f"[dim]({run.mode}, {run.workers}w) {run.n}/{total} {r.cid[:12]} {r.status} "
                  f"tests_run={r.tests_run} {r.seconds:.1f}s{extra}[/dim]", highlight=False)


def fmt_s(x: float) -> str:
    return f"{x:.1f} s"


def per_min(n: int, seconds: float) -> str:
    return f"{60 * n / seconds:.1f}" if seconds else "-"


def agreement(r: ModeRun, ref: ModeRun) -> tuple[bool, int, int, int]:
    """(same valid set, common valid, exact F2P matches, exact F2P+P2P matches)."""
    common = r.valid & ref.valid
    f2p = sum(r.results[c].f2p == ref.results[c].f2p for c in common)
    both = sum(r.results[c].f2p == ref.results[c].f2p and r.results[c].p2p == ref.results[c].p2p for c in common)
    return r.valid == ref.valid, len(common), f2p, both


def load_note() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load n/a"
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def bench_repo(source: str, extra: tuple[str, ...], args, client, vc: ValidateConfig, summary: list) -> None:
    limits = SandboxLimits(exec_timeout=max(300.0, vc.test_timeout))
    t0 = time.perf_counter()
    env = build_env_image(source, namespace=NAMESPACE, extra_deps=(*ENV_EXTRA_DEPS, *extra), client=client,
                          log=lambda m: console.print(f"[dim]{escape(m)}[/dim]"))
    env_s = time.perf_counter() - t0
    console.print(f"[bold]image[/bold] {env.image}: "
                  + (f"built in {env.build_seconds:.1f} s" if env.built else f"reused ({env_s:.1f} s)")
                  + f"; {env.repo} {env.version}; cmd: {escape(env.test_cmd)}; {load_note()}", highlight=False)

    # ---- one-off setup: baseline, coverage map, candidates ---------------------------------
    with DockerSandbox(env.image, client=client, limits=limits) as sb:
        t0 = time.perf_counter()
        baseline = stable_baseline(sb, env.test_cmd, log_parser=env.log_parser, runs=args.baseline_runs,
                                   timeout=vc.test_timeout)
        baseline_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cov = coverage_map(sb, env.test_cmd, timeout=vc.test_timeout)
        cov_s = time.perf_counter() - t0
        files = _read_sources(sb)
        bytecode = sb.keep_bytecode()  # what the pipeline's sandboxes restore on each reset
        cands = procedural_candidates(env.repo, files, seed=args.seed, limit=args.candidates, keep=None)
    tests = baseline.passing + baseline.failing + baseline.flaky
    blockers = [inference_blocker(c.patch, files, cov, tests) for c in cands]
    t = Table(title=f"Setup (one-off per repository): {env.repo} {env.version}")
    for col in ("step", "used by", "seconds", "result"):
        t.add_column(col, justify="right" if col == "seconds" else "left")
    t.add_row("environment image", "all", fmt_s(env_s), "built" if env.built else "reused")
    t.add_row(f"stable baseline ({baseline.runs} clean runs)", "a, b, c", fmt_s(baseline_s),
              f"{len(baseline.passing)} passing / {len(baseline.failing)} failing / {len(baseline.flaky)} flaky; "
              f"suite median {baseline.seconds:.2f} s")
    t.add_row("coverage map + probe (per-test contexts)", "a, b", fmt_s(cov_s),
              f"{len(cov.lines)} files; {len(cov.spawners)} tests start processes; {len(cov.shared)} tests share "
              f"wider-scoped fixtures; pytest-timeout {'yes' if cov.pytest_timeout else 'NO'}")
    t.add_row("procedural candidates (uniform over functions)", "all", "-",
              f"{len(cands)} (seed {args.seed}); inference possible for {sum(b is None for b in blockers)}, "
              f"full run for {sum(b is not None for b in blockers)} (module/class/decorator-level change or code "
              "that runs at import)")
    console.print(t)
    if not cands:
        console.print("[red]no candidates were generated; nothing to compare[/red]")
        return

    # ---- the modes ---------------------------------------------------------------------------
    runs: dict[str, ModeRun] = {}
    for m in args.modes:
        console.print(f"[bold]mode ({m}) {MODES[m]}[/bold]: {len(cands)} candidates, 1 worker; {load_note()}")
        runs[m] = run_mode(m, cands, baseline, cov, files, env, client, limits, 1, vc, bytecode)
    scaling: dict[int, ModeRun] = {1: runs["a"]} if "a" in runs else {}
    for w in args.scale:
        if w > 1 and "a" in runs:
            console.print(f"[bold]mode (a) with {w} workers[/bold]; {load_note()}")
            scaling[w] = run_mode("a", cands, baseline, cov, files, env, client, limits, w, vc, bytecode)

    # ---- throughput ------------------------------------------------------------------------------
    ref = runs.get("c")
    t = Table(title=f"Validation throughput: {len(cands)} candidates of {env.repo} {env.version}, 1 worker "
                    f"({load_note()} at the end)")
    for col in ("mode", "wall", "cand/min", "valid", "valid/min", "(x)/(c) valid/min", "container-s / valid",
                "tests run / cand", "timeouts"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for m, r in runs.items():
        vpm = 60 * len(r.valid) / r.wall if r.wall else 0.0
        ref_vpm = 60 * len(ref.valid) / ref.wall if ref and ref.wall else 0.0
        ratio = f"{vpm / ref_vpm:.2f}x" if ref_vpm else "-"
        cs = f"{r.container_seconds / len(r.valid):.1f}" if r.valid else "-"
        tests_run = statistics.mean(x.tests_run for x in r.results.values()) if r.n else 0
        t.add_row(f"({m}) {MODES[m]}", fmt_s(r.wall), per_min(r.n, r.wall), str(len(r.valid)), f"{vpm:.1f}", ratio,
                  cs, f"{tests_run:.0f}", str(r.count("timeout")))
    t.caption = (f"wall excludes the one-off setup: baseline {baseline_s:.1f} s (all modes) + coverage map "
                 f"{cov_s:.1f} s (a, b); clean suite {baseline.seconds:.2f} s, {len(baseline.passing)} passing tests. "
                 "container-s: warm = workers x wall; fresh = the sum of the candidates' container lifetimes")
    console.print(t)

    # ---- agreement ------------------------------------------------------------------------------
    if ref:
        t = Table(title=f"Agreement with (c) {MODES['c']} (the full-suite truth)")
        for col in ("mode", "same valid set", "only here", "only in (c)", "exact F2P", "exact F2P + P2P",
                    "same status (all)"):
            t.add_column(col, justify="left" if col == "mode" else "right")
        for m, r in runs.items():
            if m == "c":
                continue
            same, common, f2p, both = agreement(r, ref)
            status_same = sum(r.results[c].status == ref.results[c].status for c in ref.results if c in r.results)
            t.add_row(f"({m}) {MODES[m]}", "yes" if same else "[red]no[/red]",
                      ", ".join(sorted(x[:8] for x in r.valid - ref.valid)) or "-",
                      ", ".join(sorted(x[:8] for x in ref.valid - r.valid)) or "-",
                      f"{f2p}/{common}", f"{both}/{common} ({both / common:.0%})" if common else "-",
                      f"{status_same}/{ref.n}")
        t.caption = "exact: the same test ids; status may differ between no_break and no_tests"
        console.print(t)
        by_id = {c.id: c for c in cands}
        diffs = [cid for cid in ref.results if len({runs[m].results[cid].status for m in runs}) > 1]
        if diffs:
            t = Table(title="Candidates whose status differs between modes")
            t.add_column("candidate")
            t.add_column("modifier / entity")
            for m in runs:
                t.add_column(f"({m})")
            for cid in diffs:
                c = by_id[cid]
                t.add_row(cid[:8], escape(f"{c.modifier} {c.file}:{c.entity}"),
                          *[f"{runs[m].results[cid].status} ({len(runs[m].results[cid].f2p)})" for m in runs])
            console.print(t)

    # ---- how (a) settled its candidates ------------------------------------------------------------
    if "a" in runs:
        ra = runs["a"]
        t = Table(title="Mode (a): how candidates were settled")
        for col in ("lists obtained by", "candidates", "valid", "test time", "test time / cand"):
            t.add_column(col, justify="left" if col == "lists obtained by" else "right")
        for how in ("inferred", "audited", "full"):
            g = [x for x in ra.results.values() if x.validation == how and x.status != "timeout"]
            secs = sum(x.seconds for x in g)
            t.add_row(how, str(len(g)), str(sum(x.status == "valid" for x in g)), fmt_s(secs),
                      fmt_s(secs / len(g)) if g else "-")
        hung = [x for x in ra.results.values() if x.status == "timeout"]
        t.add_row("timeout (dropped)", str(len(hung)), "0", fmt_s(sum(x.seconds for x in hung)),
                  fmt_s(sum(x.seconds for x in hung) / len(hung)) if hung else "-")
        other = [x for x in ra.results.values() if not x.validation and x.status != "timeout"]
        if other:
            t.add_row("apply failed / error", str(len(other)), "0", "-", "-")
        au = ra.audit
        t.caption = (f"{ra.units} test-run units for {ra.n} candidates (batch_size {vc.batch_size}); "
                     f"audit: {au.get('audited', 0)} of {au.get('inferred_valid', 0)} inferred valid candidates got "
                     f"the full-suite run; inference {au.get('inference', '?')}"
                     + "".join(f"; DISAGREEMENT {d['candidate'][:8]}: {d['reason']}" for d in au.get("disagreements", [])))
        console.print(t)

    # ---- where the time goes: (a) against (c), candidate by candidate -----------------------------------
    if "a" in runs and ref:
        ra = runs["a"]
        t = Table(title="Where the time goes: the same candidates in (a) and in (c), grouped by how (a) settled them")
        for col in ("(a) settled as", "candidates", "valid", "(a) wall", "(c) wall", "(c)/(a)", "(a) s / cand",
                    "(c) s / cand", "share of (a)'s wall"):
            t.add_column(col, justify="left" if col == "(a) settled as" else "right")
        total_a = sum(x.wall_s for x in ra.results.values()) or 1.0
        groups = [("inferred, warm runner", lambda x: x.status != "timeout" and x.validation == "inferred" and x.warm),
                  ("audited, warm runner", lambda x: x.status != "timeout" and x.validation == "audited" and x.warm),
                  ("inferred or audited, fresh process",
                   lambda x: x.status != "timeout" and x.validation in ("inferred", "audited") and not x.warm),
                  ("full suite (module / class-level change, code run at import)",
                   lambda x: x.status != "timeout" and x.validation == "full"),
                  ("timeout, warm runner", lambda x: x.status == "timeout" and x.warm),
                  ("timeout, fresh process", lambda x: x.status == "timeout" and not x.warm),
                  ("apply failed / error", lambda x: not x.validation and x.status != "timeout")]
        for name, pred in groups:
            g = [cid for cid, x in ra.results.items() if pred(x)]
            if not g:
                continue
            wa = sum(ra.results[c].wall_s for c in g)
            wc = sum(ref.results[c].wall_s for c in g if c in ref.results)
            t.add_row(name, str(len(g)), str(sum(ra.results[c].status == "valid" for c in g)), fmt_s(wa), fmt_s(wc),
                      f"{wc / wa:.1f}x" if wa else "-", f"{wa / len(g):.2f}", f"{wc / len(g):.2f}",
                      f"{wa / total_a:.0%}")
        # What (c)'s semantics leave (a) to pay in full: a fresh interpreter and every test (changes
        # the map cannot attribute), and slow runs held until (c)'s own full-suite budget cuts them.
        floor = sum(x.wall_s for x in ra.results.values()
                    if x.status == "timeout" or (x.validation == "full" and x.status != "timeout"))
        total_c = sum(ref.results[c].wall_s for c in ra.results if c in ref.results)
        t.caption = ("wall per candidate in its worker: (a) includes git reset, patch application and the run; "
                     "(c) the candidate's container start, run and removal")
        if floor:
            t.caption += (f". Ceiling: with every inferred and audited candidate free, (a)/(c) would be at most "
                          f"{total_c / floor:.1f}x (the full-suite and timeout rows cost {fmt_s(floor)} of (a)'s "
                          f"{fmt_s(total_a)})")
        console.print(t)

    # ---- outcomes -------------------------------------------------------------------------------------
    t = Table(title="Outcomes per mode")
    t.add_column("mode")
    for s in STATUSES:
        t.add_column(s, justify="right")
    for m, r in runs.items():
        t.add_row(f"({m}) {MODES[m]}", *[str(r.count(s)) for s in STATUSES])
    console.print(t)
    for m, x in [(m, x) for m, r in runs.items() for x in r.results.values() if x.error][:10]:
        console.print(f"[red]({m}) {x.cid[:8]}: {escape(x.error)}[/red]")

    # ---- scaling ---------------------------------------------------------------------------------------
    if len(scaling) > 1:
        t = Table(title=f"Mode (a) scaling over workers (warm containers), {env.repo}")
        for col in ("workers", "wall", "cand/min", "valid/min", "speedup vs 1 worker", "same valid set as 1 worker"):
            t.add_column(col, justify="right")
        one = scaling[1]
        for w, r in sorted(scaling.items()):
            t.add_row(str(w), fmt_s(r.wall), per_min(r.n, r.wall), per_min(len(r.valid), r.wall),
                      f"{one.wall / r.wall:.2f}x" if r.wall else "-", "yes" if r.valid == one.valid else "no")
        t.caption = f"{os.cpu_count()} CPUs on this machine; {load_note()}"
        console.print(t)

    # ---- the verify step's cost (pipeline: every kept row) -----------------------------------------------
    verify_s = None
    if "a" in runs and args.verify_rows:
        verify_s = verify_cost(runs["a"], cands, baseline, cov, env, client, vc, args.verify_rows)

    if "a" in runs and ref:
        a = runs["a"]
        vpm = lambda r: 60 * len(r.valid) / r.wall if r.wall and r.valid else 0.0  # noqa: E731
        ratio = vpm(a) / vpm(ref) if vpm(ref) else float("nan")
        same, common, _, both = agreement(a, ref)
        rate = both / common if common else 1.0
        with_verify = ""
        if verify_s is not None and a.valid:
            va = a.wall + verify_s * len(a.valid)
            vc_ = ref.wall + verify_s * len(ref.valid)
            with_verify = f"; with the verify step on every valid row in both: {vc_ / va:.2f}x"
        met = ratio >= TARGET_SPEEDUP and same and rate >= 0.99
        console.print(f"target {env.repo}: (a)/(c) valid tasks/min >= {TARGET_SPEEDUP:g}x with the same valid set and "
                      f">= 99% exact agreement -> measured {ratio:.2f}x, valid {len(a.valid)} vs {len(ref.valid)}, "
                      f"exact F2P+P2P {both}/{common}{with_verify}: "
                      + ("[green]MET[/green]" if met else "[red]NOT MET[/red]"), highlight=False)
        summary.append((env.repo, len(cands), ratio, same, f"{both}/{common}", len(a.valid),
                        verify_s, load_note()))


def verify_cost(run: ModeRun, cands: list[Candidate], baseline: Baseline, cov: CoverageMap, env, client,
                vc: ValidateConfig, limit: int) -> float | None:
    """Seconds per row of the pipeline's row step (the statement's traceback run of the first
    FAIL_TO_PASS tests, instance image, problem statement templated, swebench grading of gold and
    empty patch), measured on up to `limit` valid rows."""
    from data_gen.synth.pipeline import _make_row
    from data_gen.validate import Outcome
    from swelego.schema import TaskInstance

    class _Cfg:
        namespace = NAMESPACE
        validate = vc

    by_id = {c.id: c for c in cands}
    times, problems, log_times = [], [], []
    for cid in sorted(run.valid)[:limit]:
        r = run.results[cid]
        c = by_id[cid]
        with DockerSandbox(env.image, client=client) as sb:
            sb.reset("git")
            from swelego.harness import apply_patch

            apply_patch(sb, c.patch)
            fix = sb.exec("git diff -R --no-color --src-prefix=b/ --dst-prefix=a/", timeout=60).output
            t1 = time.perf_counter()
            log = failure_log(sb, env.test_cmd, sorted(r.f2p), baseline, log_parser=env.log_parser,
                              timeout=vc.test_timeout, node_ids=cov.node_ids)
            log_times.append(time.perf_counter() - t1)
        t0 = time.perf_counter()
        o = Outcome("valid", sorted(r.f2p), sorted(r.p2p), validation=r.validation)
        row = _make_row(c, o, fix, env, _Cfg, None, client, log)
        problem = _verify(TaskInstance.from_row(row), client, vc)
        times.append(time.perf_counter() - t0 + log_times[-1])
        problems.append(problem)
        try:
            client.images.remove(row["image"], force=True)
        except Exception:  # noqa: BLE001
            pass
    if not times:
        return None
    t = Table(title=f"Verify step (swebench grading in the row's image) on {len(times)} valid rows of (a), {env.repo}")
    for col in ("rows", "seconds / row", "of which the statement's traceback run", "graded correct"):
        t.add_column(col, justify="right")
    t.add_row(str(len(times)), f"{statistics.mean(times):.1f}", f"{statistics.mean(log_times):.1f}",
              f"{sum(p is None for p in problems)}/{len(times)}")
    t.caption = ("traceback run of up to 5 FAIL_TO_PASS tests + instance image + gold run + empty-patch run; the "
                 "pipeline pays it for every kept row in every mode (it is not part of the (a)/(c) validation "
                 "ratio). " + "; ".join(p for p in problems if p))
    console.print(t)
    return statistics.mean(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="append", default=None,
                    help=f"repository source (repeatable); default: {', '.join(SOURCES)}")
    ap.add_argument("--extra-dep", action="append", default=None,
                    help="extra pip requirement for a --source image (repeatable); the default sources have theirs")
    ap.add_argument("--candidates", type=int, default=20, help="procedural bug candidates per repository")
    ap.add_argument("--seed", type=int, default=0, help="candidate generation seed")
    ap.add_argument("--baseline-runs", type=int, default=3, help="clean-suite runs for the flaky-test baseline")
    ap.add_argument("--modes", default="a,b,c", help="comma-separated subset of a,b,c,d")
    ap.add_argument("--scale", default="2", help="comma list of worker counts to run (a) at besides 1 (empty: none)")
    ap.add_argument("--verify-rows", type=int, default=3, help="valid rows of (a) whose verify step is timed")
    ap.add_argument("--cleanup", action="store_true", help=f"remove the {NAMESPACE}/... images at the end")
    args = ap.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in MODES for m in args.modes):
        ap.error(f"--modes must be a comma-separated subset of {','.join(MODES)}")
    args.scale = [int(w) for w in args.scale.split(",") if w.strip()]
    sources = {s: tuple(args.extra_dep or ()) for s in args.source} if args.source else SOURCES
    client = docker_client()
    vc = ValidateConfig(test_timeout=300.0)
    summary: list = []
    try:
        for source, extra in sources.items():
            bench_repo(source, extra, args, client, vc, summary)
        if summary:
            t = Table(title="Summary: (a) new default vs (c) SWE-smith-style, valid tasks per minute")
            for col in ("repository", "candidates", "(a)/(c)", "same valid set", "exact F2P+P2P", "valid",
                        "verify s / row", "machine load"):
                t.add_column(col, justify="left" if col in ("repository", "machine load") else "right")
            for repo, n, ratio, same, agree, valid, verify_s, load in summary:
                t.add_row(repo, str(n), f"{ratio:.2f}x", "yes" if same else "no", agree, str(valid),
                          f"{verify_s:.1f}" if verify_s else "-", load)
            console.print(t)
    finally:
        if args.cleanup:
            for img in client.api.images():
                for tag in img.get("RepoTags") or []:
                    if tag.startswith(f"{NAMESPACE}/"):
                        try:
                            client.images.remove(tag, force=True)
                        except Exception as e:  # noqa: BLE001
                            console.print(f"[yellow]could not remove {tag}: {escape(str(e))}[/yellow]")


if __name__ == "__main__":
    main()
