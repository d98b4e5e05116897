"""Validation shared by synthetic and real tasks: a stable baseline with flaky tests
quarantined, coverage-guided test selection, and FAIL_TO_PASS / PASS_TO_PASS from runs in
warm sandboxes that are reset with git between candidates."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from data_gen.warm import WarmRunner
from swelego.config import ConfigError, doc_field
from swelego.errors import SwelegoError
from swelego.harness import PASSED_STATES, TestRun, apply_patch, log_id, patch_files, run_tests
from swelego.sandbox import DockerSandbox

COV_JSON = "/tmp/swelego-cov.json"
ARGS_FILE = "/tmp/swelego-tests.txt"
P2P_MODES = ("infer", "full")


@dataclass
class SuiteRunConfig:
    """What synthetic and real validation share: how long a suite may run, how many clean runs
    decide flakiness, and whether swebench has the final word on every row."""

    test_timeout: float = doc_field("Seconds for one test-suite run at most; a hanging candidate is a `timeout`.",
                                    default=600.0)
    baseline_runs: int = doc_field("Clean-suite runs; a test whose status changes between them is flaky.",
                                   default=3)
    verify: bool = doc_field(
        "Before a row is kept, swebench grades it in its own image: the gold patch must resolve it and the "
        "empty patch must not (synthetic rows: also every FAIL_TO_PASS test fails and every PASS_TO_PASS "
        "test passes without the fix).", default=True)


@dataclass
class ValidateConfig(SuiteRunConfig):
    """How candidate bugs are validated: which tests run, how PASS_TO_PASS is obtained, how the
    inference is audited and how fast a hang is cut off (plus SuiteRunConfig's fields)."""

    test_selection: bool = doc_field(
        "Run only the tests covering a candidate's change first (coverage map of the clean suite); "
        "off: every candidate runs the full suite (and p2p is `full`).", default=True)
    p2p: str = doc_field(
        "`infer`: a candidate whose changed lines all lie in function bodies gets FAIL_TO_PASS from its "
        "covering tests and PASS_TO_PASS = the stable passing tests minus FAIL_TO_PASS, without a full-suite "
        "run; `full`: every candidate that breaks a test gets a full-suite run.", default="infer")
    audit_fraction: float = doc_field(
        "Share of inferred valid candidates (per repository, at least 0.1) that also get the full-suite "
        "run; a disagreement turns inference off for that repository.", default=0.1)
    audit_min: int = doc_field("The first N inferred valid candidates of each repository are always audited.",
                               default=3)
    per_test_factor: float = doc_field(
        "Per-test time budget inside a run: this multiple of the slowest selected test's clean duration ...",
        default=10.0)
    per_test_constant: float = doc_field("... plus these seconds (faulthandler's watchdog; the run's deadline backs it).",
                                         default=3.0)
    warm: bool = doc_field(
        "Serve inferable candidates from a warm pytest process per sandbox that collected the clean suite "
        "once: a forked child hot-patches the changed functions and runs the covering tests (no start-up, "
        "imports or collection per candidate); off, or where a change cannot be hot-patched: a fresh process.",
        default=True)
    quiet_failures: bool = doc_field(
        "Validation runs of a pytest suite pass `--tb=no`: a failing test is reported by its status line "
        "alone (what swebench's parser reads), its traceback is not formatted (that took most of the time "
        "of candidates that break many tests); a kept row's statement gets its tracebacks from one more run "
        "of its first FAIL_TO_PASS tests. Off: the repository's own traceback style in every run.",
        default=True)
    batch_size: int = doc_field(
        "Inferable candidates whose covering tests are disjoint share one test run, up to this many "
        "(1: one run per candidate).", default=8)

    def __post_init__(self) -> None:
        if self.p2p not in P2P_MODES:
            raise ConfigError(f"validate.p2p must be one of {', '.join(P2P_MODES)}, not {self.p2p!r}")
        if not 0.1 <= self.audit_fraction <= 1:
            raise ConfigError(f"validate.audit_fraction must be between 0.1 and 1, not {self.audit_fraction}")
        if self.audit_min < 0 or self.per_test_factor <= 0 or self.per_test_constant < 0 or self.test_timeout <= 0:
            raise ConfigError("validate: audit_min, per_test_constant must be >= 0; per_test_factor, "
                              "test_timeout > 0")
        if self.batch_size < 1:
            raise ConfigError(f"validate.batch_size must be at least 1, not {self.batch_size}")
        if self.baseline_runs < 1:
            raise ConfigError(f"validate.baseline_runs must be at least 1, not {self.baseline_runs}")

    @property
    def inference(self) -> bool:
        return self.test_selection and self.p2p == "infer"


@dataclass
class Baseline:
    """The clean tree's suite, run several times. Only `passing` tests can become F2P or P2P."""

    passing: list[str]
    failing: list[str]
    flaky: list[str]
    runs: int
    seconds: float  # median wall time of one full run

    def to_json(self) -> dict:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, d: dict) -> Baseline:
        return cls(**d)


