"""Validation machinery on the real engine: baselines, timeouts, and the worker carrying on."""

from __future__ import annotations

import textwrap
import time

import pytest
from conftest import TEST_NS, git

from data_gen.issue_text import failing_assertions
from data_gen.synth.candidates import Candidate
from data_gen.synth.modifiers import unified_diff
from data_gen.synth.pipeline import ENV_EXTRA_DEPS, SynthConfig, _validate
from data_gen.validate import (
    CoverageMap,
    InferenceAudit,
    Item,
    ValidateConfig,
    budgeted,
    changed_lines,
    collect_budget,
    coverage_map,
    failure_log,
    hit_test_budget,
    inference_blocker,
    log_id,
    per_test_budget,
    plan_batches,
    stable_baseline,
    validate_patch,
    validate_unit,
    validation_cmd,
    warm_runner,
)
from swelego.harness import apply_patch, run_tests
from swelego.sandbox import DockerSandbox, SandboxLimits
from swelego.sandbox.images import build_env_image
from swelego.schema import TaskInstance


def _patch(client, image, old: str, new: str) -> str:
    clean = client.containers.run(image, ["cat", "toycalc/__init__.py"], remove=True, entrypoint=[]).decode()
    assert old in clean
    return unified_diff("toycalc/__init__.py", clean, clean.replace(old, new))


def test_hanging_candidate_times_out_and_the_worker_continues(toy_env, client):
    hang = _patch(client, toy_env.image, "    s = sorted(xs)\n", "    s = sorted(xs)\n    while True:\n        pass\n")
    wrong = _patch(client, toy_env.image, "return s[len(s) // 2]", "return s[0]")
    with DockerSandbox(toy_env.image, client=client, limits=SandboxLimits(exec_timeout=120)) as sb:
        base = stable_baseline(sb, toy_env.test_cmd, log_parser=toy_env.log_parser, runs=2)
        assert len(base.passing) == 4 and not base.flaky
        hung = validate_patch(sb, hang, base, test_cmd=toy_env.test_cmd, log_parser=toy_env.log_parser,
                              covering=None, timeout=5)
        assert hung.status == "timeout"
        assert "pytest" not in sb.exec("ps -eo args").output  # the hung run is gone
        ok = validate_patch(sb, wrong, base, test_cmd=toy_env.test_cmd, log_parser=toy_env.log_parser,
                            covering=None, timeout=120)
    assert ok.status == "valid"
    assert ok.fail_to_pass == ["tests/test_calc.py::test_median_odd", "tests/test_calc.py::test_median_single[xs1]"]
    assert ok.pass_to_pass == ["tests/test_calc.py::test_mean", "tests/test_calc.py::test_median_single[xs0]"]


def test_the_watchdog_never_cuts_a_test_before_its_budget_and_cuts_a_hang_soon_after(toy_env, client):
    """The watchdog stays armed from test to test (re-arming per test cost 0.3 ms a test): a test
    that uses most of its budget after 200 fast ones (1 s in all: longer than one arming covers)
    still passes, so do tests that run while time.monotonic is frozen, and a hang is cut soon
    after its budget."""
    tests = ("import time\n\n\n" + "".join(f"def test_fast_{i}():\n    time.sleep(0.005)\n\n\n" for i in range(200))
             + "def test_slow_in_budget():\n    time.sleep(1.2)\n\n\n"
             # time.monotonic frozen, as freezegun does, for 2.4 s of tests: the watchdog's clock is not
             + "import pytest\n\n\n@pytest.fixture(scope='module')\ndef frozen():\n    real = time.monotonic\n"
             + "    time.monotonic = lambda: 1234.0\n    yield\n    time.monotonic = real\n\n\n"
             + "".join(f"def test_frozen_{i}(frozen):\n    time.sleep(0.3)\n\n\n" for i in range(8))
             + "def test_zz_hang():\n    while True:\n        pass\n")
    with DockerSandbox(toy_env.image, client=client, limits=SandboxLimits(exec_timeout=120)) as sb:
        sb.write_file("tests/test_watch.py", tests)
        cmd = budgeted(sb, f"{toy_env.test_cmd} -v tests/test_watch.py", 1.5, 30.0)  # 1.5 s a test
        t0 = time.monotonic()
        run = run_tests(sb, cmd, log_parser=toy_env.log_parser, timeout=60)
        took = time.monotonic() - t0
    assert hit_test_budget(run) and not run.timed_out
    assert "test_slow_in_budget PASSED" in run.log and "test_fast_199 PASSED" in run.log
    assert "test_frozen_7 PASSED" in run.log
    assert "in test_zz_hang" in run.log  # the watchdog's traceback: the hang, not the slow test
    assert took < 14  # start-up + 1 s + 1.2 s + 2.4 s + the hang's 1.5 s budget (+ 0.05 s)


