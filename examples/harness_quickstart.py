"""Quickstart for the core API: a buggy repository becomes a graded swebench row.

Builds the environment image of a small git repository whose median() is wrong for lists of
even length, turns the fix into a task row (FAIL_TO_PASS / PASS_TO_PASS found by running the
tests in a sandbox), and grades the gold and an empty patch with the official swebench
harness. Run: `.venv/bin/python examples/harness_quickstart.py` (needs a Docker engine).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

TOY_FILES = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "toycalc"
        version = "0.1.0"
        """,
    "toycalc/__init__.py": """\
        def mean(xs):
            return sum(xs) / len(xs)


        def median(xs):
            s = sorted(xs)
            return s[len(s) // 2]
        """,
    "tests/test_calc.py": """\
        import pytest
        from toycalc import mean, median


        def test_mean():
            assert mean([1, 2, 3]) == 2


        def test_median_odd():
            assert median([3, 1, 2]) == 2


        @pytest.mark.parametrize("xs", [[1], [5, 7, 9]])
        def test_median_single(xs):
            assert median(xs) == sorted(xs)[len(xs) // 2]
        """,
}

GOLD_PATCH = """\
diff --git a/toycalc/__init__.py b/toycalc/__init__.py
--- a/toycalc/__init__.py
+++ b/toycalc/__init__.py
@@ -4,4 +4,7 @@ def mean(xs):
 
 def median(xs):
     s = sorted(xs)
-    return s[len(s) // 2]
+    n = len(s)
+    if n % 2:
+        return s[n // 2]
+    return (s[n // 2 - 1] + s[n // 2]) / 2
"""

TEST_PATCH = """\
diff --git a/tests/test_even.py b/tests/test_even.py
new file mode 100644
--- /dev/null
+++ b/tests/test_even.py
@@ -0,0 +1,11 @@
+import pytest
+from toycalc import median
+
+
+def test_median_even():
+    assert median([4, 1, 3, 2]) == 2.5
+
+
+@pytest.mark.parametrize("xs,want", [([1, 2], 1.5), ([7], 7)])
+def test_median_param(xs, want):
+    assert median(xs) == want
"""



def make_toy_repo(root: Path) -> Path:
    """Write the toy package into `root` and commit it (one commit, branch main)."""
    for rel, text in TOY_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    env = {"GIT_AUTHOR_NAME": "toy", "GIT_AUTHOR_EMAIL": "toy@localhost", "GIT_COMMITTER_NAME": "toy",
           "GIT_COMMITTER_EMAIL": "toy@localhost", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "toycalc with a median bug"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


def main(namespace: str = "swelego") -> int:
    from swelego.harness import evaluate_official, new_task, validate_task
    from swelego.sandbox import DockerSandbox
    from swelego.sandbox.images import build_env_image

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_toy_repo(Path(tmp) / "toycalc")
        env = build_env_image(str(repo), namespace=namespace)
        print(f"environment image: {env.image} (base commit {env.base_commit[:12]})")
        task = new_task(env, instance_id="toy__toycalc-1", patch=GOLD_PATCH, test_patch=TEST_PATCH,
                        problem_statement="median() returns the upper middle element for even-length lists")
        with DockerSandbox(env.image) as sb:
            task = validate_task(sb, task)
        print(f"FAIL_TO_PASS: {task.FAIL_TO_PASS}")
        print(f"PASS_TO_PASS: {len(task.PASS_TO_PASS)} tests")
        for name, patch in (("gold", GOLD_PATCH), ("empty", "")):
            res = evaluate_official([task], [{"instance_id": task.instance_id, "model_patch": patch}],
                                    run_id=f"quickstart-{name}", workdir=Path(tmp) / "eval", model=name)
            print(f"official swebench harness, {name} patch: resolved={res.resolved(task.instance_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
