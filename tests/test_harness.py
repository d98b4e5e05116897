"""The harness on a hand-made buggy repo: F2P/P2P from real runs, our grading, and the
official swebench `run_evaluation` grading our rows unmodified."""

from __future__ import annotations

from conftest import GOLD_PATCH, TEST_PATCH

from swelego.harness import (
    classify_tests,
    evaluate_official,
    make_eval_script,
    parse_log,
    patch_files,
    run_eval,
    run_tests,
)
from swelego.sandbox import DockerSandbox

WRONG_PATCH = GOLD_PATCH.replace("/ 2\n", "// 2\n")  # floor division: 2 instead of 2.5, 1 instead of 1.5
EXPECTED_F2P = ["tests/test_even.py::test_median_even", "tests/test_even.py::test_median_param[xs0-1.5]"]


def test_parse_log_uses_swebench_parser():
    log = "PASSED tests/a.py::test_x\nFAILED tests/a.py::test_y - AssertionError\nSKIPPED [1] tests/a.py:3: nope\n"
    assert parse_log(log) == {"tests/a.py::test_x": "PASSED", "tests/a.py::test_y": "FAILED"}


def test_classify_tests_treats_missing_as_failing():
    before = {"a": "PASSED", "b": "FAILED", "c": "PASSED"}
    after = {"a": "PASSED", "b": "PASSED", "c": "FAILED", "d": "PASSED"}
    assert classify_tests(before, after) == (["b", "d"], ["a"])


def test_eval_script_has_swebench_shape():
    script = make_eval_script(base_commit="abc123", test_cmd="pytest -rA", test_patch=TEST_PATCH)
    assert patch_files(TEST_PATCH) == ["tests/test_even.py"]
    lines = script.splitlines()
    assert lines[:2] == ["#!/bin/bash", "set -uxo pipefail"]
    # No xtrace, one stream: the markers appear once, in order, whatever the harness interleaves.
    assert lines[2:4] == ["set +x", "exec 2>&1"]
    # the image's interactive environment (conda activation), what ~/.bashrc prints left out
    assert "bash -ic" in lines[4] and "export -p" in lines[4] and "SWELEGO_ENV_BEGIN}" in lines[4]
    start = lines.index("echo '>>>>> Start Test Output'")
    end = lines.index("echo '>>>>> End Test Output'")
    assert lines[start + 1].startswith("( pytest -rA ) 2>$swelego_err | tee ")
    # swebench records the exit status from the line before the end marker: the test command's.
    assert lines[end - 1] == "(exit $swelego_rc)"
    assert script.index("swelego_restore ||") < script.index("git apply --verbose -") < script.index(lines[start])
    assert "+def test_median_even():" in script


def test_validation_finds_fail_to_pass_and_pass_to_pass(toy_task):
    assert toy_task.FAIL_TO_PASS == EXPECTED_F2P
    assert set(toy_task.PASS_TO_PASS) == {
        "tests/test_calc.py::test_mean", "tests/test_calc.py::test_median_odd",
        "tests/test_calc.py::test_median_single[xs0]", "tests/test_calc.py::test_median_single[xs1]",
        "tests/test_even.py::test_median_param[xs1-7]",
    }


def test_our_grading(toy_task, toy_env, client):
    with DockerSandbox(toy_env.image, client=client) as sb:
        gold = run_eval(sb, toy_task, GOLD_PATCH)
        empty = run_eval(sb, toy_task, "")
        wrong = run_eval(sb, toy_task, WRONG_PATCH)
        garbage = run_eval(sb, toy_task, "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n")
    assert gold.resolved and gold.status == "RESOLVED_FULL"
    assert not empty.resolved and empty.status == "RESOLVED_NO"
    assert not wrong.resolved and wrong.report["FAIL_TO_PASS"]["failure"] == EXPECTED_F2P
    assert wrong.report["PASS_TO_PASS"]["failure"] == []
    assert not garbage.resolved and not garbage.patch_applied


def test_run_tests_counts_and_exit_code_cross_check(toy_env, client):
    with DockerSandbox(toy_env.image, client=client) as sb:
        run = run_tests(sb, toy_env.test_cmd)
        assert run.counts["passed"] == 4 and run.counts["failed"] == 0 and run.exit_code == 0 and run.consistent
        # A run that prints PASSED lines but exits non-zero is not trusted.
        fake = run_tests(sb, "echo 'PASSED tests/x.py::test_a'; exit 3")
        assert fake.status == {"tests/x.py::test_a": "PASSED"} and not fake.consistent


def test_official_swebench_grades_our_rows(toy_task, tmp_path):
    """swebench's own run_evaluation, unmodified, on our row and our locally built image."""
    tid = toy_task.instance_id
    gold = evaluate_official([toy_task], [{"instance_id": tid, "model_patch": GOLD_PATCH}], run_id="gold",
                             workdir=tmp_path)
    assert gold.resolved(tid)
    assert gold.reports[tid]["tests_status"]["FAIL_TO_PASS"]["success"] == EXPECTED_F2P

    wrong_task = toy_task.model_copy(update={"instance_id": "toy__toycalc-2"})
    preds = [{"instance_id": tid, "model_patch": ""}, {"instance_id": "toy__toycalc-2", "model_patch": WRONG_PATCH}]
    bad = evaluate_official([toy_task, wrong_task], preds, run_id="bad", workdir=tmp_path, max_workers=2)
    assert not bad.resolved(tid) and tid in bad.summary["empty_patch_ids"]
    assert not bad.resolved("toy__toycalc-2") and "toy__toycalc-2" in bad.summary["unresolved_ids"]
    assert bad.reports["toy__toycalc-2"]["tests_status"]["FAIL_TO_PASS"]["failure"] == EXPECTED_F2P