def stable_baseline(sb: DockerSandbox, test_cmd: str, *, log_parser: str, runs: int = 3,
                    timeout: float = 1800) -> Baseline:
    """Run the clean suite `runs` times; a test whose status is not the same every time is
    quarantined as flaky."""
    maps, times = [], []
    for _ in range(runs):
        sb.reset("git")
        r = run_tests(sb, test_cmd, timeout=timeout, log_parser=log_parser)
        if r.timed_out:
            raise SwelegoError(f"the clean test suite timed out after {timeout:g}s")
        maps.append(r.status)
        times.append(r.duration)
    sb.reset("git")
    passing, failing, flaky = [], [], []
    for t in sorted(set().union(*maps)):
        states = {m.get(t, "MISSING") for m in maps}
        if len(states) > 1:
            flaky.append(t)
        elif states.pop() in PASSED_STATES:
            passing.append(t)
        else:
            failing.append(t)
    if not passing:
        raise SwelegoError("no test passes on the clean tree; nothing can be validated")
    return Baseline(passing, failing, flaky, runs, statistics.median(times))


# A pytest plugin loaded into the coverage run (`-p swelego_probe`). It records what a line-level
# map cannot show: which tests start processes (their children's lines carry no test context),
# which fixtures of a wider scope than the function each test uses (a line run while such a
# fixture is set up is charged to the first test that asked for it, though every test sharing
# the fixture sees its result), how long each test takes, and whether pytest-timeout is present.
PROBE_DIR = "/tmp/swelego-probe"
PROBE_JSON = "/tmp/swelego-probe.json"
PROBE_PLUGIN = r'''
import json
import math
import os
import time

import pytest

_current = [None]
_spawners = set()
_tests = {}


def _wrap(owner, name):
    orig = getattr(owner, name, None)
    if orig is None:
        return

    def spawn(*args, **kwargs):
        if _current[0] is not None:
            _spawners.add(_current[0])
        return orig(*args, **kwargs)

    setattr(owner, name, spawn)


for _name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve", "execvp", "execvpe"):
    _wrap(os, _name)
try:
    import _posixsubprocess
    import subprocess

    _wrap(_posixsubprocess, "fork_exec")
    _wrap(subprocess, "_fork_exec")
    _wrap(subprocess.Popen, "_execute_child")
except ImportError:
    pass


_collect = [0.0]
_imported = time.perf_counter()


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    yield
    _collect[0] = time.perf_counter() - _imported  # start-up (conftest imports) + collection


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    shared = []
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(info, "names_closure", ()):
        defs = info.name2fixturedefs.get(name) or ()
        if defs and str(getattr(defs[-1], "scope", "function")) not in ("function", "Scope.Function"):
            shared.append(f"{defs[-1].baseid}::{name}")
    t0 = time.perf_counter()
    yield
    _tests[item.nodeid] = {"seconds": round(time.perf_counter() - t0, 4), "shared": shared}
    _current[0] = None


def pytest_sessionfinish(session):
    try:
        import pytest_timeout  # noqa: F401
        has_timeout = True
    except ImportError:
        has_timeout = False
    with open(os.environ.get("SWELEGO_PROBE_OUT", "/tmp/swelego-probe.json"), "w") as f:
        json.dump({"spawners": sorted(_spawners), "tests": _tests, "pytest_timeout": has_timeout,
                   "collect_seconds": round(_collect[0], 3)}, f)
'''


