"""The GitHub client and `mine-prs` against a loopback server replaying the real API's shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import github_server as gh
import pytest

from data_gen.real.github import GitHubClient, GitHubError
from data_gen.real.mine_prs import closing_references, mine_prs

github_server = gh.github_server
SWELEGO = str(Path(sys.executable).with_name("swelego"))
REPO = "octo/widgets"
PULLS = f"/repos/{REPO}/pulls"

CODE_7 = """\
diff --git a/widgets/core.py b/widgets/core.py
index 3b18e51..a9c4f10 100644
--- a/widgets/core.py
+++ b/widgets/core.py
@@ -1,2 +1,2 @@
 def area(w, h):
-    return w + h
+    return w * h
"""
TEST_7 = """\
diff --git a/tests/test_core.py b/tests/test_core.py
index 1d2c3b4..5e6f7a8 100644
--- a/tests/test_core.py
+++ b/tests/test_core.py
@@ -3,0 +4,3 @@ from widgets.core import area
+
+def test_area():
+    assert area(2, 3) == 6
"""
DIFF_5 = """\
diff --git a/widgets/names.py b/widgets/names.py
index 0a1b2c3..4d5e6f7 100644
--- a/widgets/names.py
+++ b/widgets/names.py
@@ -1,2 +1,2 @@
 def title(s):
