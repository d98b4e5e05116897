"""Validation machinery on the real engine: baselines, timeouts, and the worker carrying on."""

from __future__ import annotations

from data_gen.synth.modifiers import unified_diff
from data_gen.validate import stable_baseline, validate_patch
from swelego.sandbox import DockerSandbox, SandboxLimits


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
