"""Validation machinery on the real engine: baselines, timeouts, and the worker carrying on."""

from __future__ import annotations

import textwrap
import time

import pytest
from conftest import TEST_NS, git

from data_gen.synth.candidates import Candidate
from data_gen.synth.modifiers import unified_diff
from data_gen.synth.pipeline import ENV_EXTRA_DEPS, SynthConfig, _validate
from data_gen.validate import (
    CoverageMap,
    InferenceAudit,
    Item,
    ValidateConfig,
    changed_lines,
    collect_budget,
    coverage_map,
    inference_blocker,
    per_test_budget,
    plan_batches,
    stable_baseline,
    validate_patch,
    validate_unit,
)
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
        """,
    "covcalc/__main__.py": """\
        from covcalc import cli_value

        print(cli_value())
        """,
    "tests/test_cov.py": """\
        import subprocess
        import sys

        from covcalc import TABLE, add, double, parse, square


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
        """,
}
ALL_COV_TESTS = 7


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


def _unit(sb, env, base, cov, items, vc, audit):
    """Validate `items` as the pipeline does: batched by plan_batches, outcomes in order."""
    files = {"covcalc/__init__.py": sb.read_file("/testbed/covcalc/__init__.py").decode()}
    for it in items:
        it.blocker = inference_blocker(it.patch, files, cov, base.passing)
    outs = {}
    for unit in plan_batches(items, base, vc.batch_size):
        for it, o in zip(unit, validate_unit(sb, unit, base, test_cmd=env.test_cmd, log_parser=env.log_parser,
                                             timeout=120, audit=audit, cov=cov, cfg=vc), strict=True):
            outs[it.cid] = o
    return [outs[it.cid] for it in items]


def test_the_probe_sees_processes_fixtures_import_time_and_durations(cov_setup):
    base, cov, _ = cov_setup
    assert cov.probed and cov.pytest_timeout
    assert cov.spawners == ["tests/test_cov.py::test_cli"]
    assert set(cov.durations) == set(base.passing)
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
    assert o.status == "timeout" and not o.backstop  # pytest-timeout cut it, not the sandbox
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
    assert second["inference_wrong"] and second["status"] == "kept" and second["validation"] == "full"
    row = TaskInstance.from_row(second["row"])
    assert row.FAIL_TO_PASS == ["tests/test_cov.py::test_parse_again", "tests/test_cov.py::test_parse_first"]
    assert row.metadata["validation"] == "full"
    assert not audit.enabled and "PASS_TO_PASS test(s) fail without the fix" in audit.disagreements[0]["reason"]
    for r in recs:
        client.images.remove(r["row"]["image"], force=True)