@dataclass
class CoverageMap:
    """file (relative to /testbed) -> line -> ids of the tests that executed it, and what the
    probe saw of the tests (see PROBE_PLUGIN).

    lines: every phase of a test (setup, call, teardown) counts.
    fixture_lines: the lines a test ran while its fixtures were set up or torn down.
    outside: lines that ran outside any test (import, collection, session start/end).
    spawners: tests that started a process (whose lines the map cannot attribute).
    shared: test -> fixtures of class, module, package or session scope it uses.
    durations: test -> seconds of its setup + call + teardown in the coverage run.
    probed: False for a map made without the probe (inference is then never used).
    """

    lines: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    fixture_lines: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    outside: dict[str, list[int]] = field(default_factory=dict)
    spawners: list[str] = field(default_factory=list)
    shared: dict[str, list[str]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    probed: bool = False
    pytest_timeout: bool = False
    collect_seconds: float = 0.0  # the clean suite's collection time in the coverage run

    def tests_for(self, path: str, start: int, end: int) -> set[str]:
        by_line = self.lines.get(path, {})
        out: set[str] = set()
        for n in range(start, end + 1):
            out.update(by_line.get(n, ()))
        return out

    def closure(self, path: str, start: int, end: int) -> set[str]:
        """`tests_for`, plus every test sharing a wider-scoped fixture with a test whose fixture
        setup or teardown ran one of these lines (it sees the fixture's value), plus the tests
        that start processes (the map cannot tell what their children run)."""
        out = self.tests_for(path, start, end)
        by_line = self.fixture_lines.get(path, {})
        setup_tests = {t for n in range(start, end + 1) for t in by_line.get(n, ())}
        if setup_tests:
            keys = {k for t in setup_tests for k in self.shared.get(t, ())}
            out |= {t for t, ks in self.shared.items() if keys & set(ks)}
        return out | set(self.spawners)

    def node_ids(self, ids) -> list[str]:
        """The pytest node ids behind test ids as the log parser reports them. swebench's pytest
        parser keeps a node id up to its first space (`test_x[a b]` is reported as `test_x[a`), so
        one reported id may stand for several node ids: all of them run, as in a full run."""
        index: dict[str, list[str]] = {}
        for nid in self.durations:
            index.setdefault(log_id(nid), []).append(nid)
        out: set[str] = set()
        for t in ids:
            out.update(index.get(t) or [t])
        return sorted(out)

    def ran_outside(self, path: str, start: int, end: int) -> list[int]:
        return [n for n in self.outside.get(path, ()) if start <= n <= end]

    def to_json(self) -> dict:
        def enc(m):
            return {f: {str(n): ids for n, ids in d.items()} for f, d in m.items()}

        return {"lines": enc(self.lines), "fixture_lines": enc(self.fixture_lines), "outside": self.outside,
                "spawners": self.spawners, "shared": self.shared, "durations": self.durations,
                "probed": self.probed, "pytest_timeout": self.pytest_timeout, "collect_seconds": self.collect_seconds}

    @classmethod
    def from_json(cls, d: dict) -> CoverageMap:
        def dec(m):
            return {f: {int(n): ids for n, ids in x.items()} for f, x in m.items()}

        if "lines" not in d or not isinstance(d.get("lines"), dict) or "probed" not in d:
            return cls(dec(d))  # a map cached before the probe: selection only, never inference
        return cls(dec(d["lines"]), dec(d.get("fixture_lines", {})), d.get("outside", {}), d.get("spawners", []),
                   d.get("shared", {}), d.get("durations", {}), bool(d.get("probed")),
                   bool(d.get("pytest_timeout")), float(d.get("collect_seconds", 0.0)))


def coverage_map(sb: DockerSandbox, test_cmd: str, *, timeout: float = 1800, workdir: str = "/testbed") -> CoverageMap:
    """One coverage run of the clean suite with per-test contexts (pytest-cov) and the probe."""
    sb.reset("git")
    sb.write_file(f"{PROBE_DIR}/swelego_probe.py", PROBE_PLUGIN)
    # -i: data files under the tree (templates, fixtures) are not Python and must not abort the report.
    r = sb.exec(f"export PYTHONPATH={PROBE_DIR}${{PYTHONPATH:+:$PYTHONPATH}} SWELEGO_PROBE_OUT={PROBE_JSON}; "
                f"rm -f {PROBE_JSON}; {test_cmd} -p swelego_probe --cov={workdir} --cov-context=test --cov-report= "
                f">/tmp/swelego-cov.log 2>&1; coverage json -i --show-contexts -q -o {COV_JSON}", timeout=timeout)
    try:
        data = json.loads(sb.read_file(COV_JSON))
    except (FileNotFoundError, ValueError):
        tail = sb.exec("tail -n 5 /tmp/swelego-cov.log").output.strip()
        raise SwelegoError(f"coverage run produced no data (exit {r.exit_code}): {tail[-300:]}") from None
    finally:
        try:
            probe = json.loads(sb.read_file(PROBE_JSON))
        except (FileNotFoundError, ValueError):
            probe = None
        sb.exec(f"rm -rf {PROBE_DIR} {PROBE_JSON}")
        sb.reset("git")
    cov = CoverageMap()
    for fname, fdata in data.get("files", {}).items():
        rel = os.path.relpath(fname, workdir) if fname.startswith("/") else fname
        by_line: dict[int, list[str]] = {}
        in_fixtures: dict[int, list[str]] = {}
        outside: list[int] = []
        for line, contexts in (fdata.get("contexts") or {}).items():
            ids = sorted({c.split("|", 1)[0] for c in contexts if c})
            phased = sorted({c.split("|", 1)[0] for c in contexts if c.endswith(("|setup", "|teardown"))})
            if ids:
                by_line[int(line)] = ids
            if phased:
                in_fixtures[int(line)] = phased
            if "" in contexts:  # import, collection, session start / end: no test context
                outside.append(int(line))
        if by_line:
            cov.lines[rel] = by_line
        if in_fixtures:
            cov.fixture_lines[rel] = in_fixtures
        if outside:
            cov.outside[rel] = sorted(outside)
    if probe is not None:
        cov.probed = True
        cov.spawners = probe.get("spawners", [])
        cov.pytest_timeout = bool(probe.get("pytest_timeout"))
        cov.collect_seconds = float(probe.get("collect_seconds", 0.0))
        for t, info in probe.get("tests", {}).items():
            cov.durations[t] = float(info.get("seconds", 0.0))
            if info.get("shared"):
                cov.shared[t] = info["shared"]
    return cov


# -- PASS_TO_PASS inference: which candidates qualify -------------------------------------------

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def changed_lines(patch: str) -> dict[str, dict[int, int | None]]:
    """Lines of the old (clean) files that a unified diff touches: line -> None for a removed
    (or replaced) line; for a pure insertion, the old line it follows -> the smallest indentation
    of the inserted lines (so a caller can tell an insertion inside a body from one after it)."""
    out: dict[str, dict[int, int | None]] = {}
    path = None
    old = 0
    removed_in_block = False
    for line in patch.splitlines():
        if line.startswith("--- "):
            name = line[4:].split("\t", 1)[0]
            path = None if name == "/dev/null" else name[2:] if name.startswith("a/") else name
            continue
        if line.startswith("+++ "):
            if path is None:
                name = line[4:].split("\t", 1)[0]
                path = name[2:] if name.startswith("b/") else name
                out.setdefault(path, {})[0] = None  # a new file: never inside a function body
            continue
        m = _HUNK.match(line)
        if m:
            old = int(m.group(1))
            removed_in_block = False
            continue
        if path is None or not line:
            continue
        tag, text = line[0], line[1:]
        lines = out.setdefault(path, {})
        if tag == " ":
            old += 1
            removed_in_block = False
        elif tag == "-":
            lines[old] = None
            old += 1
            removed_in_block = True
        elif tag == "+" and not removed_in_block and text.strip():
            indent = len(text) - len(text.lstrip())
            prev = lines.get(old - 1, indent)
            lines[old - 1] = None if prev is None else min(prev, indent)
    return out


def body_spans(source: str) -> list[tuple[int, int, int]]:
    """(first, last, indentation) of every function body in `source`: its statements, not its
    decorators, signature, defaults or annotations (those run when the def runs)."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            spans.append((first.lineno, node.end_lineno or node.body[-1].lineno, first.col_offset))
    return spans


def _statement_lines(source: str) -> dict[int, int]:
    """line -> the first line of the innermost statement holding it (coverage.py reports a
    statement's execution on its first line; a compound statement's header belongs to it)."""
    out: dict[int, int] = {}
    stmts = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt)]
    for node in sorted(stmts, key=lambda n: (n.lineno, -(n.end_lineno or n.lineno))):
        for n in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            out[n] = node.lineno  # later (inner) statements overwrite their parents' lines
    return out


def inference_blocker(patch: str, sources: dict[str, str], cov: CoverageMap, tests: list[str]) -> str | None:
    """Why this candidate's PASS_TO_PASS cannot be inferred from the map (None: it can).

    Only a change whose lines all lie inside function bodies qualifies, in a file not itself
    collected for tests (doctests, test modules), and only when no changed statement ran outside
    a test (at import or collection time). A function that ran at import qualifies when the
    changed statements themselves did not run then: import took the same path either way. An
    insertion (no old line replaced) qualifies only when no line of its function's body ran then."""
    if not cov.probed:
        return "coverage map without the probe"
    changed = changed_lines(patch)
    if not changed:
        return "no changed lines"
    for path, lines in changed.items():
        if path not in sources:
            return f"{path}: not a mapped source file"
        if any(t.split("::", 1)[0] == path for t in tests):
            return f"{path}: collected as a test module (doctests or tests)"
        try:
            spans = body_spans(sources[path])
            stmt_of = _statement_lines(sources[path])
        except SyntaxError:
            return f"{path}: does not parse"
        outside = set(cov.outside.get(path, ()))
        for n, indent in sorted(lines.items()):
            inner = [s for s in spans if s[0] <= n <= s[1] and (indent is None or indent >= s[2])]
            if not inner:
                return f"{path}:{n}: outside a function body (module, class body, decorator or signature)"
            first, last, _ = max(inner)  # the innermost body holding the line
            if indent is None:  # a replaced or removed line: did its statement run outside a test?
                ran = [stmt_of.get(n, n)] if stmt_of.get(n, n) in outside else []
            else:
                ran = cov.ran_outside(path, first, last)
            if ran:
                return f"{path}:{ran[0]}: runs outside any test (import or collection time)"
    return None


def run_selected(sb: DockerSandbox, test_cmd: str, tests: list[str], *, log_parser: str,
                 timeout: float, extra_args: str = "") -> TestRun:
    """Run only `tests` (pytest node ids), passed through an args file: a long id list would
    overflow one command line."""
    sb.write_file(ARGS_FILE, "\n".join(tests) + "\n")
    return run_tests(sb, f"{test_cmd}{extra_args} @{ARGS_FILE}", timeout=timeout, log_parser=log_parser)


def broken_tests(baseline_passing: list[str] | set[str], run: TestRun, among: set[str] | None = None) -> list[str]:
    """Baseline-passing tests that do not pass in `run` (a test that vanished, e.g. because its
    module no longer imports, counts as broken)."""
    pool = set(baseline_passing) if among is None else set(baseline_passing) & among
    return sorted(t for t in pool if run.status.get(t) not in PASSED_STATES)


# pytest-timeout's thread method prints this banner, dumps the stacks and ends the process;
# faulthandler's watchdog (WATCHDOG_PLUGIN) prints the second line.
# faulthandler's banner follows whatever the run wrote last on that line (progress dots).
_PER_TEST_TIMEOUT = re.compile(r"^\++ Timeout \++\s*$|Timeout \(\d+:\d\d:\d\d(?:\.\d+)?\)!\s*$", re.M)


def hit_test_budget(run: TestRun) -> bool:
    """A test of `run` ran past its per-test budget (pytest-timeout ended the run)."""
    return bool(_PER_TEST_TIMEOUT.search(run.log))


def per_test_budget(cov: CoverageMap | None, tests, cfg: ValidateConfig) -> float | None:
    """Seconds one test may take: `per_test_factor` x the slowest of `tests` in the coverage run
    plus `per_test_constant`. None without pytest-timeout in the image or without durations."""
    if cov is None or not cov.pytest_timeout or not cov.durations:
        return None
    known = [cov.durations[t] for t in tests if t in cov.durations]
    slowest = max(known) if known else max(cov.durations.values())
    return round(cfg.per_test_factor * slowest + cfg.per_test_constant, 2)


# Collection is outside pytest-timeout's reach: code that hangs at import would run into the
# sandbox's backstop. This plugin ends the process when collection runs past its budget, with
# pytest-timeout's banner (hit_test_budget sees it).
WATCHDOG_DIR = "/tmp/swelego-watchdog"
WATCHDOG_PLUGIN = r'''
import faulthandler
import functools
import json
import os
import time

import pytest

# faulthandler's watchdog is a C thread that needs no GIL: it ends the process even when the
# code under test loops inside C with the GIL held (pytest-timeout's timer thread cannot run
# then), and re-arming it per test costs far less than pytest-timeout's timer thread per test.
# Its report goes to a copy of the real stderr taken now, before pytest captures it.
_ERR = os.dup(2)
_BUDGET = float(os.environ.get("SWELEGO_COLLECT_BUDGET") or 0)
_SPEC = {}
_path = os.environ.get("SWELEGO_TEST_BUDGETS")
if _path and os.path.exists(_path):
    with open(_path) as f:
        _SPEC = json.load(f)
_DUR = _SPEC.get("durations", {})
_DEFAULT = float(os.environ.get("SWELEGO_DEFAULT_BUDGET") or 0)  # a test without a clean duration
# From here (conftest files are imported before collection starts) to the end of collection.
if _BUDGET > 0:
    faulthandler.dump_traceback_later(_BUDGET, exit=True, file=_ERR)


def _own(nodeid):
    d = _DUR.get(nodeid)
    return None if d is None else round(_SPEC["factor"] * d + _SPEC["constant"], 2)


# Arming the watchdog starts a thread and cancelling it joins one: per test that was 0.3 ms, a
# fifth of a 2,000-test run. So it stays armed from test to test: a test keeps the armed time when
# it is no sooner than its own budget ends and at most _SLACK later; otherwise it is armed for the
# test's budget + _LEAD. No test is cut before its budget; one with the budget of the test that
# armed it gets at most _LEAD more. The clock is one freezegun and time-machine leave alone (a test
# that freezes time.monotonic must not freeze the watchdog's view of time).
_SLACK, _LEAD = 0.5, 0.05
_clock = functools.partial(time.clock_gettime, time.CLOCK_MONOTONIC)
_fires = [0.0]


def _arm(seconds):
    now = _clock()
    if not now + seconds <= _fires[0] <= now + seconds + _SLACK:
        faulthandler.dump_traceback_later(seconds + _LEAD, exit=True, file=_ERR)
        _fires[0] = now + seconds + _LEAD


def _disarm():
    if _fires[0]:
        faulthandler.cancel_dump_traceback_later()
        _fires[0] = 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    seconds = _own(item.nodeid) or _DEFAULT
    if seconds:
        _arm(seconds)
    else:
        _disarm()
    try:
        yield
    finally:
        if nextitem is None:
            _disarm()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    _disarm()  # a session that stops early (-x, an interrupt) reports without a watchdog
'''


def per_test_budgets(cov: CoverageMap | None, cfg: ValidateConfig) -> dict | None:
    """The budget spec of the watchdog and warm-runner plugins: each test's own budget is
    `per_test_factor` x its clean duration + `per_test_constant` (so one slow property-based
    test does not set the budget of every other test). A run as a whole gets the deadline of
    `run_budget`. faulthandler enforces them (the standard library: no plugin needed)."""
    if cov is None or not cov.durations:
        return None
    return {"durations": cov.durations, "factor": cfg.per_test_factor, "constant": cfg.per_test_constant}


def warm_runner(sb: DockerSandbox, test_cmd: str, log_parser: str, cov: CoverageMap | None,
                cfg: ValidateConfig) -> WarmRunner | None:
    """The warm runner for one validation sandbox, when inference is on and the map has the probe's
    durations (the runner's per-test budgets come from them); None otherwise."""
    if not (cfg.warm and cfg.inference and cov is not None and cov.probed):
        return None
    return WarmRunner(sb, test_cmd, log_parser=log_parser, budgets=per_test_budgets(cov, cfg), start_timeout=cfg.test_timeout)


def collect_budget(cov: CoverageMap | None, cfg: ValidateConfig) -> float | None:
    """Seconds start-up + collection may take: twice the clean time measured in the coverage run
    (itself slower than a plain run) + `per_test_constant`. Not `per_test_factor`: collection is
    one long step whose time varies little, and code that hangs at import pays this in full."""
    if cov is None or not cov.probed or not cov.collect_seconds:
        return None
    return round(2 * cov.collect_seconds + cfg.per_test_constant, 2)


def budgeted(sb: DockerSandbox, test_cmd: str, per_test: float | None, collect: float | None,
             budgets: dict | None = None) -> str:
    """`test_cmd` with the per-test budgets: the watchdog plugin (each test's own budget from
    `budgets`, `per_test` for any other, and the collection budget), or pytest-timeout alone
    when there is neither a collection budget nor a budget spec."""
    if not collect and not budgets:
        return test_cmd + timeout_args(per_test)
    sb.write_file(f"{WATCHDOG_DIR}/swelego_watchdog.py", WATCHDOG_PLUGIN)
    env = f"SWELEGO_COLLECT_BUDGET={collect or 0:g} SWELEGO_DEFAULT_BUDGET={per_test or 0:g}"
    if budgets:
        sb.write_file(f"{WATCHDOG_DIR}/budgets.json", json.dumps(budgets))
        env += f" SWELEGO_TEST_BUDGETS={WATCHDOG_DIR}/budgets.json"
    return (f"export PYTHONPATH={WATCHDOG_DIR}${{PYTHONPATH:+:$PYTHONPATH}} {env}; "
            f"{test_cmd} -p swelego_watchdog")


def validation_cmd(test_cmd: str, log_parser: str, cfg: ValidateConfig) -> str:
    """The command of validation's runs: with `quiet_failures` and a pytest suite, `--tb=no` last,
    after the repository's own options and ini addopts, so it wins. Outcomes are unchanged (the
    status lines and the short summary are printed either way); the rows keep `test_cmd`."""
    if cfg.quiet_failures and log_parser.startswith("parse_log_pytest"):
        return f"{test_cmd} --tb=no"
    return test_cmd


STATEMENT_TESTS = 5  # FAIL_TO_PASS tests whose tracebacks a problem statement is written from


def failure_log(sb: DockerSandbox, test_cmd: str, fail_to_pass: list[str], baseline: Baseline, *, log_parser: str,
                timeout: float, node_ids: Callable[[list[str]], list[str]] | None = None) -> str:
    """The log of a run of a valid candidate's first FAIL_TO_PASS tests with the repository's own
    traceback style (`test_cmd`, not the quiet `validation_cmd`), for its problem statement. The
    candidate must be on the tree."""
    tests = fail_to_pass[:STATEMENT_TESTS]
    ids = node_ids(tests) if node_ids else tests
    return run_selected(sb, test_cmd, ids, log_parser=log_parser,
                        timeout=run_budget(baseline, len(tests), timeout)).log


def timeout_args(seconds: float | None) -> str:
    # thread: the first test past its budget ends the run at once (a hang costs one budget, not
    # one per covering test); the sandbox's own exec timeout is the backstop.
    return f" --timeout={seconds:g} --timeout-method=thread" if seconds else ""


@dataclass
class Outcome:
    status: str  # apply_failed | no_tests | no_break | timeout | invalid | valid
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    tests_run: int = 0
    seconds: float = 0.0
    log: str = ""  # the final run's log, for the problem statement
    # How the lists were obtained: inferred (covering tests run, PASS_TO_PASS from the map),
    # full (a full-suite run), audited (inferred, then checked by a full-suite run whose lists win).
    validation: str = "full"
    backstop: bool = False  # the sandbox's exec timeout fired (processes may be left behind)
    inferred: dict | None = None  # audited: the inferred lists and status, for the comparison
    blocker: str | None = None  # why inference was not used (None: it was, or it was off)
    warm: bool = False  # the final run was served by the warm runner (hot-patched child)

    @property
    def agreed(self) -> bool | None:
        """Audited: whether the full-suite run confirmed the inferred status and lists exactly."""
        if self.inferred is None:
            return None
        return (self.inferred["status"] == self.status and self.inferred["fail_to_pass"] == self.fail_to_pass
                and self.inferred["pass_to_pass"] == self.pass_to_pass)


def time_budget(baseline: Baseline, n_tests: int, cap: float) -> float:
    """Seconds allowed for running `n_tests` of the suite: a generous multiple of what they took
    on the clean tree, so a bug that makes code loop is cut off early instead of at `cap`."""
    share = baseline.seconds * n_tests / max(1, len(baseline.passing))
    return min(cap, max(10.0, 5 * share + 5))


def run_budget(baseline: Baseline, n_tests: int, cap: float) -> float:
    """The deadline of one run: that of a full-suite run (`time_budget`), less the clean time of
    the tests this run leaves out. A slow candidate is then a timeout exactly when its full-suite
    run would pass the full-suite budget, whether it ran in full or only its covering tests (the
    tests left out run as on the clean tree); a hang inside one test is cut earlier, by that test's
    own budget."""
    full = time_budget(baseline, len(baseline.passing), cap)
    left_out = baseline.seconds * max(0, len(baseline.passing) - n_tests) / max(1, len(baseline.passing))
    return min(cap, max(10.0, full - left_out))


def validate_patch(sb: DockerSandbox, patch: str, baseline: Baseline, *, test_cmd: str, log_parser: str,
                   covering: set[str] | None, timeout: float, infer: bool = False,
                   audit: bool | Callable[[], bool] = False,
                   budget: Callable[[list[str]], float | None] | None = None,
                   node_ids: Callable[[list[str]], list[str]] | None = None, collect: float | None = None,
                   budgets: dict | None = None, warm: WarmRunner | None = None) -> Outcome:
    """Apply a bug patch to the clean tree and classify it. With `covering`, those tests run
    first: none broken is `no_break`; with `infer`, FAIL_TO_PASS = the broken ones and PASS_TO_PASS
    = the other stable passing tests, with no further run unless `audit` says so (asked only for a
    would-be valid one); without `infer` a full-suite run fixes both lists. Runs get `run_budget`
    seconds (at most `timeout`) and per-test budgets (`budget`, `budgets`); `node_ids` maps
    reported ids to node ids. With `warm`, an inferable candidate's runs are served by the warm
    runner's hot-patched child, or by a fresh process where it cannot."""
    if warm is not None and infer:
        warm.ensure()  # (re)started, if need be, before the candidate touches the tree
    sb.reset("git")
    seconds = 0.0
    if not apply_patch(sb, patch):
        return Outcome("apply_failed")
    flaky = set(baseline.flaky)
    inferred = None
    served = False
    paths = patch_files(patch)
    if covering is not None:
        # Coverage contexts name pytest node ids; the baseline names what the log parser reports.
        selected = sorted({log_id(t) for t in covering} & set(baseline.passing))
        if not selected:
            return Outcome("no_tests", validation="inferred" if infer else "full")
        to_run = node_ids(selected) if node_ids else selected
        per_test = budget(to_run) if budget else None
        limit = run_budget(baseline, len(selected), timeout)
        run = warm.run(paths, to_run, deadline=limit, default_budget=per_test) if warm and infer else None
        served = run is not None
        if run is None:
            run = run_selected(sb, budgeted(sb, test_cmd, per_test, collect, budgets), to_run, log_parser=log_parser,
                               timeout=limit)
        seconds += run.duration
        if run.timed_out or hit_test_budget(run):
            return Outcome("timeout", tests_run=len(selected), seconds=seconds, backstop=run.timed_out and not served,
                           validation="inferred" if infer else "full", warm=served)
        if _selection_failed(run):
            # pytest did not find every id (one parametrized by the time of day, say): a test
            # missing from this run would read as broken, so the full suite decides instead.
            infer = served = False
        else:
            broken = broken_tests(baseline.passing, run, among=set(selected))
            if not broken:
                return Outcome("no_break", tests_run=len(selected), seconds=seconds,
                               validation="inferred" if infer else "full", warm=served)
            if infer:
                f2p = [t for t in broken if t not in flaky]
                p2p = sorted(set(baseline.passing) - flaky - set(f2p))
                status = "valid" if f2p and p2p else "invalid" if f2p else "no_break"
                if status != "valid" or not (audit() if callable(audit) else audit):
                    return Outcome(status, f2p, p2p, len(selected), seconds, run.log, validation="inferred",
                                   warm=served)
                inferred = {"status": status, "fail_to_pass": f2p, "pass_to_pass": p2p}
    per_test = budget(baseline.passing) if budget else None
    limit = run_budget(baseline, len(baseline.passing), timeout)
    # An audit of a candidate served warm runs the full suite warm too: it checks what the
    # coverage map inferred. Whether hot patching equals a fresh import is the verify step's
    # to check (swebench's own run of every kept row, in its own image).
    run = warm.run(paths, None, deadline=limit, default_budget=per_test) if warm and served else None
    served = run is not None
    if run is None:
        run = run_tests(sb, budgeted(sb, test_cmd, per_test, collect, budgets), log_parser=log_parser, timeout=limit)
    seconds += run.duration
    validation = "audited" if inferred else "full"
    if run.timed_out or hit_test_budget(run):
        return Outcome("timeout", seconds=seconds, backstop=run.timed_out and not served, validation=validation,
                       inferred=inferred, warm=served)
    f2p = [t for t in broken_tests(baseline.passing, run) if t not in flaky]
    p2p = sorted(t for t in baseline.passing if run.status.get(t) in PASSED_STATES and t not in flaky)
    n = len(run.status)
    if not f2p:
        return Outcome("no_break", tests_run=n, seconds=seconds, validation=validation, inferred=inferred, warm=served)
    if not p2p:
        return Outcome("invalid", f2p, p2p, n, seconds, run.log, validation=validation, inferred=inferred, warm=served)
    return Outcome("valid", f2p, p2p, n, seconds, run.log, validation=validation, inferred=inferred, warm=served)


def _selection_failed(run: TestRun) -> bool:
    """pytest refused the selection: an id it did not collect ends the run before any test
    (usage error, exit code 4)."""
    return run.exit_code == 4 or "ERROR: not found:" in run.log


@dataclass
class Item:
    """One candidate to validate: its patch, the tests covering it (CoverageMap.closure) and why
    its PASS_TO_PASS cannot be inferred (None: it can)."""

    cid: str
    patch: str
    covering: set[str] | None
    blocker: str | None = "inference off"
    spans: list = field(default_factory=list)


def plan_batches(items: list[Item], baseline: Baseline, size: int) -> list[list[Item]]:
    """Units of work: inferable candidates share one test run when their covering tests are
    disjoint and their changes lie in different functions (so a test of one never ran the
    other's code on the clean tree); every other candidate is a unit of its own. Greedy, in order."""
    passing = set(baseline.passing)
    units: list[list[Item]] = []
    open_: list[tuple[list[Item], set[str], list]] = []
    for it in items:
        sel = {log_id(t) for t in it.covering or ()} & passing
        if size <= 1 or it.blocker is not None or not sel:
            units.append([it])
            continue
        for unit, tests, spans in open_:
            if len(unit) < size and not tests & sel and not any(
                    p == q and a <= d and c <= b for p, a, b in it.spans for q, c, d in spans):
                unit.append(it)
                tests |= sel
                spans.extend(it.spans)
                break
        else:
            unit = [it]
            units.append(unit)
            open_.append((unit, set(sel), list(it.spans)))
    return units


def validate_unit(sb: DockerSandbox, unit: list[Item], baseline: Baseline, *, test_cmd: str, log_parser: str,
                  timeout: float, audit: InferenceAudit, cov: CoverageMap | None, cfg: ValidateConfig,
                  warm: WarmRunner | None = None) -> list[Outcome]:
    """Outcomes of a unit from plan_batches, in order. A batch applies every patch and runs the
    union of the covering tests once; each candidate's FAIL_TO_PASS is the broken tests among its
    own covering tests. A batch that does not apply, hangs or meets inference turned off is
    validated candidate by candidate; an audited member gets its own full-suite run, compared
    with what the batch inferred. With a warm runner (`warm`), whose per-candidate cost is the
    tests' own run time, every candidate is validated on its own."""
    budget = (lambda tests: per_test_budget(cov, tests, cfg)) if cov is not None else None
    node_ids = cov.node_ids if cov is not None else None
    collect = collect_budget(cov, cfg)
    budgets = per_test_budgets(cov, cfg)

    def single(it: Item, infer: bool, audit_fn) -> Outcome:
        return validate_patch(sb, it.patch, baseline, test_cmd=test_cmd, log_parser=log_parser,
                              covering=selection(it, audit), timeout=timeout, infer=infer, audit=audit_fn,
                              budget=budget, node_ids=node_ids, collect=collect, budgets=budgets, warm=warm)

    if len(unit) == 1 or not audit.enabled or warm is not None:
        return validate_unit_each(unit, single, audit)
    batched = _run_batch(sb, unit, baseline, test_cmd=test_cmd, log_parser=log_parser, timeout=timeout,
                         budget=budget, node_ids=node_ids, collect=collect, budgets=budgets)
    if batched is None:  # did not apply together, or a test hung: one by one
        return validate_unit_each(unit, single, audit)
    outs = []
    for it, o in zip(unit, batched, strict=True):
        if o.status == "valid" and audit.claim():
            full = single(it, False, False)
            full.validation = "audited"
            full.inferred = {"status": o.status, "fail_to_pass": o.fail_to_pass, "pass_to_pass": o.pass_to_pass}
            full.seconds += o.seconds
            o = full
        audit.record(it.cid, o)
        outs.append(o)
    return outs


def selection(it: Item, audit: InferenceAudit) -> set[str] | None:
    """The tests to run first, None for the full suite at once. With inference configured, a
    candidate it cannot cover (a module, class-body or decorator-level change, code that runs at
    import) or a repository where an audit disagreed gets the full suite: the map's "no covering
    test broke" is not trusted there either. With `p2p: full`, selection then confirmation."""
    if audit.cfg.inference and (it.blocker is not None or not audit.enabled):
        return None
    return it.covering


def validate_unit_each(unit: list[Item], single, audit: InferenceAudit) -> list[Outcome]:
    outs = []
    for it in unit:
        o = single(it, it.blocker is None and audit.enabled, audit.claim)
        audit.record(it.cid, o)
        outs.append(o)
    return outs


def _run_batch(sb: DockerSandbox, unit: list[Item], baseline: Baseline, *, test_cmd: str, log_parser: str,
               timeout: float, budget, node_ids, collect: float | None = None,
               budgets: dict | None = None) -> list[Outcome] | None:
    sb.reset("git")
    for it in unit:
        if not apply_patch(sb, it.patch):
            sb.reset("git")
            return None
    passing, flaky = set(baseline.passing), set(baseline.flaky)
    sels = [{log_id(t) for t in it.covering or ()} & passing for it in unit]
    union = sorted(set().union(*sels))
    to_run = node_ids(union) if node_ids else union
    per_test = budget(to_run) if budget else None
    run = run_selected(sb, budgeted(sb, test_cmd, per_test, collect, budgets), to_run, log_parser=log_parser,
                       timeout=run_budget(baseline, len(union), timeout))
    if run.timed_out or hit_test_budget(run) or _selection_failed(run):
        if run.timed_out:
            sb.reset("fresh")
        return None
    share = run.duration / len(unit)
    outs = []
    for sel in sels:
        f2p = [t for t in broken_tests(passing, run, among=sel) if t not in flaky]
        if not f2p:
            outs.append(Outcome("no_break", tests_run=len(sel), seconds=share, validation="inferred"))
            continue
        p2p = sorted(passing - flaky - set(f2p))
        outs.append(Outcome("valid" if p2p else "invalid", f2p, p2p, len(sel), share, run.log, validation="inferred"))
    return outs


class InferenceAudit:
    """Per repository: which inferred valid candidates also get the full-suite run, and whether
    inference is still trusted. Thread-safe (the workers of one repository share it).

    The first `audit_min` inferred valid candidates are audited, and after that enough of them
    that at least `audit_fraction` of all inferred valid candidates were. A disagreement (or a
    row the official grading rejects) turns inference off for the rest of the repository."""

    def __init__(self, cfg: ValidateConfig) -> None:
        self.cfg = cfg
        self.enabled = cfg.inference
        self.inferred_valid = 0
        self.audited = 0
        self.disagreements: list[dict] = []
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """Called for an inferred valid candidate: True = audit this one."""
        with self._lock:
            self.inferred_valid += 1
            need = max(self.cfg.audit_min, math.ceil(self.cfg.audit_fraction * self.inferred_valid))
            if self.audited < need:
                self.audited += 1
                return True
            return False

    def record(self, cid: str, outcome: Outcome) -> None:
        if outcome.agreed is False:
            self.disagree(cid, f"full-suite run: {outcome.status}, F2P {len(outcome.fail_to_pass)} / P2P "
                               f"{len(outcome.pass_to_pass)}; inferred: {outcome.inferred['status']}, F2P "
                               f"{len(outcome.inferred['fail_to_pass'])} / P2P {len(outcome.inferred['pass_to_pass'])}",
                          _diff(outcome))

    def disagree(self, cid: str, reason: str, tests: list[str] | None = None) -> None:
        with self._lock:
            self.enabled = False
            self.disagreements.append({"candidate": cid, "reason": reason, "tests": (tests or [])[:20]})

    def replay(self, rec: dict) -> None:
        """A record read back from the store (a resumed run) counts as if validated now."""
        v = rec.get("validation")
        with self._lock:
            if v == "audited" or (v == "inferred" and rec.get("status") in ("valid", "kept", "grading_mismatch")):
                self.inferred_valid += 1
                self.audited += v == "audited"
        if rec.get("audit_agreed") is False or rec.get("inference_wrong"):
            self.disagree(rec["candidate"]["id"], rec.get("error") or "disagreement recorded by an earlier run")

    def summary(self) -> dict:
        return {"inference": "on" if self.enabled else "off", "inferred_valid": self.inferred_valid,
                "audited": self.audited, "disagreements": self.disagreements}


def _diff(o: Outcome) -> list[str]:
    if o.inferred is None:
        return []
    return sorted(set(o.fail_to_pass) ^ set(o.inferred["fail_to_pass"]))
