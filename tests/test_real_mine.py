"""Mining real git histories, the candidate filters, environment inference and the repair loop
(its LLM over a loopback OpenAI-protocol server). No Docker here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import openai_server as fake_openai
import pytest

from data_gen.real.demo import make_demo_repo, write_issues
from data_gen.real.envinfer import EnvSpec, infer_env
from data_gen.real.filters import FilterConfig, load_candidates, rejection_reasons, split_diff
from data_gen.real.mine_git import mine_git
from data_gen.real.repair import EnvFailure, parse_spec, repair_loop
from swelego.errors import SwelegoError
from swelego.llm import LLMClient, LLMConfig

openai_server = fake_openai.openai_server
SWELEGO = str(Path(sys.executable).with_name("swelego"))
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/tmp"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def subjects(repo: Path) -> dict[str, str]:
    """commit sha -> subject line."""
    lines = git(repo, "log", "--format=%H %s").splitlines()
    return {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in lines}


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory) -> Path:
    return make_demo_repo(tmp_path_factory.mktemp("real") / "minicalc")


def test_mine_git_finds_exactly_the_fix_commits(demo_repo, tmp_path):
    issues = write_issues(tmp_path / "issues")
    summary = mine_git([str(demo_repo)], tmp_path / "out", issues=str(issues))
    by_subject = {v: k for k, v in subjects(demo_repo).items()}
    cands = {c.ref: c for c in load_candidates(tmp_path / "out")}
    assert set(cands) == {by_subject["Fix median of even-length lists (#1)"],
                          by_subject["Reject inverted bounds in clamp, closes #2"]}
    median = cands[by_subject["Fix median of even-length lists (#1)"]]
    assert median.instance_id == f"minicalc-{median.ref[:8]}" and median.repo == "minicalc"
    assert median.base_commit == git(demo_repo, "rev-parse", f"{median.ref}~1").strip()
    assert "minicalc/stats.py" in median.patch and "tests/" not in median.patch
    assert "def test_median_even" in median.test_patch and "minicalc/" not in median.test_patch
    # the statement is the local issue #1; the message describes the fix and is metadata only
    assert median.problem_statement == ("median() is wrong for lists of even length\n"
                                        "`median([1, 2])` returns 2, but the median of 1 and 2 is 1.5.\n")
    assert median.statement_origin == "issue" and median.issues == [1]
    assert median.metadata["commit_message"].startswith("Fix median of even-length lists (#1)\n\nThe median")
    assert "Signed-off-by" not in median.metadata["commit_message"]
    # the README typo "fix" touches no test; the feature and test-only commits are no fixes
    assert summary["repos"]["minicalc"] == {"candidate": 2, "filtered": 1, "contaminated": 0, "no_issue": 0,
                                            "not_a_fix": 4, "error": 0}
    assert summary["reasons"] == {"no tests": 1}
    lines = (tmp_path / "out" / "mined.jsonl").read_text()
    again = mine_git([str(demo_repo)], tmp_path / "out", issues=str(issues))
    assert (tmp_path / "out" / "mined.jsonl").read_text() == lines and again["candidates"] == 2


def test_rev_range_merge_commits_and_urls(demo_repo, tmp_path, monkeypatch):
    s = mine_git([str(demo_repo)], tmp_path / "range", rev_range="HEAD~3..HEAD")
    assert sum(s["repos"]["minicalc"].values()) == 3 and s["candidates"] == 1
    repo = tmp_path / "merged"
    shutil.copytree(demo_repo, repo)
    git(repo, "checkout", "-q", "-b", "topic", "HEAD~1")
    (repo / "minicalc" / "stats.py").write_text((repo / "minicalc" / "stats.py").read_text().replace(
        "return sum(xs) / len(xs)", "return sum(xs) / len(xs) if xs else 0.0"))
    (repo / "tests" / "test_empty.py").write_text("from minicalc.stats import mean\n\n\ndef test_empty():\n"
                                                  "    assert mean([]) == 0.0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "wip")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "topic", "-m", "Merge pull request #3: mean() crashes on empty lists")
    # by default the merge is skipped and the branch's commit is examined on its own ("wip": no fix)
    s = mine_git([str(repo)], tmp_path / "d", rev_range="HEAD~1..HEAD")
    assert s["candidates"] == 0 and s["repos"]["merged"]["not_a_fix"] == 1 and s["merges_skipped"] == {"merged": 1}
    s = mine_git([str(repo)], tmp_path / "m", rev_range="HEAD~1..HEAD", merges=True)
    (cand,) = load_candidates(tmp_path / "m")
    assert cand.ref == git(repo, "rev-parse", "HEAD").strip() and cand.metadata["merge"] is True
    assert cand.base_commit == git(repo, "rev-parse", "HEAD^1").strip()  # the first parent
    assert "tests/test_empty.py" in cand.test_patch and "if xs else 0.0" in cand.patch
    assert sum(s["repos"]["merged"].values()) == 1  # the branch's "wip" commit is not examined on its own
    assert cand.problem_statement == "" and "mean() crashes" in cand.metadata["commit_message"]
    monkeypatch.setenv("SWELEGO_CACHE", str(tmp_path / "cache"))
    url = f"file://{demo_repo}"
    s = mine_git([url], tmp_path / "url")
    cands = load_candidates(tmp_path / "url")
    assert s["candidates"] == 2 and {c.source for c in cands} == {url} and cands[0].repo == "minicalc"


def test_bad_sources_are_reported_and_the_rest_continue(demo_repo, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    s = mine_git([str(tmp_path / "nope"), str(plain), str(demo_repo)], tmp_path / "out")
    assert "no such local path" in s["errors"][str(tmp_path / "nope")]
    assert "not a git repository" in s["errors"][str(plain)]
    assert s["candidates"] == 2
    s = mine_git([str(demo_repo)], tmp_path / "bad", rev_range="nope..HEAD")
    assert s["errors"][str(demo_repo)].startswith("bad revision range 'nope..HEAD'")


def test_verified_repository_names_are_skipped_unless_allowed(demo_repo, tmp_path):
    flask = tmp_path / "flask"
    shutil.copytree(demo_repo, flask)
    s = mine_git([str(flask)], tmp_path / "a")
    assert "pallets/flask" in s["skipped"][str(flask)] and s["candidates"] == 0
    assert mine_git([str(flask)], tmp_path / "b", allow_contaminated=True)["candidates"] == 2


def test_cli_mine_git(demo_repo, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([SWELEGO, "data", "mine-git", str(demo_repo), str(tmp_path / "missing"), "--out", str(out),
                        "--max-files", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "missing" in r.stderr and "0 candidate(s)" in r.stdout and "file count 2" in r.stdout


def test_split_and_filters():
    code = "diff --git a/pkg/a.py b/pkg/a.py\n--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -1 +1 @@\n-x\n+y\n"
    test = "diff --git a/pkg/tests/helpers.py b/pkg/tests/helpers.py\n--- a/pkg/tests/helpers.py\n+++ b/pkg/tests/helpers.py\n@@ -1 +1 @@\n-x\n+y\n"
    binary = "diff --git a/logo.png b/logo.png\nindex 1..2 100644\nBinary files a/logo.png and b/logo.png differ\n"
    s = split_diff(code + test + binary)
    assert s.patch == code + binary and s.test_patch == test
    assert s.files == ["pkg/a.py", "pkg/tests/helpers.py", "logo.png"] and s.binary == ["logo.png"]
    assert rejection_reasons(s, "a long enough statement", FilterConfig()) == ["binary: binary diff of logo.png"]
    assert rejection_reasons(s, "short", FilterConfig(allow_binary=True, max_files=2)) == [
        "file count: touches 3 files (allowed 1-2)", "short statement: fewer than 10 characters"]
    only_tests = split_diff(test)
    assert rejection_reasons(only_tests, "x" * 20, FilterConfig()) == ["no code: touches only test files"]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


def test_infer_env_reads_python_plugins_and_test_deps(tmp_path):
    old = _tree(tmp_path / "old", {
        "setup.py": "from setuptools import setup\nsetup(name='old', python_requires='>=3.7',\n"
                    "      classifiers=['Programming Language :: Python :: 3.8',\n"
                    "                   'Programming Language :: Python :: 3.9'])\n",
        "tox.ini": """\
            [tox]
            envlist = py37,py38,py39
            [testenv]
            deps =
                -rrequirements.txt
                freezegun>=1.0
                black
            [pytest]
            addopts = --cov=old -n 2 --timeout=30
            """,
        "requirements-dev.txt": "mypy\nresponses==0.25.0\n",
    })
    spec = infer_env(old)
    assert spec.python == "3.9" and spec.base == "bullseye"
    assert spec.extra_deps == ("pytest-cov", "pytest-xdist", "pytest-timeout", "freezegun>=1.0", "responses==0.25.0")
    new = _tree(tmp_path / "new", {
        "pyproject.toml": """\
            [project]
            name = "new"
            requires-python = ">=3.12"
            [tool.pytest.ini_options]
            asyncio_mode = "auto"
            """,
        ".github/workflows/ci.yml": """\
            jobs:
              test:
                strategy:
                  matrix:
                    python-version: ["3.12", "3.13"]
            """,
    })
    spec = infer_env(new)
    assert spec.python == "3.13" and spec.extra_deps == ("pytest-asyncio",)
    assert "ci: 3.12, 3.13" in spec.evidence["python"]
    assert infer_env(_tree(tmp_path / "bare", {"a.py": ""})).python == "3.11"


def test_parse_spec_checks_the_models_answer():
    cur = EnvSpec(extra_deps=("a",))
    got = parse_spec('Sure:\n```json\n{"extra_deps": ["a", "six>=1.16"], "setup": []}\n```', cur)
    assert got.extra_deps == ("a", "six>=1.16") and got.python == cur.python and got.test_cmd == cur.test_cmd
    for reply, why in (("no json here", "no JSON object"), ('{"python": "3.10"}', "not available"),
                       ('{"extra_deps": ["not a req!!"]}', "not a pip requirement"),
                       ('{"setup": "make"}', "list of strings"), ('{"log_parser": "nope"}', "not a swebench parser")):
        with pytest.raises(SwelegoError, match=why):
            parse_spec(reply, cur)


def test_repair_loop_records_every_attempt_and_is_bounded(openai_server, tmp_path):
    # the model's path (rules=False: the log-reading rules, tried first, are tested in test_envs.py)
    tries = []

    def attempt(spec: EnvSpec) -> str:
        tries.append(spec.extra_deps)
        if "six" not in spec.extra_deps:
            raise EnvFailure("tests", "1 test module(s) fail to collect: tests/test_x.py",
                             "E   ModuleNotFoundError: No module named 'six'")
        return "env-ok"

    openai_server.script("I would try installing six.", '{"extra_deps": ["six"]}')
    llm = LLMClient(LLMConfig(base_url=openai_server.base_url, model="m", max_retries=0))
    result, spec, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=3, context="top-level files: x", rules=False)
    assert result == "env-ok" and spec.extra_deps == ("six",) and tries == [(), ("six",)]
    assert [(a.number, a.ok, a.stage, a.source) for a in attempts] == [
        (1, False, "tests", "inferred"), (2, False, "repair", "llm"), (3, True, "ok", "llm")]
    assert attempts[1].reply == "I would try installing six." and "no JSON object" in attempts[1].error
    prompt = openai_server.requests[0]["messages"][0]["content"]
    assert "No module named 'six'" in prompt and '"python": "3.11"' in prompt and "top-level files: x" in prompt
    # bounded: two attempts, then it stops even though the model has more to say
    openai_server.script('{"extra_deps": ["nothing-helps"]}', '{"extra_deps": ["six"]}')
    tries.clear()
    result, _, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=2, rules=False)
    assert result is None and len(attempts) == 2 and tries == [(), ("nothing-helps",)]
    # a spec that repaired another task is tried before the model is asked
    n = len(openai_server.requests)
    result, _, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=3, known=[EnvSpec(extra_deps=("six",))], rules=False)
    assert result == "env-ok" and attempts[-1].source == "known" and len(openai_server.requests) == n
    # without a model there is nothing to repair with
    result, _, attempts = repair_loop(EnvSpec(), attempt, llm=None, max_attempts=3, rules=False)
    assert result is None and len(attempts) == 1


def test_load_candidates_accepts_store_lines_and_rejects_junk(tmp_path, demo_repo):
    mine_git([str(demo_repo)], tmp_path / "out")
    from_store = load_candidates(tmp_path / "out" / "mined.jsonl")
    assert sorted(c.instance_id for c in from_store) == sorted(
        c.instance_id for c in load_candidates(tmp_path / "out"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"hello": 1}) + "\n")
    with pytest.raises(ValueError, match="not a candidate record"):
        load_candidates(bad)


# -- statements of mined commits: never the commit message, leak-checked like synthetic ones --------
EMPTY_FIX = "Fix #3: return 0.0 for the mean of an empty list instead of dividing by zero"


@pytest.fixture(scope="module")
def merged_repo(demo_repo, tmp_path_factory) -> tuple[Path, str, str]:
    """The demo history plus a pull request merged the way GitHub merges them: a branch commit
    "Fix #3: …" and a merge commit "Merge pull request #100 from …" that repeats it."""
    repo = tmp_path_factory.mktemp("merges") / "minicalc"
    shutil.copytree(demo_repo, repo)
    git(repo, "checkout", "-q", "-b", "dev/empty-mean")
    stats = repo / "minicalc" / "stats.py"
    stats.write_text(stats.read_text().replace("    return sum(xs) / len(xs)\n",
                                               "    if not xs:\n        return 0.0\n    return sum(xs) / len(xs)\n"))
    (repo / "tests" / "test_empty.py").write_text(
        "from minicalc.stats import mean\n\n\ndef test_mean_of_nothing():\n    assert mean([]) == 0.0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", EMPTY_FIX)
    fix = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "dev/empty-mean", "-m", f"Merge pull request #100 from dev/empty-mean\n\n{EMPTY_FIX}")
    return repo, fix, git(repo, "rev-parse", "HEAD").strip()


def test_merge_commits_are_skipped_and_messages_never_become_statements(merged_repo, tmp_path):
    repo, fix, merge = merged_repo
    r = subprocess.run([SWELEGO, "data", "mine-git", str(repo), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 merge commit(s) not examined (--merges" in r.stdout
    cands = {c.ref: c for c in load_candidates(tmp_path / "out")}
    assert merge not in cands and fix in cands and len(cands) == 3  # the two demo fixes and the branch commit
    assert not any(c.metadata["merge"] for c in cands.values())
    messages = {sha: git(repo, "log", "-1", "--format=%B", sha).strip() for sha in cands}
    for sha, c in cands.items():
        assert messages[sha].startswith(c.metadata["commit_message"].strip())  # trailers dropped
        subject = messages[sha].splitlines()[0]
        assert subject not in c.problem_statement and "Fix" not in c.problem_statement
    empty = cands[fix]
    assert empty.problem_statement == "" and empty.statement_origin == "tests" and empty.hints_text == ""
    assert empty.patch.count("return 0.0") == 1 and "test_mean_of_nothing" in empty.test_patch
    # --merges: the merge commit is the candidate (against its first parent), its branch is not walked
    r = subprocess.run([SWELEGO, "data", "mine-git", str(repo), "--out", str(tmp_path / "merges"), "--merges",
                        "--rev-range", "HEAD~1..HEAD"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (cand,) = load_candidates(tmp_path / "merges")
    assert cand.ref == merge and cand.metadata["merge"] is True and cand.problem_statement == ""
    assert cand.metadata["commit_message"].startswith("Merge pull request #100 from dev/empty-mean")


def _failing_run(repo: Path, c) -> tuple[str, str]:
    """(the code change that reverts the fix, pytest's log of the unfixed tree with the test patch)
    — what validation has in hand when it writes the statement, produced here with the host's pytest."""
    tree = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
    try:
        subprocess.run(f"git -C {repo} archive {c.base_commit} | tar -x -C {tree}", shell=True, check=True)
        subprocess.run(["git", "apply", "-"], cwd=tree, input=c.test_patch, text=True, check=True)
        run = subprocess.run([sys.executable, "-m", "pytest", "-rfEsxXp", "-p", "no:cacheprovider", "tests"],
                             cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    finally:
        shutil.rmtree(tree)
    bug = git(repo, "diff", "--src-prefix=a/", "--dst-prefix=b/", c.ref, c.base_commit, "--", "minicalc")
    return bug, run.stdout


def test_commit_statement_is_the_llms_report_from_the_failing_tests_and_leak_free(
        merged_repo, tmp_path, openai_server):
    from data_gen.issue_text import leak_reasons
    from data_gen.real.validate import commit_statement

    repo, fix, _ = merged_repo
    mine_git([str(repo)], tmp_path / "out")
    c = next(c for c in load_candidates(tmp_path / "out") if c.ref == fix)
    bug, log = _failing_run(repo, c)
    f2p = ["tests/test_empty.py::test_mean_of_nothing"]
    assert "ZeroDivisionError" in log and "FAILED " + f2p[0] in log
    llm = LLMClient(LLMConfig(base_url=openai_server.base_url, model="writer", max_retries=0))

    def clean(text: str) -> bool:
        return not leak_reasons(text, fix_patch=c.patch, failing_tests=f2p, test_patch=c.test_patch)

    report = "mean() crashes on an empty list\n\n`mean([])` raises ZeroDivisionError; I expected 0.0.\n"
    openai_server.script(report)
    statement, origin = commit_statement(c, bug_patch=bug, failing_tests=f2p, test_log=log, llm=llm)
    assert (statement, origin) == (report, "llm") and clean(statement)
    prompt = openai_server.requests[-1]["messages"][0]["content"]
    assert "ZeroDivisionError" in prompt and "if not xs" in prompt  # the failing output and the diff
    assert EMPTY_FIX not in prompt and "test_mean_of_nothing" not in prompt
    # an answer that quotes the fix or a hidden test is rejected: the template of the failing assertions
    for leaky in ("Add `if not xs:` and then `return 0.0`:\n\n    if not xs:\n        return 0.0\n",
                  "Running `assert mean([]) == 0.0` fails with ZeroDivisionError.\n"):
        openai_server.script(leaky)
        statement, origin = commit_statement(c, bug_patch=bug, failing_tests=f2p, test_log=log, llm=llm)
        assert origin == "template" and clean(statement) and "ZeroDivisionError" in statement, statement
        assert "`mean` in `minicalc/stats.py`" in statement and EMPTY_FIX not in statement
    # no LLM: the template; an issue text is used when clean, and skipped when it names the test
    assert commit_statement(c, bug_patch=bug, failing_tests=f2p, test_log=log)[1] == "template"
    issue = replace(c, problem_statement="mean([]) crashes\n", statement_origin="issue")
    assert commit_statement(issue, bug_patch=bug, failing_tests=f2p, test_log=log) == ("mean([]) crashes\n", "issue")
    named = replace(c, problem_statement="test_mean_of_nothing fails on main\n", statement_origin="issue")
    assert commit_statement(named, bug_patch=bug, failing_tests=f2p, test_log=log)[1] == "template"
    # a candidate mined before the message was kept apart carries it as its statement: never used
    legacy = replace(c, problem_statement=EMPTY_FIX + "\n", statement_origin="commit")
    statement, origin = commit_statement(legacy, bug_patch=bug, failing_tests=f2p, test_log=log)
    assert origin == "template" and EMPTY_FIX not in statement
