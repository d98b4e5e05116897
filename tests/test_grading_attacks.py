"""Attacks on "resolved": patches (and agents) that try to pass the hidden tests without a fix.

Every family of swelego.adversarial runs on a real-style row (hidden tests in a test patch)
and a synthetic row (the repository's own tests, no test patch), graded by our grader and by
the unmodified official swebench harness: none may resolve, while the gold patch still does.
The same attacks against the usual swebench eval-script shape show that they are real."""

from __future__ import annotations

import json

import pytest
from conftest import TEST_NS

from swelego.adversarial import FAMILIES, attack_patch, naive_eval_script, run_attacks
from swelego.harness import (
    is_test_infra,
    make_eval_script,
    patch_files,
    run_eval,
    unsafe_patch_paths,
    validate_task,
)
from swelego.sandbox import DockerSandbox
from swelego.schema import TaskInstance

BUG = """\
diff --git a/toycalc/__init__.py b/toycalc/__init__.py
--- a/toycalc/__init__.py
+++ b/toycalc/__init__.py
@@ -1,2 +1,2 @@
 def mean(xs):
-    return sum(xs) / len(xs)
+    return sum(xs) / (len(xs) + 1)
"""
FIX = BUG.replace("-    return sum(xs) / len(xs)\n+    return sum(xs) / (len(xs) + 1)",
                  "-    return sum(xs) / (len(xs) + 1)\n+    return sum(xs) / len(xs)")


@pytest.fixture(scope="module")
def synthetic_task(toy_env, client):
    """A synthetic row as `data synth` makes them: the bug committed as a fresh single-commit
    image, the repository's own tests as the hidden tests, no test patch."""
    from data_gen.sanitize import make_instance_image

    image, commit = make_instance_image(toy_env.image, BUG, "toy__synth-mean", namespace=TEST_NS, client=client)
    task = TaskInstance(instance_id="toy__synth-mean", repo=toy_env.repo, base_commit=commit, patch=FIX, image=image,
                        eval_script=make_eval_script(base_commit=commit, test_cmd=toy_env.test_cmd),
                        test_cmd=toy_env.test_cmd, source="synthetic")
    with DockerSandbox(image, client=client) as sb:
        task = validate_task(sb, task)
    assert task.FAIL_TO_PASS == ["tests/test_calc.py::test_mean"]
    return task


def test_test_infrastructure_is_recognized_by_path():
    infra = ["conftest.py", "tests/unit/conftest.py", "tests/data/x.json", "pkg/test/helpers.py", "test_a.py",
             "pkg/a_test.py", "pytest.ini", "sub/tox.ini", "setup.cfg", "pyproject.toml", "src/sitecustomize.py",
             "x.pth", "pytest.py", "_pytest/terminal.py", "pkg/__pycache__/m.cpython-311.pyc",
             "src/pkg.egg-info/entry_points.txt", "pkg-1.0.dist-info/METADATA"]
    code = ["pkg/core.py", "src/pkg/testing_utils.py", "docs/tests.rst", "pkg/contest.py", "setup.py", "README.md"]
    assert [p for p in infra if not is_test_infra(p)] == []
    assert [p for p in code if is_test_infra(p)] == []


def test_plain_unified_diffs_and_paths_into_git_are_seen():
    plain = "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1,2 @@\n [core]\n+\tfsmonitor = sh x\n"
    assert patch_files(plain) == [".git/config"] and unsafe_patch_paths(plain) == [".git/config"]
    outside = "--- a/../etc/x\n+++ b/../etc/x\n@@ -1 +1 @@\n-a\n+b\n"
    assert unsafe_patch_paths(outside) == ["../etc/x"]
    new_file = "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1 @@\n+x\n"
    assert patch_files(new_file) == ["n.py"] and unsafe_patch_paths(new_file) == []


def test_no_attack_family_buys_resolved_from_either_grader(toy_task, synthetic_task, client, tmp_path):
    rep = run_attacks([toy_task, synthetic_task], client=client, workdir=tmp_path)
    assert rep.failures == []
    assert all(rep.built[f] == 2 for f in FAMILIES), rep.built
    assert rep.ours["gold"] == 2 and rep.official["gold"] == 2, rep.resolved_by
    assert {f: n for f, n in rep.ours.items() if f != "gold" and n} == {}, rep.resolved_by
    assert {f: n for f, n in rep.official.items() if f != "gold" and n} == {}, rep.resolved_by
    assert rep.broken() == []


