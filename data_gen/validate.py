"""Validation shared by synthetic and real tasks: a stable baseline with flaky tests
quarantined, coverage-guided test selection, and FAIL_TO_PASS / PASS_TO_PASS from runs in
warm sandboxes that are reset with git between candidates."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field

from swelego.config import ConfigError, doc_field
from swelego.errors import SwelegoError
from swelego.harness import PASSED_STATES, TestRun, apply_patch, run_tests
from swelego.sandbox import DockerSandbox

COV_JSON = "/tmp/swelego-cov.json"
ARGS_FILE = "/tmp/swelego-tests.txt"
P2P_MODES = ("infer", "full")


@dataclass
class ValidateConfig:
    """How candidate bugs are validated: which tests run, how PASS_TO_PASS is obtained, how the
    inference is audited and how fast a hang is cut off."""

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
    per_test_constant: float = doc_field("... plus these seconds (pytest-timeout; the sandbox timeout backs it).",
                                         default=5.0)
    test_timeout: float = doc_field("Seconds for one test-suite run at most; a hanging candidate is a `timeout`.",
                                    default=600.0)
    baseline_runs: int = doc_field("Clean-suite runs; a test whose status changes between them is flaky.",
                                   default=3)

    def __post_init__(self) -> None:
        if self.p2p not in P2P_MODES:
            raise ConfigError(f"validate.p2p must be one of {', '.join(P2P_MODES)}, not {self.p2p!r}")
        if not 0.1 <= self.audit_fraction <= 1:
            raise ConfigError(f"validate.audit_fraction must be between 0.1 and 1, not {self.audit_fraction}")
        if self.audit_min < 0 or self.per_test_factor <= 0 or self.per_test_constant < 0 or self.test_timeout <= 0:
            raise ConfigError("validate: audit_min, per_test_constant must be >= 0; per_test_factor, "
                              "test_timeout > 0")
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


@dataclass
class CoverageMap:
    """file (relative to /testbed) -> line -> ids of the tests that executed it."""

    lines: dict[str, dict[int, list[str]]] = field(default_factory=dict)

    def tests_for(self, path: str, start: int, end: int) -> set[str]:
        by_line = self.lines.get(path, {})
        out: set[str] = set()
        for n in range(start, end + 1):
            out.update(by_line.get(n, ()))
        return out

    def to_json(self) -> dict:
        return {f: {str(n): ids for n, ids in d.items()} for f, d in self.lines.items()}

    @classmethod
    def from_json(cls, d: dict) -> CoverageMap:
        return cls({f: {int(n): ids for n, ids in m.items()} for f, m in d.items()})


def coverage_map(sb: DockerSandbox, test_cmd: str, *, timeout: float = 1800, workdir: str = "/testbed") -> CoverageMap:
    """One coverage run of the clean suite with per-test contexts (pytest-cov)."""
    sb.reset("git")
    # -i: data files under the tree (templates, fixtures) are not Python and must not abort the report.
    r = sb.exec(f"{test_cmd} --cov={workdir} --cov-context=test --cov-report= >/tmp/swelego-cov.log 2>&1; "
                f"coverage json -i --show-contexts -q -o {COV_JSON}", timeout=timeout)
    try:
        data = json.loads(sb.read_file(COV_JSON))
    except (FileNotFoundError, ValueError):
        tail = sb.exec("tail -n 5 /tmp/swelego-cov.log").output.strip()
        raise SwelegoError(f"coverage run produced no data (exit {r.exit_code}): {tail[-300:]}") from None
    finally:
        sb.reset("git")
    cov = CoverageMap()
    for fname, fdata in data.get("files", {}).items():
        rel = os.path.relpath(fname, workdir) if fname.startswith("/") else fname
        by_line: dict[int, list[str]] = {}
        for line, contexts in (fdata.get("contexts") or {}).items():
            ids = sorted({c.split("|", 1)[0] for c in contexts if c})  # "" is import-time code
            if ids:
                by_line[int(line)] = ids
        if by_line:
            cov.lines[rel] = by_line
    return cov


def run_selected(sb: DockerSandbox, test_cmd: str, tests: list[str], *, log_parser: str,
                 timeout: float) -> TestRun:
    """Run only `tests` (pytest node ids), passed through an args file: a long id list would
    overflow one command line."""
    sb.write_file(ARGS_FILE, "\n".join(tests) + "\n")
    return run_tests(sb, f"{test_cmd} @{ARGS_FILE}", timeout=timeout, log_parser=log_parser)


def broken_tests(baseline_passing: list[str] | set[str], run: TestRun, among: set[str] | None = None) -> list[str]:
    """Baseline-passing tests that do not pass in `run` (a test that vanished, e.g. because its
    module no longer imports, counts as broken)."""
    pool = set(baseline_passing) if among is None else set(baseline_passing) & among
    return sorted(t for t in pool if run.status.get(t) not in PASSED_STATES)


@dataclass
class Outcome:
    status: str  # apply_failed | no_tests | no_break | timeout | invalid | valid
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    tests_run: int = 0
    seconds: float = 0.0
    log: str = ""  # the final run's log, for the problem statement


def time_budget(baseline: Baseline, n_tests: int, cap: float) -> float:
    """Seconds allowed for running `n_tests` of the suite: a generous multiple of what they took
    on the clean tree, so a bug that makes code loop is cut off early instead of at `cap`."""
    share = baseline.seconds * n_tests / max(1, len(baseline.passing))
    return min(cap, max(10.0, 5 * share + 5))


def validate_patch(sb: DockerSandbox, patch: str, baseline: Baseline, *, test_cmd: str, log_parser: str,
                   covering: set[str] | None, timeout: float) -> Outcome:
    """Apply a bug patch to the clean tree and classify it.

    With `covering` (test selection on) only those tests run first; a candidate that breaks
    one of them gets a full-suite run, which fixes its FAIL_TO_PASS and PASS_TO_PASS. Without
    it the full suite runs once. Each run gets `time_budget` seconds, at most `timeout`."""
    sb.reset("git")
    seconds = 0.0
    if not apply_patch(sb, patch):
        return Outcome("apply_failed")
    flaky = set(baseline.flaky)
    if covering is not None:
        selected = sorted(covering & set(baseline.passing))
        if not selected:
            return Outcome("no_tests")
        run = run_selected(sb, test_cmd, selected, log_parser=log_parser,
                           timeout=time_budget(baseline, len(selected), timeout))
        seconds += run.duration
        if run.timed_out:
            return Outcome("timeout", tests_run=len(selected), seconds=seconds)
        if not broken_tests(baseline.passing, run, among=set(selected)):
            return Outcome("no_break", tests_run=len(selected), seconds=seconds)
    run = run_tests(sb, test_cmd, timeout=time_budget(baseline, len(baseline.passing), timeout),
                    log_parser=log_parser)
    seconds += run.duration
    if run.timed_out:
        return Outcome("timeout", seconds=seconds)
    f2p = [t for t in broken_tests(baseline.passing, run) if t not in flaky]
    p2p = sorted(t for t in baseline.passing if run.status.get(t) in PASSED_STATES and t not in flaky)
    n = len(run.status)
    if not f2p:
        return Outcome("no_break", tests_run=n, seconds=seconds)
    if not p2p:
        return Outcome("invalid", f2p, p2p, n, seconds, run.log)
    return Outcome("valid", f2p, p2p, n, seconds, run.log)
