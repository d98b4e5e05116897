"""A small labelled trajectory corpus from real episodes, for verifier tests, benchmarks and demos.

`toyshop` is a small git repository with one bug in each of several modules; each module's
tests are in the repository and fail until its bug is fixed. Every bug becomes a validated
swebench row (FAIL_TO_PASS / PASS_TO_PASS found by running the tests in Docker). The oracle
policy then solves each task several times through the agent's tools, with noise: with
probability `noise` its edit is corrupted (a changed constant or operator) or skipped, so
the episodes mix resolved and unresolved outcomes. Labels are the episodes' own grades (the
row's eval script, graded with swebench's functions), never assumed. Trajectories are
`policy=oracle`: a pipeline exercise, not model output.
"""

from __future__ import annotations

import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from swelego.schema import TaskInstance


@dataclass(frozen=True)
class Bug:
    module: str  # toyshop/<module>.py and tests/test_<module>.py
    problem: str  # the issue text
    buggy: str
    fixed: str
    tests: str


BUGS = (
    Bug("stats", "median() returns the upper middle element for lists of even length instead of the mean of "
        "the two middle elements.",
        """\
        def median(xs):
            s = sorted(xs)
            return s[len(s) // 2]
        """,
        """\
        def median(xs):
            s = sorted(xs)
            n = len(s)
            if n % 2:
                return s[n // 2]
            return (s[n // 2 - 1] + s[n // 2]) / 2
        """,
        """\
        from toyshop.stats import median


        def test_median_odd():
            assert median([3, 1, 2]) == 2


        def test_median_even():
            assert median([4, 1, 3, 2]) == 2.5
        """),
    Bug("temperature", "to_fahrenheit(0) gives 23 instead of 32; the offset in the conversion is wrong.",
        """\
        def to_fahrenheit(celsius):
            return celsius * 9 / 5 + 23
        """,
        """\
        def to_fahrenheit(celsius):
            return celsius * 9 / 5 + 32
        """,
        """\
        from toyshop.temperature import to_fahrenheit


        def test_freezing():
            assert to_fahrenheit(0) == 32


        def test_boiling():
            assert to_fahrenheit(100) == 212
        """),
    Bug("calendar", "is_leap() says 1900 is a leap year; century years are leap years only when divisible by 400.",
        """\
        def is_leap(year):
            return year % 4 == 0
        """,
        """\
        def is_leap(year):
            return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        """,
        """\
        from toyshop.calendar import is_leap


        def test_ordinary_years():
            assert is_leap(2024) and not is_leap(2023)


        def test_centuries():
            assert is_leap(2000) and not is_leap(1900) and not is_leap(2100)
        """),
    Bug("percent", "percent(1, 4) returns 2.5 instead of 25.0.",
        """\
        def percent(part, whole):
            return part / whole * 10
        """,
        """\
        def percent(part, whole):
            return part / whole * 100
        """,
        """\
        from toyshop.percent import percent


        def test_quarter():
            assert percent(1, 4) == 25.0


        def test_whole():
            assert percent(3, 3) == 100.0
        """),
    Bug("chunks", "chunks() drops the last chunk of a list whose length is a multiple of the chunk size.",
        """\
        def chunks(xs, n):
            return [xs[i:i + n] for i in range(0, len(xs) - n, n)]
        """,
        """\
        def chunks(xs, n):
            return [xs[i:i + n] for i in range(0, len(xs), n)]
        """,
        """\
        from toyshop.chunks import chunks


        def test_exact_multiple():
            assert chunks([1, 2, 3, 4], 2) == [[1, 2], [3, 4]]


        def test_remainder():
            assert chunks([1, 2, 3], 2) == [[1, 2], [3]]
        """),
    Bug("clamp", "clamp(5, 0, 3) returns 0; values above the upper bound should become the upper bound.",
        """\
        def clamp(x, lo, hi):
            return max(lo, min(x, lo))
        """,
        """\
        def clamp(x, lo, hi):
            return max(lo, min(x, hi))
        """,
        """\
        from toyshop.clamp import clamp


        def test_inside():
            assert clamp(2, 0, 3) == 2


        def test_above():
            assert clamp(5, 0, 3) == 3
        """),
    Bug("discount", "price_after(100, 10) should apply a 10% discount and return 90.0, but returns 110.0.",
        """\
        def price_after(price, percent_off):
            return price * (1 + percent_off / 100)
        """,
        """\
        def price_after(price, percent_off):
            return price * (1 - percent_off / 100)
        """,
        """\
        from toyshop.discount import price_after


        def test_ten_percent():
            assert price_after(100, 10) == 90.0


        def test_no_discount():
            assert price_after(80, 0) == 80.0
        """),
    Bug("window", "last_n(xs, 2) returns only one element; it should return the last n elements.",
        """\
        def last_n(xs, n):
            return xs[len(xs) - n + 1:]
        """,
        """\
        def last_n(xs, n):
            return xs[len(xs) - n:]
        """,
        """\
        from toyshop.window import last_n


        def test_last_two():
            assert last_n([1, 2, 3, 4], 2) == [3, 4]


        def test_last_one():
            assert last_n([7, 8], 1) == [8]
        """),
)

_GIT_ENV = {"GIT_AUTHOR_NAME": "toy", "GIT_AUTHOR_EMAIL": "toy@localhost", "GIT_COMMITTER_NAME": "toy",
            "GIT_COMMITTER_EMAIL": "toy@localhost", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z", "PATH": "/usr/bin:/bin:/usr/local/bin"}
PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "toyshop"
version = "0.1.0"
"""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, env=_GIT_ENV, check=True, capture_output=True,
                          text=True).stdout


def make_toyshop(root: Path, bugs: tuple[Bug, ...] = BUGS) -> tuple[Path, dict[str, str]]:
    """Write and commit the repository; returns it and each module's gold patch (a git diff)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "toyshop").mkdir(exist_ok=True)
    (root / "tests").mkdir(exist_ok=True)
    (root / "toyshop" / "__init__.py").write_text('"""A few small helpers, each with a bug."""\n')
    for b in bugs:
        (root / "toyshop" / f"{b.module}.py").write_text(textwrap.dedent(b.buggy))
        (root / "tests" / f"test_{b.module}.py").write_text(textwrap.dedent(b.tests))
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "toyshop helpers")
    patches = {}
    for b in bugs:
        path = root / "toyshop" / f"{b.module}.py"
        path.write_text(textwrap.dedent(b.fixed))
        patches[b.module] = _git(root, "diff", "--", f"toyshop/{b.module}.py")
        _git(root, "checkout", "-q", "--", f"toyshop/{b.module}.py")
    return root, patches


def toyshop_tasks(*, namespace: str = "swelego-verifier", client=None, workdir: Path | None = None,
                  bugs: tuple[Bug, ...] = BUGS) -> list[TaskInstance]:
    """One validated row per bug, on one environment image built from the repository."""
    from swelego.harness import new_task, validate_task
    from swelego.sandbox import DockerSandbox
    from swelego.sandbox.images import build_env_image

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        repo, patches = make_toyshop(Path(tmp) / "toyshop", bugs)
        env = build_env_image(str(repo), namespace=namespace, client=client, log=lambda m: None)
    tasks = []
    with DockerSandbox(env.image, client=client) as sb:
        for b in bugs:
            task = new_task(env, instance_id=f"toyshop__toyshop-{b.module}", patch=patches[b.module],
                            problem_statement=b.problem, source="synthetic", strategy="hand-written")
            tasks.append(validate_task(sb, task))
    return tasks