def test_patch_that_does_not_apply_is_reported(toy_env, client):
    bad = "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n"
    with DockerSandbox(toy_env.image, client=client) as sb:
        base = stable_baseline(sb, toy_env.test_cmd, log_parser=toy_env.log_parser, runs=1)
        out = validate_patch(sb, bad, base, test_cmd=toy_env.test_cmd, log_parser=toy_env.log_parser,
                             covering=None, timeout=60)
    assert out.status == "apply_failed"


# -- PASS_TO_PASS inference, its audit, per-test budgets and the swebench backstop ------------------------

COV_FILES = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "covcalc"
        version = "0.1.0"
        """,
    # Each function is a case for the coverage map: a plain call (add, double), a module-level
    # constant (SCALE), code run at import (table -> TABLE), code reached only in a child process
    # (cli_value), a memo the map cannot see through (parse -> _parse: only the first caller runs
    # _parse's body), and a function a candidate makes hang (square).
    "covcalc/__init__.py": """\
        SCALE = 2


        def add(a, b):
            return a + b


        def double(x):
            return x * SCALE


        def table():
            return {i: add(i, i) for i in range(3)}


        TABLE = table()


        def cli_value():
            return add(40, 2)


        _memo = {}


        def _parse(s):
            return int(s) * 10


        def parse(s):
            if s not in _memo:
                _memo[s] = _parse(s)
            return _memo[s]


        def square(x):
            y = x * x
            return y


        def logged(fn):
            def wrapper(*args):
                return fn(*args)

            return wrapper


        @logged
        def triple(x):
            return 3 * x


        def inc(x):
            return x + 1


        class Box:
            def __init__(self, v):
                self.v = v

            def get(self):
                return self.v + 0

            @property
            def twice(self):
                return self.v * 2
        """,
    "covcalc/__main__.py": """\
        from covcalc import cli_value

        print(cli_value())
        """,
    "tests/test_cov.py": """\
        import datetime
        import subprocess
        import sys

        import pytest

        from covcalc import TABLE, Box, add, double, inc, parse, square, triple


        def test_add():
            assert add(1, 2) == 3


        def test_double():
            assert double(3) == 6


        def test_table():
            assert TABLE[2] == 4


        def test_cli():
            out = subprocess.run([sys.executable, "-m", "covcalc"], capture_output=True, text=True, check=True)
            assert out.stdout.strip() == "42"


        def test_parse_first():
            assert parse("1") == 10


        def test_parse_again():
            assert parse("1") * 3 == 30


        def test_square():
            assert square(3) == 9


        def test_triple():
            assert triple(2) == 6


        def test_box():
            assert Box(2).get() == 2 and Box(2).twice == 4


        @pytest.mark.parametrize("n", range(8))
        def test_inc(n):
            assert inc(n) == n + 1


        # The node id carries the time of collection; the log parser reports it up to the space.
        @pytest.mark.parametrize("stamp", [datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")])
        def test_stamp(stamp):
            assert inc(1) == 2
        """,
}
ALL_COV_TESTS = 18


@pytest.fixture(scope="module")
def cov_env(client, base_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("covcalc") / "covcalc"
    for rel, text in COV_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    git("init", "-q", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "covcalc", cwd=root)
    return build_env_image(str(root), namespace=TEST_NS, extra_deps=ENV_EXTRA_DEPS, client=client, log=lambda m: None)


@pytest.fixture(scope="module")
def cov_setup(cov_env, client):
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        base = stable_baseline(sb, cov_env.test_cmd, log_parser=cov_env.log_parser, runs=2)
        cov = coverage_map(sb, cov_env.test_cmd, timeout=300)
        clean = sb.read_file("/testbed/covcalc/__init__.py").decode()
    assert len(base.passing) == ALL_COV_TESTS and not base.flaky
    return base, cov, {"covcalc/__init__.py": clean}


def _cand(files: dict[str, str], old: str, new: str, cid: str, cov: CoverageMap) -> Item:
    src = files["covcalc/__init__.py"]
    assert old in src
    patch = unified_diff("covcalc/__init__.py", src, src.replace(old, new, 1))
    lines = sorted(changed_lines(patch)["covcalc/__init__.py"])
    covering = cov.closure("covcalc/__init__.py", lines[0], lines[-1])
    return Item(cid, patch, covering, None, [["covcalc/__init__.py", lines[0], lines[-1]]])


def _unit(sb, env, base, cov, items, vc, audit, warm=None):
    """Validate `items` as the pipeline does: batched by plan_batches, with validation's command
    (quiet failures), outcomes in order."""
    sb.reset("git")  # the map's lines are the clean file's (the pipeline reads the sources once)
    files = {"covcalc/__init__.py": sb.read_file("/testbed/covcalc/__init__.py").decode()}
    for it in items:
        it.blocker = inference_blocker(it.patch, files, cov, base.passing)
    outs = {}
    for unit in plan_batches(items, base, vc.batch_size):
        for it, o in zip(unit, validate_unit(sb, unit, base, test_cmd=validation_cmd(env.test_cmd, env.log_parser, vc),
                                             log_parser=env.log_parser, timeout=120, audit=audit, cov=cov, cfg=vc,
                                             warm=warm), strict=True):
            outs[it.cid] = o
    return [outs[it.cid] for it in items]


def test_the_probe_sees_processes_fixtures_import_time_and_durations(cov_setup):
    base, cov, _ = cov_setup
    assert cov.probed and cov.pytest_timeout
    assert cov.spawners == ["tests/test_cov.py::test_cli"]
    assert {log_id(t) for t in cov.durations} == set(base.passing)
    # table()'s body runs at import: the map says so instead of charging it to no test
    assert cov.outside["covcalc/__init__.py"]
    # the child process's cli_value() is reached by test_cli through the spawner closure
    assert "tests/test_cov.py::test_cli" in cov.closure("covcalc/__init__.py", 1, 1)


def test_inference_agrees_with_a_full_run_and_structural_changes_get_the_full_suite(cov_env, cov_setup, client):
    base, cov, files = cov_setup
    vc = ValidateConfig(audit_min=1)
    cands = [
        _cand(files, "return x * SCALE", "return x * SCALE + 1", "double", cov),  # function body: inferred
        _cand(files, "return add(40, 2)", "return add(40, 3)", "cli", cov),  # reached only in a child process
        _cand(files, "SCALE = 2", "SCALE = 3", "scale", cov),  # module level: full
        _cand(files, "return {i: add(i, i)", "return {i: add(i, i + 1)", "table", cov),  # runs at import: full
    ]
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        audit = InferenceAudit(vc)
        outs = {it.cid: o for it, o in zip(cands, _unit(sb, cov_env, base, cov, cands, vc, audit), strict=True)}
        truth = {it.cid: validate_patch(sb, it.patch, base, test_cmd=cov_env.test_cmd, log_parser=cov_env.log_parser,
                                        covering=None, timeout=120) for it in cands}
    assert [it.blocker is None for it in cands] == [True, True, False, False]
    assert "outside a function body" in cands[2].blocker and "outside any test" in cands[3].blocker
    assert outs["double"].validation == "audited" and outs["double"].agreed  # the first one is audited
    assert outs["cli"].validation == "inferred" and outs["cli"].tests_run == 1  # only test_cli ran
    for cid in ("scale", "table"):
        assert outs[cid].validation == "full" and outs[cid].tests_run == ALL_COV_TESTS
    for cid, o in outs.items():
        assert (o.status, o.fail_to_pass, o.pass_to_pass) == (truth[cid].status, truth[cid].fail_to_pass,
                                                              truth[cid].pass_to_pass), cid
    assert outs["cli"].fail_to_pass == ["tests/test_cov.py::test_cli"]
    assert outs["table"].fail_to_pass == ["tests/test_cov.py::test_table"]
    assert audit.enabled and not audit.disagreements


def test_an_audit_disagreement_turns_inference_off(cov_env, cov_setup, client):
    base, cov, files = cov_setup
    # _parse's body runs only in the first test that parses "1"; the second gets the memo.
    memo = _cand(files, "return int(s) * 10", "return int(s) * 11", "memo", cov)
    later = _cand(files, "return x * SCALE", "return x * SCALE + 1", "double", cov)
    vc = ValidateConfig(audit_min=1, batch_size=1)
    audit = InferenceAudit(vc)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        (o,) = _unit(sb, cov_env, base, cov, [memo], vc, audit)
        assert o.validation == "audited" and o.agreed is False
        assert o.inferred["fail_to_pass"] == ["tests/test_cov.py::test_parse_first"]
        assert o.fail_to_pass == ["tests/test_cov.py::test_parse_again", "tests/test_cov.py::test_parse_first"]
        assert "tests/test_cov.py::test_parse_again" not in o.pass_to_pass  # the shipped lists are the full run's
        assert not audit.enabled and audit.disagreements[0]["candidate"] == "memo"
        (o2,) = _unit(sb, cov_env, base, cov, [later], vc, audit)
    assert o2.validation == "full" and o2.tests_run == ALL_COV_TESTS


def test_a_hang_is_cut_by_the_per_test_budget(cov_env, cov_setup, client):
    base, cov, files = cov_setup
    hang = _cand(files, "    y = x * x\n", "    y = x * x\n    while y:\n        pass\n", "hang", cov)
    vc = ValidateConfig(per_test_constant=2.0)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        t0 = time.monotonic()
        (o,) = _unit(sb, cov_env, base, cov, [hang], vc, InferenceAudit(vc))
        took = time.monotonic() - t0
        assert "pytest" not in sb.exec("ps -eo args").output  # the run ended, nothing left hanging
    assert o.status == "timeout" and not o.backstop  # the per-test watchdog cut it, not the sandbox
    assert per_test_budget(cov, ["tests/test_cov.py::test_square"], vc) < 3
    assert took < 20  # the budget (~2 s) + start-up, not the run's 120 s cap


def test_a_hang_at_import_time_is_cut_by_the_collection_watchdog(cov_env, cov_setup, client):
    base, cov, files = cov_setup
    stuck = _cand(files, "SCALE = 2\n", "SCALE = 2\nwhile SCALE:\n    pass\n", "stuck", cov)
    vc = ValidateConfig(per_test_constant=2.0)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        t0 = time.monotonic()
        (o,) = _unit(sb, cov_env, base, cov, [stuck], vc, InferenceAudit(vc))
        took = time.monotonic() - t0
    assert stuck.blocker and o.validation == "full"  # module level: the full suite, whose collection hangs
    assert o.status == "timeout" and not o.backstop
    assert collect_budget(cov, vc) < 5 and took < 20


def test_the_swebench_verify_step_catches_a_wrong_inferred_row(cov_env, cov_setup, client, tmp_path):
    """An inferred row the audit did not sample (the second inferred valid one at audit_min=0,
    fraction 0.1) whose candidate reaches a test through a memo: swebench's grading of the
    unfixed row sees a PASS_TO_PASS test fail, the row is redone with the full suite, and
    inference is off for the repository."""
    base, cov, files = cov_setup
    ok = _cand(files, "return x * SCALE", "return x * SCALE + 1", "double", cov)
    memo = _cand(files, "return int(s) * 10", "return int(s) * 11", "memo", cov)
    cfg = SynthConfig(out=str(tmp_path), namespace=TEST_NS, validate=ValidateConfig(audit_min=0, batch_size=1))
    audit = InferenceAudit(cfg.validate)
    recs = []
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        for it in (ok, memo):
            (o,) = _unit(sb, cov_env, base, cov, [it], cfg.validate, audit)
            c = Candidate(it.cid * 4, cov_env.repo, "procedural", "test", "covcalc/__init__.py", it.cid, 1, 1,
                          it.patch, spans=it.spans)
            recs.append(_validate(sb, c, base, cov, cov_env, cfg, None, client, files, audit, first=o))
    first, second = recs
    assert first["validation"] == "audited" and first["status"] == "kept"
    # Validation's runs were quiet; the statement has the assertion from the traceback run.
    assert "assert 7 == 6" in first["row"]["problem_statement"] and first["statement_log_seconds"] > 0
    assert "--tb=no" in first["row"]["eval_script"]  # graded quiet too, and graded right (kept)
    assert second["inference_wrong"] and second["status"] == "kept" and second["validation"] == "full"
    row = TaskInstance.from_row(second["row"])
    assert row.FAIL_TO_PASS == ["tests/test_cov.py::test_parse_again", "tests/test_cov.py::test_parse_first"]
    assert row.metadata["validation"] == "full"
    assert not audit.enabled and "PASS_TO_PASS test(s) fail without the fix" in audit.disagreements[0]["reason"]
    for r in recs:
        client.images.remove(r["row"]["image"], force=True)


# -- the warm runner: one collected pytest session per sandbox, a hot-patched fork per candidate ------------

def _truth(sb, env, base, items):
    """Fresh full runs with the repository's own command (tracebacks formatted)."""
    return {it.cid: validate_patch(sb, it.patch, base, test_cmd=env.test_cmd, log_parser=env.log_parser,
                                   covering=None, timeout=120) for it in items}


def test_quiet_validation_runs_keep_every_outcome_and_leave_the_tracebacks_to_the_statement(cov_env, cov_setup,
                                                                                           client):
    """Validation's runs pass --tb=no, warm and fresh: each status and list is that of a run with
    tracebacks, their logs hold no traceback, and the statement's run of the FAIL_TO_PASS tests does."""
    base, cov, files = cov_setup
    vc = ValidateConfig(audit_min=0)
    quiet = validation_cmd(cov_env.test_cmd, cov_env.log_parser, vc)
    assert quiet.endswith(" --tb=no")
    assert validation_cmd(cov_env.test_cmd, cov_env.log_parser, ValidateConfig(quiet_failures=False)) == cov_env.test_cmd
    assert validation_cmd("./runtests.py", "parse_log_django", vc) == "./runtests.py"  # pytest's flag, pytest only
    cands = [
        _cand(files, "return x * SCALE", "return x * SCALE + 1", "double", cov),  # inferred, warm
        _cand(files, "return 3 * x", "return 3 * x + 1", "triple", cov),  # inferred, warm
        _cand(files, "SCALE = 2", "SCALE = 3", "scale", cov),  # module level: a fresh full run
    ]
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, quiet, cov_env.log_parser, cov, vc)
        outs = dict(zip([it.cid for it in cands], _unit(sb, cov_env, base, cov, cands, vc, InferenceAudit(vc), warm),
                        strict=True))
        truth = _truth(sb, cov_env, base, cands)
        sb.reset("git")
        assert apply_patch(sb, cands[0].patch)
        log = failure_log(sb, cov_env.test_cmd, outs["double"].fail_to_pass, base, log_parser=cov_env.log_parser,
                          timeout=120, node_ids=cov.node_ids)
    assert [outs[c].warm for c in ("double", "triple", "scale")] == [True, True, False]
    for cid, o in outs.items():
        assert o.status == "valid", cid
        assert (o.fail_to_pass, o.pass_to_pass) == (truth[cid].fail_to_pass, truth[cid].pass_to_pass), cid
        assert failing_assertions(truth[cid].log, o.fail_to_pass), cid  # the repository's style: tracebacks
        assert not failing_assertions(o.log, o.fail_to_pass), cid  # validation's: none
        assert all(f"FAILED {t}" in o.log for t in o.fail_to_pass), cid  # but every failure's status line
    assert any("assert 7 == 6" in e for e in failing_assertions(log, outs["double"].fail_to_pass))


def test_the_warm_runner_agrees_with_fresh_full_runs(cov_env, cov_setup, client):
    """Function bodies, a method, a property, a decorated function (the live function sits in the
    decorator's closure), a wrapper's body and code reached only in a child process: each served by
    a hot-patched fork of one collected session, each with a fresh full run's status and lists."""
    base, cov, files = cov_setup
    vc = ValidateConfig(audit_min=1, audit_fraction=0.1)
    cands = [
        _cand(files, "return x * SCALE", "return x * SCALE + 1", "double", cov),
        _cand(files, "return add(40, 2)", "return add(40, 3)", "cli", cov),  # the child process imports the file
        _cand(files, "return 3 * x", "return 3 * x + 1", "triple", cov),
        _cand(files, "return self.v + 0", "return self.v + 1", "get", cov),
        _cand(files, "return self.v * 2", "return self.v * 3", "twice", cov),
        _cand(files, "return fn(*args)", "return fn(*args[:1])", "wrapper", cov),  # no test breaks
        _cand(files, "SCALE = 2", "SCALE = 3", "scale", cov),  # module level: a fresh full run
    ]
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, cov_env.test_cmd, cov_env.log_parser, cov, vc)
        outs = dict(zip([it.cid for it in cands], _unit(sb, cov_env, base, cov, cands, vc, InferenceAudit(vc), warm),
                        strict=True))
        truth = _truth(sb, cov_env, base, cands)
        pid = warm._pid
    for cid, o in outs.items():
        assert (o.status, o.fail_to_pass, o.pass_to_pass) == (truth[cid].status, truth[cid].fail_to_pass,
                                                              truth[cid].pass_to_pass), cid
        assert o.warm == (cid != "scale"), cid
    assert outs["triple"].fail_to_pass == ["tests/test_cov.py::test_triple"]
    assert outs["twice"].fail_to_pass == ["tests/test_cov.py::test_box"]
    assert outs["cli"].fail_to_pass == ["tests/test_cov.py::test_cli"]
    assert outs["wrapper"].status == "no_break"
    assert outs["double"].validation == "audited" and outs["double"].agreed  # the audit's full suite ran warm too
    assert warm.served >= 7 and pid is not None  # one server for all of them


