"""`mine-git` / `mine-prs` → `validate` on real repositories and the real engine, graded by the
official swebench harness; environment repair against a loopback OpenAI-protocol server; bad
inputs reported per item while the rest continue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import github_server as gh
import openai_server as fake_openai
import pytest
from conftest import TEST_NS

from data_gen.issue_text import leak_reasons
from data_gen.real.demo import make_demo_repo, write_issues
from data_gen.real.filters import load_candidates
from data_gen.real.mine_git import mine_git
from data_gen.real.mine_prs import mine_prs
from data_gen.real.validate import validate
from swelego.harness import evaluate_official
from swelego.schema import load_dataset
from swelego.store import ResultStore

openai_server = fake_openai.openai_server
SWELEGO = str(Path(sys.executable).with_name("swelego"))
FAST = ["--baseline-runs", "2", "--confirm-runs", "1"]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/tmp"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def records(out: Path) -> dict[str, dict]:
    recs = {}
    for f in sorted((out / "records").glob("*.jsonl")):
        with ResultStore(f) as store:
            recs.update(dict(store))
    return recs


def env_records(out: Path) -> list[dict]:
    recs = []
    for f in sorted((out / "envs").glob("*.jsonl")):
        with ResultStore(f) as store:
            recs += [rec for _k, rec in store]
    return recs


# -- mine-git + mine-prs → validate → official grading --------------------------------------
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, base_image):
    """The demo repository mined twice — from its history and through a GitHub replay whose
    second PR's diff does not apply — plus a candidate whose repository does not exist, all
    validated in one run."""
    root = tmp_path_factory.mktemp("real-pipeline")
    repo = make_demo_repo(root / "minicalc")
    r = subprocess.run([SWELEGO, "data", "mine-git", str(repo), "--out", str(root / "mined-git"), "--issues",
                        str(write_issues(root / "issues"))], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    git_cands = load_candidates(root / "mined-git")
    median = next(c for c in git_cands if "median" in c.problem_statement)

    server = gh.GitHubServer()
    try:
        rj = gh.repo_json("octo/minicalc", f"file://{repo}")
        server.json("/repos/octo/minicalc", rj)
        broken = median.patch.replace("    return s[len(s) // 2]", "    return s[len(s) // 3]")
        server.paged("/repos/octo/minicalc/pulls", [
            gh.pr_json(rj, 12, title="Median rounding", body="Fixes #1", base_sha=median.base_commit,
                       created_at="2024-02-02T00:00:00Z"),
            gh.pr_json(rj, 11, title="Fix median", body="Fixes #1", base_sha=median.base_commit,
                       created_at="2024-02-01T00:00:00Z")], per_page=30)
        server.json("/repos/octo/minicalc/issues/1", gh.issue_json(rj, 1, title="median() is wrong for even lists",
                                                                   body="median([1, 2]) returns 2, not 1.5."))
        server.diff("/repos/octo/minicalc/pulls/11", median.patch + median.test_patch)
        server.diff("/repos/octo/minicalc/pulls/12", broken + median.test_patch)
        s = mine_prs(["octo/minicalc"], root / "mined-prs", api_url=server.url, token="", cache=str(root / "gh-cache"))
        assert s["candidates"] == 2
    finally:
        server.close()
    ghost = {**median.to_json(), "instance_id": "ghost__repo-1", "repo": "ghost/repo", "source": str(root / "gone")}
    combined = root / "candidates.jsonl"
    combined.write_text("".join(line + "\n" for f in ("mined-git", "mined-prs")
                                for line in (root / f / "candidates.jsonl").read_text().splitlines())
                        + json.dumps(ghost) + "\n")
    out = root / "tasks"
    env = {**os.environ, "SWELEGO_CACHE": str(root / "cache")}  # where the file:// source is cloned
    r = subprocess.run([SWELEGO, "data", "validate", str(combined), "--out", str(out), "--namespace", TEST_NS, *FAST],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return {"root": root, "repo": repo, "out": out, "result": r, "git": git_cands, "median": median, "env": env}


def test_validate_keeps_real_fixes_and_reports_bad_items(pipeline):
    out, recs = pipeline["out"], records(pipeline["out"])
    status = {k: v["status"] for k, v in recs.items()}
    git_ids = sorted(c.instance_id for c in pipeline["git"])
    assert status == {**dict.fromkeys(git_ids, "kept"), "octo__minicalc-11": "kept",
                      "octo__minicalc-12": "apply_failed", "ghost__repo-1": "source_error"}
    assert "patch does not apply" in recs["octo__minicalc-12"]["reason"]
    assert "no such local path" in recs["ghost__repo-1"]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["funnel"] == {"candidates": 5, "env_ok": 4, "applies": 3, "fail_to_pass": 3, "kept": 3}
    assert summary["envs"]["tried"] == 2 and summary["envs"]["success_rate"] == 1.0
    assert "octo__minicalc-12" in pipeline["result"].stdout and "3 task(s)" in pipeline["result"].stdout
    rows = {t.instance_id: t for t in load_dataset(out / "dataset")}
    m = rows[pipeline["median"].instance_id]
    assert m.FAIL_TO_PASS == ["tests/test_stats.py::test_median_even[xs0-2.5]",
                              "tests/test_stats.py::test_median_even[xs1-1.5]"]
    assert sorted(m.PASS_TO_PASS) == ["tests/test_stats.py::test_clamp_inside", "tests/test_stats.py::test_clamp_outside",
                                      "tests/test_stats.py::test_mean", "tests/test_stats.py::test_median_odd[xs0-2]",
                                      "tests/test_stats.py::test_median_odd[xs1-5]"]
    assert m.source == "real" and m.strategy == "commit" and m.metadata["upstream_commit"] == pipeline["median"].base_commit
    # the local issue #1 is the statement; the commit message (it describes the fix) is metadata only
    assert m.problem_statement.startswith("median() is wrong for lists of even length")
    assert m.metadata["statement"] == "issue" and "Fix median" not in m.problem_statement
    assert m.metadata["commit_message"].startswith("Fix median of even-length lists (#1)")
    pr = rows["octo__minicalc-11"]
    assert pr.FAIL_TO_PASS == m.FAIL_TO_PASS and pr.strategy == "pr"
    assert pr.problem_statement == "median() is wrong for even lists\nmedian([1, 2]) returns 2, not 1.5.\n"
    # tasks of one dependency spec share one environment image, whichever source they came from
    assert len({t.metadata["env_image"] for t in rows.values()}) == 1
    clamp = rows[next(i for i in git_ids if i != m.instance_id)]
    assert clamp.FAIL_TO_PASS == ["tests/test_stats.py::test_clamp_rejects_inverted_bounds"]


def test_official_harness_grades_the_mined_tasks(pipeline, tmp_path):
    tasks = [t for t in load_dataset(pipeline["out"] / "dataset") if t.strategy == "commit"]
    assert len(tasks) == 2
    gold = evaluate_official(tasks, [{"instance_id": t.instance_id, "model_patch": t.patch} for t in tasks],
                             run_id="real-gold", workdir=tmp_path, max_workers=2)
    assert all(gold.resolved(t.instance_id) for t in tasks), gold.summary
    empty = evaluate_official(tasks, [{"instance_id": t.instance_id, "model_patch": ""} for t in tasks],
                              run_id="real-empty", workdir=tmp_path, max_workers=2)
    assert not any(empty.resolved(t.instance_id) for t in tasks)


def test_task_images_hold_nothing_after_base_commit(pipeline):
    r = subprocess.run([SWELEGO, "data", "audit", str(pipeline["out"] / "dataset")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "3/3 rows clean" in r.stdout, r.stdout + r.stderr
    task = next(t for t in load_dataset(pipeline["out"] / "dataset") if t.instance_id == pipeline["median"].instance_id)
    fix_sha = pipeline["median"].ref
    probe = (f"git rev-list --all | wc -l; git cat-file -e {fix_sha} && echo FIX || echo nofix; "
             f"git cat-file -e {pipeline['median'].base_commit} && echo BASE || echo nobase; git reflog | wc -l; "
             "git rev-parse HEAD")
    got = subprocess.run(["docker", "run", "--rm", "--entrypoint", "", task.image, "bash", "-c", probe],
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert got == ["1", "nofix", "nobase", "0", task.base_commit]


def test_rerun_resumes_without_revalidating(pipeline):
    out = pipeline["out"]
    before = {f.name: f.read_text() for f in (out / "records").glob("*.jsonl")}
    r = subprocess.run([SWELEGO, "data", "validate", str(pipeline["root"] / "candidates.jsonl"), "--out", str(out),
                        "--namespace", TEST_NS, *FAST], capture_output=True, text=True, timeout=300,
                       env=pipeline["env"])
    assert r.returncode == 0 and "3 task(s)" in r.stdout, r.stderr[-2000:]
    assert {f.name: f.read_text() for f in (out / "records").glob("*.jsonl")} == before


# -- environment repair and a build that never succeeds ------------------------------------
ISSUE = "km_to_miles returns wrong distances\n\nConverting 10 km gives 6.0 miles instead of about 6.214."
UNITCONV = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
                      '[project]\nname = "unitconv"\nversion = "1.0"\n',
    "unitconv/__init__.py": "def km_to_miles(km):\n    return km * 0.6\n\n\ndef fmt_km(km):\n    return f'{km}km'\n",
    "tests/test_conv.py": "from unitconv import km_to_miles\n\n\ndef test_zero():\n    assert km_to_miles(0) == 0\n",
}


@pytest.fixture(scope="module")
def repair_repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-repair")
    uc = root / "unitconv"
    uc.mkdir()
    git(uc, "init", "-q", "-b", "main")
    commit(uc, "Initial import", UNITCONV)
    commit(uc, "Fix km_to_miles factor (#1)", {
        "unitconv/__init__.py": UNITCONV["unitconv/__init__.py"].replace("0.6", "0.621371"),
        "tests/test_conv.py": UNITCONV["tests/test_conv.py"]
        + "\n\ndef test_ten():\n    assert round(km_to_miles(10), 3) == 6.214\n"})
    # Version 2: the fix's new test needs `six`, which the project never declares.
    commit(uc, "Release 2.0", {"pyproject.toml": UNITCONV["pyproject.toml"].replace('"1.0"', '"2.0"')})
    commit(uc, "Fix fmt_km spacing (#2)", {
        "unitconv/__init__.py": UNITCONV["unitconv/__init__.py"].replace("0.6", "0.621371").replace(
            "f'{km}km'", "f'{km} km'"),
        "tests/test_fmt.py": "import six\n\nfrom unitconv import fmt_km\n\n\ndef test_fmt():\n"
                             "    assert isinstance(fmt_km(1.5), six.text_type)\n    assert fmt_km(1.5) == '1.5 km'\n"})
    broken = root / "brokenpkg"
    broken.mkdir()
    git(broken, "init", "-q", "-b", "main")
    files = {**UNITCONV, "pyproject.toml": UNITCONV["pyproject.toml"].replace(
        'version = "1.0"', 'version = "1.0"\ndependencies = ["swelego-no-such-dist==9.9"]').replace("unitconv", "brokenpkg")}
    commit(broken, "Initial import", {k.replace("unitconv", "brokenpkg"): v.replace("unitconv", "brokenpkg")
                                      for k, v in files.items()})
    commit(broken, "Fix km_to_miles factor (#1)", {
        "brokenpkg/__init__.py": files["unitconv/__init__.py"].replace("0.6", "0.621371").replace("unitconv", "brokenpkg"),
        "tests/test_conv.py": files["tests/test_conv.py"].replace("unitconv", "brokenpkg")
        + "\n\ndef test_ten():\n    assert round(km_to_miles(10), 3) == 6.214\n"})
    return root, uc, broken


def test_repair_loop_fixes_an_undeclared_test_dependency_and_a_hopeless_build_is_reported(
        repair_repos, openai_server, tmp_path, base_image):
    root, uc, broken = repair_repos
    seen = {"six": 0}

    def responder(req: dict) -> str:
        prompt = req["messages"][0]["content"]
        if prompt.startswith("You are writing a GitHub issue"):
            return ISSUE
        if "swelego-no-such-dist" in prompt:
            return '{"python": "3.9"}'  # a plausible guess that cannot help: the dist does not exist
        if "No module named 'six'" in prompt:
            seen["six"] += 1
            return "Add six to the test dependencies." if seen["six"] == 1 else (
                'Here is the spec:\n```json\n{"extra_deps": ["six"], "setup": []}\n```')
        return "I cannot tell."

    openai_server.responder = responder
    s = mine_git([str(uc), str(broken)], tmp_path / "mined")
    assert s["candidates"] == 3
    summary = validate(tmp_path / "mined", tmp_path / "out", namespace=TEST_NS, baseline_runs=1, confirm_runs=1,
                       repair_attempts=3, llm_base_url=openai_server.base_url, llm_model="fixer")
    recs = records(tmp_path / "out")
    by_msg = {c.metadata["commit_message"].splitlines()[0] + "@" + c.repo: c.instance_id
              for c in load_candidates(tmp_path / "mined")}
    v1, v2 = by_msg["Fix km_to_miles factor (#1)@unitconv"], by_msg["Fix fmt_km spacing (#2)@unitconv"]
    bad = by_msg["Fix km_to_miles factor (#1)@brokenpkg"]
    assert recs[v1]["status"] == "kept" and "repair" not in recs[v1]
    assert recs[v2]["status"] == "kept", recs[v2]
    attempts = recs[v2]["repair"]
    # rules come first: the missing module's distribution is added without asking the LLM
    assert [(a["stage"], a["source"], a["ok"]) for a in attempts] == [("tests", "inferred", False), ("ok", "rule", True)]
    assert "tests/test_fmt.py" in attempts[0]["error"] and "No module named 'six'" in attempts[0]["log"]
    assert "six" in attempts[1]["spec"]["extra_deps"] and seen["six"] == 0
    assert recs[v2]["row"]["FAIL_TO_PASS"] == ["tests/test_fmt.py::test_fmt"]
    # no issue text: the problem statement is the LLM's, written from the diff and the failing output,
    # and it passes the leak check; the commit message stays in the metadata
    row1 = recs[v1]["row"]
    assert row1["problem_statement"] == ISSUE + "\n" and json.loads(row1["metadata"])["statement"] == "llm"
    assert not leak_reasons(row1["problem_statement"], fix_patch=row1["patch"], failing_tests=row1["FAIL_TO_PASS"],
                            test_patch=row1["test_patch"])
    assert json.loads(row1["metadata"])["commit_message"].startswith("Fix km_to_miles factor (#1)")
    asked = [r["messages"][0]["content"] for r in openai_server.requests
             if r["messages"][0]["content"].startswith("You are writing a GitHub issue")]
    assert any("0.621371" in q and "6.214" in q for q in asked)  # the diff and the failing assertion
    assert json.loads(recs[v2]["row"]["metadata"])["env_image"] != json.loads(recs[v1]["row"]["metadata"])["env_image"]
    assert recs[bad]["status"] == "env_failed" and "swelego-no-such-dist" in recs[bad]["reason"]
    (bad_env,) = [e for e in env_records(tmp_path / "out") if e["repo"] == "brokenpkg"]
    assert [(a["stage"], a["source"], a["spec"]["python"]) for a in bad_env["attempts"]] == [
        ("build", "inferred", "3.11"), ("build", "llm", "3.9"), ("repair", "llm", "3.9")]
    assert "already tried" in bad_env["attempts"][2]["error"]
    assert summary["envs"] == {"tried": 2, "built": 1, "built_after_repair": 0, "failed": 1, "success_rate": 0.5,
                               "task_repairs": 1, "task_repairs_ok": 1}
    assert summary["kept_rows"] == 2
