"""A small git repository with a realistic history — fixes with tests, a feature, docs and
test-only commits — and a demo that mines its fixes and validates them into real tasks.

`python -m data_gen.real.demo OUT [--namespace NS]` writes OUT/minicalc (the repository),
OUT/issues (the issue texts its fix commits reference), OUT/mined and OUT/tasks."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "minicalc"
version = "0.3.0"
requires-python = ">=3.9"
classifiers = ["Programming Language :: Python :: 3.11"]
"""

STATS_V1 = """\
def mean(xs):
    return sum(xs) / len(xs)


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2]


def clamp(x, lo, hi):
    return max(lo, min(x, hi))
"""

TESTS_V1 = """\
import pytest

from minicalc.stats import clamp, mean, median


def test_mean():
    assert mean([1, 2, 3]) == 2


@pytest.mark.parametrize("xs,want", [([3, 1, 2], 2), ([5], 5)])
def test_median_odd(xs, want):
    assert median(xs) == want


def test_clamp_inside():
    assert clamp(5, 0, 10) == 5


def test_clamp_outside():
    assert clamp(-3, 0, 10) == 0
    assert clamp(30, 0, 10) == 10
"""

STATS_V2 = STATS_V1.replace(
    "    s = sorted(xs)\n    return s[len(s) // 2]\n",
    "    s = sorted(xs)\n    n = len(s)\n    if n % 2:\n        return s[n // 2]\n"
    "    return (s[n // 2 - 1] + s[n // 2]) / 2\n")
TESTS_V2 = TESTS_V1 + """

@pytest.mark.parametrize("xs,want", [([4, 1, 3, 2], 2.5), ([1, 2], 1.5)])
def test_median_even(xs, want):
    assert median(xs) == want
"""
STATS_V3 = STATS_V2.replace(
    "def clamp(x, lo, hi):\n",
    "def clamp(x, lo, hi):\n    if lo > hi:\n        raise ValueError(f\"lo {lo} > hi {hi}\")\n")
TESTS_V3 = TESTS_V2 + """

def test_clamp_rejects_inverted_bounds():
    with pytest.raises(ValueError):
        clamp(5, 10, 0)
"""
TESTS_V4 = TESTS_V3 + """

def test_mean_single():
    assert mean([4]) == 4
"""

# (message, {path: new text}); two of these are fixes a miner should find (commits 3 and 5).
HISTORY: list[tuple[str, dict[str, str]]] = [
    ("Initial import of minicalc", {
        "pyproject.toml": PYPROJECT, "minicalc/__init__.py": '"""Small numeric helpers."""\n',
        "minicalc/stats.py": STATS_V1, "tests/test_stats.py": TESTS_V1,
        "README.md": "# minicalc\n\nSmall numeric helpers.\n"}),
    ("Describe the API in the README", {
        "README.md": "# minicalc\n\nSmall numeric helpers: `mean`, `median`, `clamp`.\n"}),
    ("Fix median of even-length lists (#1)\n\nThe median of an even number of values is the mean of the two "
     "middle values.\n\nSigned-off-by: Dev <dev@example.com>\n",
     {"minicalc/stats.py": STATS_V2, "tests/test_stats.py": TESTS_V2}),
    ("Add word_count helper", {
        "minicalc/text.py": "def word_count(text):\n    return len(text.split())\n",
        "tests/test_text.py": "from minicalc.text import word_count\n\n\ndef test_word_count():\n"
                              "    assert word_count('a b  c') == 3\n"}),
    ("Reject inverted bounds in clamp, closes #2", {"minicalc/stats.py": STATS_V3, "tests/test_stats.py": TESTS_V3}),
    ("Test mean of a single value", {"tests/test_stats.py": TESTS_V4}),
    ("Fix typo in README", {"README.md": "# minicalc\n\nSmall numeric helpers: `mean`, `median` and `clamp`.\n"}),
]

ISSUES = {
    1: {"title": "median() is wrong for lists of even length",
        "body": "`median([1, 2])` returns 2, but the median of 1 and 2 is 1.5."},
    2: {"title": "clamp() silently accepts lo > hi",
        "body": "`clamp(5, 10, 0)` returns 10 instead of complaining that the bounds are inverted."},
}


def make_demo_repo(root: str | Path) -> Path:
    """Create the demo repository at `root` (which must not exist); returns its path."""
    root = Path(root)
    root.mkdir(parents=True)
    base = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "Dev",
            "GIT_COMMITTER_EMAIL": "dev@example.com", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}

    def git(*args: str, when: int = 0) -> None:
        env = {**base, "GIT_AUTHOR_DATE": f"2024-01-{when + 1:02d}T12:00:00+0000",
               "GIT_COMMITTER_DATE": f"2024-01-{when + 1:02d}T12:00:00+0000"}
        subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=root, env=env, check=True,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    for i, (message, files) in enumerate(HISTORY):
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A")
        git("commit", "-q", "-m", message, when=i)
    return root


def write_issues(dest: str | Path) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for n, issue in ISSUES.items():
        (dest / f"{n}.json").write_text(json.dumps(issue))
    return dest


def run_demo(out: str | Path, *, namespace: str = "swelego", log=print) -> dict:
    """Mine the demo repository's fixes and validate them; returns the validation summary."""
    from data_gen.real.mine_git import mine_git
    from data_gen.real.validate import validate

    out = Path(out)
    repo = out / "minicalc"
    if not repo.exists():
        make_demo_repo(repo)
    issues = write_issues(out / "issues")
    mined = mine_git([str(repo)], out / "mined", issues=str(issues), log=log)
    log(f"mined {mined['candidates']} candidate(s) from {repo}: {json.dumps(mined['repos'])}")
    summary = validate(out / "mined", out / "tasks", namespace=namespace, log=log)
    log(f"validated: {json.dumps(summary['funnel'])}; {summary['kept_rows']} task(s) in {out / 'tasks'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output directory")
    ap.add_argument("--namespace", default="swelego", help="image name prefix")
    args = ap.parse_args(argv)
    summary = run_demo(args.out, namespace=args.namespace)
    return 0 if summary["kept_rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