def test_a_change_the_warm_runner_cannot_hot_patch_runs_in_a_fresh_process(cov_env, cov_setup, client):
    base, cov, files = cov_setup
    vc = ValidateConfig(audit_min=0)
    # wrapper's new body reads a variable of logged() it did not close over before: its code
    # object cannot replace the live closure's, so the candidate is run the ordinary way.
    it = _cand(files, "return fn(*args)", "return fn(*args) if wrapper else None", "closure", cov)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, cov_env.test_cmd, cov_env.log_parser, cov, vc)
        (o,) = _unit(sb, cov_env, base, cov, [it], vc, InferenceAudit(vc), warm)
        (t,) = _truth(sb, cov_env, base, [it]).values()
    assert it.blocker is None and not o.warm and "free var" in warm.last_reason
    assert (o.status, o.fail_to_pass) == (t.status, t.fail_to_pass) == ("no_break", [])


def test_a_hang_in_the_warm_runner_costs_its_budget_and_the_server_serves_on(cov_env, cov_setup, client):
    base, cov, files = cov_setup
    vc = ValidateConfig(per_test_constant=2.0)
    hang = _cand(files, "    y = x * x\n", "    y = x * x\n    while y:\n        pass\n", "hang", cov)
    after = _cand(files, "return 3 * x", "return 3 * x + 1", "triple", cov)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, cov_env.test_cmd, cov_env.log_parser, cov, vc)
        assert warm.ensure()
        pid = warm._pid
        t0 = time.monotonic()
        (o,) = _unit(sb, cov_env, base, cov, [hang], vc, InferenceAudit(vc), warm)
        took = time.monotonic() - t0
        (o2,) = _unit(sb, cov_env, base, cov, [after], vc, InferenceAudit(vc), warm)
        left = sb.exec("ps -eo pid,args").output
    assert o.status == "timeout" and o.warm and not o.backstop
    assert took < 10  # the test's ~2 s budget, not the run's cap
    assert o2.warm and o2.fail_to_pass == ["tests/test_cov.py::test_triple"] and warm._pid == pid
    assert left.count("swelego_warm") == 1  # the server; the hung child is gone


