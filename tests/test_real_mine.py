"""Mining real git histories, the candidate filters, environment inference and the repair loop
(its LLM over a loopback OpenAI-protocol server). No Docker here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
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
    assert median.problem_statement.startswith("Fix median of even-length lists (#1)")
    assert "median() is wrong for lists of even length" in median.problem_statement  # the local issue #1
    assert "Signed-off-by" not in median.problem_statement and median.issues == [1]
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
    s = mine_git([str(repo)], tmp_path / "m", rev_range="HEAD~1..HEAD")
    (cand,) = load_candidates(tmp_path / "m")
    assert cand.ref == git(repo, "rev-parse", "HEAD").strip() and cand.metadata["merge"] is True
    assert cand.base_commit == git(repo, "rev-parse", "HEAD^1").strip()  # the first parent
    assert "tests/test_empty.py" in cand.test_patch and "if xs else 0.0" in cand.patch
    assert sum(s["repos"]["merged"].values()) == 1  # the branch's "wip" commit is not examined on its own
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
    tries = []

    def attempt(spec: EnvSpec) -> str:
        tries.append(spec.extra_deps)
        if "six" not in spec.extra_deps:
            raise EnvFailure("tests", "1 test module(s) fail to collect: tests/test_x.py",
                             "E   ModuleNotFoundError: No module named 'six'")
        return "env-ok"

    openai_server.script("I would try installing six.", '{"extra_deps": ["six"]}')
    llm = LLMClient(LLMConfig(base_url=openai_server.base_url, model="m", max_retries=0))
    result, spec, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=3, context="top-level files: x")
    assert result == "env-ok" and spec.extra_deps == ("six",) and tries == [(), ("six",)]
    assert [(a.number, a.ok, a.stage, a.source) for a in attempts] == [
        (1, False, "tests", "inferred"), (2, False, "repair", "llm"), (3, True, "ok", "llm")]
    assert attempts[1].reply == "I would try installing six." and "no JSON object" in attempts[1].error
    prompt = openai_server.requests[0]["messages"][0]["content"]
    assert "No module named 'six'" in prompt and '"python": "3.11"' in prompt and "top-level files: x" in prompt
    # bounded: two attempts, then it stops even though the model has more to say
    openai_server.script('{"extra_deps": ["nothing-helps"]}', '{"extra_deps": ["six"]}')
    tries.clear()
    result, _, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=2)
    assert result is None and len(attempts) == 2 and tries == [(), ("nothing-helps",)]
    # a spec that repaired another task is tried before the model is asked
    n = len(openai_server.requests)
    result, _, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=3, known=[EnvSpec(extra_deps=("six",))])
    assert result == "env-ok" and attempts[-1].source == "known" and len(openai_server.requests) == n
    # without a model there is nothing to repair with
    result, _, attempts = repair_loop(EnvSpec(), attempt, llm=None, max_attempts=3)
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