def test_the_attacks_fool_the_usual_eval_script_shape(toy_task, synthetic_task, client, tmp_path):
    """Not strawmen: against swebench's usual shape (check out the test patch's files, apply
    it, run the tests) the attacks buy "resolved", also from the official harness."""
    families = ("conftest_root", "conftest_nested", "plugin_via_config", "collection_hook",
                "fake_passed_atexit", "fake_passed_exit", "edit_f2p_bodies", "noop_wrap_f2p", "git_config_hook")
    rep = run_attacks([toy_task, synthetic_task], families=families, client=client, workdir=tmp_path,
                      eval_script=naive_eval_script, ours=False)
    assert rep.official["gold"] == 2
    # every family fools the official harness on both rows with the naive script
    assert {f: rep.official[f] for f in families} == {f: 2 for f in families}, rep.resolved_by


def test_agent_tampering_outside_the_repository_does_not_grade_resolved(toy_task, client):
    """An agent is root in its sandbox: it can plant a plugin in site-packages that no patch
    carries. The episode is graded from its patch in a fresh container, so it stays unresolved."""
    from swelego.agent import run_episode

    plant = ("site=$(python3 -c 'import site; print(site.getsitepackages()[0])') && "
             "printf 'import pytest\\n@pytest.hookimpl(hookwrapper=True)\\ndef pytest_runtest_makereport(item, call):\\n"
             "    o = yield\\n    r = o.get_result()\\n    if r.failed:\\n        r.outcome = \"passed\"\\n' "
             "> \"$site/_agent_evil.py\" && echo \"import os; os.environ['PYTEST_ADDOPTS'] = '-p _agent_evil'\" "
             "> \"$site/zz_agent_evil.pth\" && cd /testbed && git apply - <<'EOF'\n" + toy_task.test_patch
             + "EOF\npytest -q tests/test_even.py 2>&1 | tail -1; rm tests/test_even.py")

    class Planter:
        def __init__(self):
            self.calls = [plant]

        def next_message(self, messages, tools):
            if self.calls:
                cmd = self.calls.pop()
                return {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "execute_bash", "arguments": json.dumps({"command": cmd})}}]}
            return {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c2", "type": "function", "function": {"name": "finish", "arguments": "{}"}}]}

    with DockerSandbox(toy_task.image, client=client) as sb:
        traj = run_episode(toy_task, sb, Planter())
        planted = next(m["content"] for m in traj.messages if m["role"] == "tool")
        # the plant works inside the agent's own sandbox: the hidden tests "pass" there
        assert "3 passed" in planted, planted
        assert traj.patch.strip() == "" and not traj.resolved


def test_residual_hole_code_under_test_rewrites_reports_in_process(toy_task, client):
    """Documented residual hole (docs/grading.md): code under test runs inside the pytest
    process, so it can find pytest's plugin manager (here through `gc`) and register a hook
    that rewrites reports. No eval script can stop that short of running the tests in a
    process the code under test cannot reach. This test records the hole; if it starts
    failing, the hole was closed: update the docs and turn this into a must-not-resolve."""
    hook = ("import gc as _g\n"
            "import _pytest.config as _c\n"
            "import pytest as _p\n\n\n"
            "class _Force:\n"
            "    @_p.hookimpl(hookwrapper=True)\n"
            "    def pytest_runtest_makereport(self, item, call):\n"
            "        o = yield\n"
            "        r = o.get_result()\n"
            "        if r.failed:\n"
            "            r.outcome = 'passed'\n"
            "            r.longrepr = None\n\n\n"
            "for _o in _g.get_objects():\n"
            "    if isinstance(_o, _c.Config) and not _o.pluginmanager.is_registered(_Force):\n"
            "        _o.pluginmanager.register(_Force(), 'swelego-residual')\n"
            "        break\n")
    with DockerSandbox(toy_task.image, client=client) as sb:
        sb.write_file("/tmp/hook.py", hook)
        r = sb.exec("cat /tmp/hook.py >> toycalc/__init__.py && git diff", timeout=60)
        patch = r.output
        assert "swelego-residual" in patch
        g = run_eval(sb, toy_task, patch)
    assert g.resolved  # the hole, recorded


def test_an_attack_patch_is_built_from_the_row_alone(synthetic_task, client):
    """The builder needs only the row: the conftest attack adds a root conftest.py, nothing else."""
    with DockerSandbox(synthetic_task.image, client=client) as sb:
        patch = attack_patch(sb, synthetic_task, "conftest_root")
    assert patch_files(patch) == ["conftest.py"] and "pytest_runtest_makereport" in patch