def test_a_test_id_that_changes_between_runs_never_reads_as_broken(cov_env, cov_setup, client):
    """test_stamp's node id carries the time of collection: the map's id is stale in any later
    run. The warm runner finds the test by the id the log parser reports; a fresh run, which
    pytest would refuse for the stale id (every selected test then missing, i.e. "broken"),
    falls back to the full suite. Either way the lists are a fresh full run's."""
    base, cov, files = cov_setup
    vc = ValidateConfig(audit_min=0)
    it = _cand(files, "return x + 1", "return x + 2", "inc", cov)
    assert any("test_stamp" in t for t in it.covering)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, cov_env.test_cmd, cov_env.log_parser, cov, vc)
        (served,) = _unit(sb, cov_env, base, cov, [it], vc, InferenceAudit(vc), warm)
        (fresh,) = _unit(sb, cov_env, base, cov, [it], vc, InferenceAudit(vc))
        (t,) = _truth(sb, cov_env, base, [it]).values()
    assert served.warm and served.validation in ("inferred", "audited")  # covering run (+ audit) served warm
    assert not fresh.warm and fresh.validation == "full"  # the stale id sent it to the full suite
    for o in (served, fresh):
        assert (o.status, o.fail_to_pass, o.pass_to_pass) == (t.status, t.fail_to_pass, t.pass_to_pass)
    assert len(t.fail_to_pass) == 9 and any("test_stamp" in x for x in t.fail_to_pass)