-    return s.upper()
+    return s.title()
diff --git a/widgets/tests/test_names.py b/widgets/tests/test_names.py
new file mode 100644
index 0000000..8899aab
--- /dev/null
+++ b/widgets/tests/test_names.py
@@ -0,0 +1,4 @@
+from widgets.names import title
+
+def test_title():
+    assert title("ab cd") == "Ab Cd"
"""
DIFF_4 = """\
diff --git a/README.md b/README.md
index 1111111..2222222 100644
--- a/README.md
+++ b/README.md
@@ -1 +1 @@
-# widgets
+# Widgets
"""


@pytest.fixture
def world(github_server):
    """octo/widgets: five closed PRs over three pages, issues, comments, GraphQL links."""
    s = github_server
    repo = gh.repo_json(REPO, "https://github.com/octo/widgets.git")
    s.json(f"/repos/{REPO}", repo)
    base = "b" * 40
    prs = [
        gh.pr_json(repo, 8, title="Handle #9 too", body="Fixes #9", base_sha=base, created_at="2024-03-05T10:00:00Z"),
        gh.pr_json(repo, 7, title="Correct area()", body="area() added instead of multiplying.\n\nFixes #3",
                   base_sha=base, created_at="2024-03-04T10:00:00Z"),
        gh.pr_json(repo, 6, title="Try something", body="closes #3", base_sha=base, created_at="2024-03-03T10:00:00Z",
                   merged=False),
        gh.pr_json(repo, 5, title="Title case names", body=None, base_sha="c" * 40, created_at="2024-03-02T10:00:00Z"),
        gh.pr_json(repo, 4, title="Capitalize README", body="Resolves #1", base_sha=base,
                   created_at="2024-03-01T10:00:00Z"),
    ]
    s.paged(PULLS, prs, per_page=2)
    s.json(f"/repos/{REPO}/issues/3", gh.issue_json(repo, 3, title="area() is wrong",
                                                    body="area(2, 3) gives 5, expected 6.", comments=2))
    s.paged(f"/repos/{REPO}/issues/3/comments", [
        gh.comment_json(1, "Looks like it adds instead of multiplying.", "2024-03-03T00:00:00Z"),
        gh.comment_json(2, "Fixed in #7, thanks!", "2024-03-06T00:00:00Z")], per_page=30)
    s.json(f"/repos/{REPO}/issues/2", gh.issue_json(repo, 2, title="title() shouts",
                                                    body="title('ab cd') returns 'AB CD' instead of 'Ab Cd'."))
    s.json(f"/repos/{REPO}/issues/1", gh.issue_json(repo, 1, title="README heading", body="Capitalize it please."))
    s.json(f"/repos/{REPO}/issues/9", {**gh.issue_json(repo, 9, title="a PR", body="x"),
                                       "pull_request": {"url": f"https://api.github.com/repos/{REPO}/pulls/9"}})
    for n, diff in ((7, CODE_7 + TEST_7), (5, DIFF_5), (4, DIFF_4)):
        s.diff(f"{PULLS}/{n}", diff)

    def linked(body: dict) -> dict:
        n = body["variables"]["number"]
        nodes = [{"number": 2, "repository": {"nameWithOwner": REPO}}] if n == 5 else []
        return {"data": {"repository": {"pullRequest": {"closingIssuesReferences": {"nodes": nodes}}}}}

    s.graphql(linked)
    return s


def mined(out: Path) -> dict[str, dict]:
    return {json.loads(line)["key"]: json.loads(line)["value"] for line in (out / "mined.jsonl").read_text().splitlines()}


def test_closing_references_are_same_repository_keywords():
    text = ("Fixes #12, closes octo/widgets#13 and resolves https://github.com/octo/widgets/issues/14.\n"
            "fixes other/repo#15; see #16; Fixed: #12")
    assert closing_references(text, REPO) == [12, 13, 14]


def test_client_pages_through_links_waits_out_a_rate_limit_and_caches(world, tmp_path):
    world.rate_limit_once(PULLS)
    client = GitHubClient(world.url, token="secret", cache_dir=tmp_path)
    numbers = [pr["number"] for pr in client.paginate(f"repos/{REPO}/pulls", {"state": "closed"})]
    assert numbers == [8, 7, 6, 5, 4]
    assert len(client.stats.rate_limit_waits) == 1 and 1 <= client.stats.rate_limit_waits[0] <= 3
    assert world.count(PULLS) == 4  # one 403, then three pages
    assert {r["query"].get("page", "1") for r in world.requests} == {"1", "2", "3"}
    assert all(r["auth"] == "Bearer secret" for r in world.requests)
    again = GitHubClient(world.url, token="secret", cache_dir=tmp_path)
    assert [pr["number"] for pr in again.paginate(f"repos/{REPO}/pulls", {"state": "closed"})] == numbers
    assert world.count(PULLS) == 4 and again.stats.cache_hits == 3 and again.stats.requests == 0
    with pytest.raises(GitHubError) as e:
        again.get_json("repos/octo/nothing")
    assert e.value.status == 404 and "Not Found" in str(e.value)


def test_rate_limit_reset_beyond_max_wait_is_an_error(world, tmp_path):
    world.rate_limit_once(f"/repos/{REPO}")
    client = GitHubClient(world.url, cache_dir=None, max_wait=0.5)
    with pytest.raises(GitHubError, match="rate limit resets in"):
        client.get_json(f"repos/{REPO}")


def test_mine_prs_keeps_merged_fixes_of_issues_and_reports_a_missing_repo(world, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    summary = mine_prs(["octo/missing", REPO], out, api_url=world.url, token="t", cache=str(cache))
    assert "octo/missing" in summary["errors"] and "not found" in summary["errors"]["octo/missing"]
    records = mined(out)
    assert set(records) == {f"{REPO}#{n}" for n in (8, 7, 5, 4)}  # #6 was never merged
    assert records[f"{REPO}#8"]["status"] == "no_issue"  # #9 is a pull request, not an issue
    assert records[f"{REPO}#4"]["status"] == "filtered" and records[f"{REPO}#4"]["reasons"] == [
        "no tests: touches no test file"]
    cands = {json.loads(line)["instance_id"]: json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()}
    assert sorted(cands) == ["octo__widgets-5", "octo__widgets-7"]
    c7 = cands["octo__widgets-7"]
    assert c7["patch"] == CODE_7 and c7["test_patch"] == TEST_7
    assert c7["problem_statement"] == "area() is wrong\narea(2, 3) gives 5, expected 6.\n"
    assert c7["hints_text"] == "Looks like it adds instead of multiplying."  # the later comment is after the PR
    assert c7["base_commit"] == "b" * 40 and c7["source"] == "https://github.com/octo/widgets.git"
    assert c7["issues"] == [3] and c7["created_at"] == "2024-03-04T10:00:00Z"
    c5 = cands["octo__widgets-5"]  # no keyword in its text: found through GraphQL's linked issues
    assert c5["issues"] == [2] and c5["problem_statement"].startswith("title() shouts")
    assert "widgets/tests/test_names.py" in c5["test_patch"] and "widgets/names.py" in c5["patch"]
    assert summary["candidates"] == 2 and summary["repos"][REPO]["filtered"] == 1
    before = world.count()
    again = mine_prs([REPO], out, api_url=world.url, token="t", cache=str(cache))
    assert world.count() == before, "a rerun must be answered from the cache"
    assert again["github"]["requests"] == 0 and again["candidates"] == 2


def test_since_max_prs_and_no_token(world, tmp_path):
    s = mine_prs([REPO], tmp_path / "a", api_url=world.url, token="", cache=str(tmp_path / "c1"), since="2024-03-04")
    assert set(mined(tmp_path / "a")) == {f"{REPO}#8", f"{REPO}#7"} and s["candidates"] == 1
    mine_prs([REPO], tmp_path / "b", api_url=world.url, token="", cache=str(tmp_path / "c2"), max_prs=1)
    assert set(mined(tmp_path / "b")) == {f"{REPO}#8"}
    mine_prs([REPO], tmp_path / "c", api_url=world.url, token="", cache=str(tmp_path / "c3"))
    assert mined(tmp_path / "c")[f"{REPO}#5"]["status"] == "no_issue"  # GraphQL needs a token
    assert world.count("/graphql") == 0


def test_contamination_skips_verified_repos_and_matching_patches(world, tmp_path):
    s = mine_prs(["pallets/flask"], tmp_path / "a", api_url=world.url, cache=str(tmp_path / "c"))
    assert "SWE-bench Verified" in s["skipped"]["pallets/flask"] and world.count() == 0
    # A context-shifted copy of PR 7's code patch in a swebench dataset file still matches.
    shifted = CODE_7.replace("@@ -1,2 +1,2 @@", "@@ -10,2 +10,2 @@ class X:")
    dataset = tmp_path / "verified.json"
    dataset.write_text(json.dumps([{"instance_id": "octo__widgets-1", "repo": REPO, "patch": shifted,
                                    "test_patch": "", "base_commit": "x"}]))
    s = mine_prs([REPO], tmp_path / "b", api_url=world.url, token="t", cache=str(tmp_path / "c"),
                 swebench_datasets=(str(dataset),))
    rec = mined(tmp_path / "b")[f"{REPO}#7"]
    assert rec["status"] == "contaminated" and "octo__widgets-1" in rec["reasons"][0]
    s = mine_prs([REPO], tmp_path / "d", api_url=world.url, token="t", cache=str(tmp_path / "c"),
                 swebench_datasets=(str(dataset),), allow_contaminated=True)
    assert s["candidates"] == 2


def test_cli_mine_prs(world, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([SWELEGO, "data", "mine-prs", REPO, "octo/missing", "--out", str(out), "--api-url", world.url,
                        "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "GITHUB_TOKEN": "t"})
    assert r.returncode == 0, r.stderr
    assert "2 candidate(s)" in r.stdout and "octo/missing" in r.stderr and "not found" in r.stderr
    assert len((out / "candidates.jsonl").read_text().splitlines()) == 2
    r = subprocess.run([SWELEGO, "data", "mine-prs", "not-a-repo", "--out", str(out), "--api-url", world.url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "expected OWNER/REPO" in r.stderr