def test_many_slower_tests_are_cut_at_the_full_suite_budget(cov_env, cov_setup, client):
    """No test passes its own budget (~3 s), yet together the eight slower tests would take the
    whole run past the full suite's budget: the warm run is cut at that deadline (less the clean
    time of the tests it leaves out), as the fresh full-suite run is at its own."""
    base, cov, files = cov_setup
    vc = ValidateConfig()
    slow = _cand(files, "return x + 1", "return __import__('time').sleep(1.9) or x + 1", "slow", cov)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, cov_env.test_cmd, cov_env.log_parser, cov, vc)
        assert warm.ensure()
        t0 = time.monotonic()
        (o,) = _unit(sb, cov_env, base, cov, [slow], vc, InferenceAudit(vc), warm)
        took = time.monotonic() - t0
        (t,) = _truth(sb, cov_env, base, [slow]).values()
    assert slow.blocker is None and o.warm and o.status == "timeout" and not o.backstop
    assert t.status == "timeout"  # the full suite, fresh, passes its budget too
    assert took < 8 * 1.9  # cut before the eight slow tests were through


def test_a_candidate_that_kills_the_warm_server_gets_a_fresh_run_and_the_next_one_a_new_server(
        cov_env, cov_setup, client):
    """Adversary: candidate code that finds the warm server (its parent) and kills it, and plants
    a forged result for the next request. The candidate is validated in a fresh process instead,
    the next candidate by a new server, and neither verdict is the forged one."""
    base, cov, files = cov_setup
    vc = ValidateConfig(audit_min=0)
    attack = ("    import os\n"
              "    parent = os.getppid()\n"
              "    if b'swelego_warm' in open(f'/proc/{parent}/cmdline', 'rb').read():\n"
              "        for n in range(1, 50):\n"
              "            with open(f'/tmp/swelego-warm/r{n}.res.json', 'w') as f:\n"
              "                f.write('{\"status\": \"done\", \"exit\": 0, \"seconds\": 0}')\n"
              "        os.kill(parent, 9)\n"
              "    return x * SCALE + 1\n")
    kill = _cand(files, "    return x * SCALE\n", attack, "kill", cov)
    after = _cand(files, "return 3 * x", "return 3 * x + 1", "triple", cov)
    with DockerSandbox(cov_env.image, client=client, limits=SandboxLimits(exec_timeout=300)) as sb:
        warm = warm_runner(sb, cov_env.test_cmd, cov_env.log_parser, cov, vc)
        assert warm.ensure()
        first_pid = warm._pid
        (o,) = _unit(sb, cov_env, base, cov, [kill], vc, InferenceAudit(vc), warm)
        reason = warm.last_reason
        (o2,) = _unit(sb, cov_env, base, cov, [after], vc, InferenceAudit(vc), warm)
        truth = _truth(sb, cov_env, base, [kill, after])
    assert kill.blocker is None and not o.warm and "no answer" in reason
    assert (o.status, o.fail_to_pass) == (truth["kill"].status, truth["kill"].fail_to_pass) == (
        "valid", ["tests/test_cov.py::test_double"])
    assert o2.warm and warm._pid != first_pid
    assert (o2.status, o2.fail_to_pass) == (truth["triple"].status, truth["triple"].fail_to_pass)
