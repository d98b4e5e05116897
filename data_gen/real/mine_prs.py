"""`swelego data mine-prs`: merged pull requests that resolve an issue, as task candidates.

Per repository: list closed PRs newest first (stopping at `since`), keep the merged ones whose
title or body closes an issue of the same repository (or, with a token, whose linked issues
GitHub reports), fetch the issue text as the problem statement and the PR's diff, split the
diff into code and tests, and apply the filters and the decontamination check."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from data_gen.real.decontam import Decontaminator
from data_gen.real.filters import Candidate, FilterConfig, rejection_reasons, split_diff
from data_gen.real.github import DIFF, GitHubClient, GitHubError
from data_gen.real.mining import candidate_record, mined_store, write_outputs
from swelego.errors import SwelegoError
from swelego.sandbox.images import cache_dir

_KEYWORD = r"(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)"
_CLOSES = re.compile(
    rf"\b{_KEYWORD}\s*:?\s+(?:(?P<repo>[\w.-]+/[\w.-]+)#|https?://[^\s/]+/(?P<urlrepo>[\w.-]+/[\w.-]+)/issues/|#)"
    r"(?P<num>\d+)\b", re.IGNORECASE)
_LINKED = """query($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) { pullRequest(number: $number) {
    closingIssuesReferences(first: 10) { nodes { number repository { nameWithOwner } } } } } }"""


def closing_references(text: str, repo: str) -> list[int]:
    """Issue numbers of `repo` that `text` closes with GitHub's keywords (fixes #1, closes o/r#2, ...)."""
    out = []
    for m in _CLOSES.finditer(text or ""):
        other = m.group("repo") or m.group("urlrepo")
        if other and other.lower() != repo.lower():
            continue
        n = int(m.group("num"))
        if n not in out:
            out.append(n)
    return out


@dataclass
class MinePRsConfig:
    """Options of `swelego data mine-prs`.

    out: output directory (mined.jsonl, candidates.jsonl, summary.json).
    api_url: GitHub REST root (GitHub Enterprise: https://HOST/api/v3; or a test server).
    token: API token; None reads $GITHUB_TOKEN.
    since: only PRs created on or after this date (YYYY-MM-DD or an ISO time).
    max_prs: merged PRs examined per repository (newest first); None for all.
    filters: which changes become candidates.
    linked_issues: also ask GraphQL for the issues a PR is linked to (needs a token).
    hints: collect issue comments written before the PR as `hints_text`.
    cache: directory of the response cache (default: the swelego cache); refresh ignores it.
    allow_contaminated / swebench_datasets: see decontam.Decontaminator.
    """

    out: str
    api_url: str = "https://api.github.com"
    token: str | None = None
    since: str | None = None
    max_prs: int | None = None
    filters: FilterConfig = field(default_factory=FilterConfig)
    linked_issues: bool = True
    hints: bool = True
    cache: str | None = None
    refresh: bool = False
    allow_contaminated: bool = False
    swebench_datasets: tuple[str, ...] = ()


def mine_repo_prs(client: GitHubClient, repo: str, cfg: MinePRsConfig, store, decon: Decontaminator,
                  progress: Callable[[str, int], None] | None = None) -> int:
    """Examine the merged PRs of one repository; returns how many were examined."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise SwelegoError(f"{repo!r}: expected OWNER/REPO")
    try:
        info = client.get_json(f"repos/{repo}")
    except GitHubError as e:
        if e.status == 404:
            raise SwelegoError(f"{repo}: repository not found at {client.api_url} (or no access)") from None
        raise
    repo = info.get("full_name", repo)
    examined = 0
    for pr in client.paginate(f"repos/{repo}/pulls", {"state": "closed", "sort": "created", "direction": "desc"}):
        if cfg.since and pr["created_at"] < cfg.since:
            break
        if not pr.get("merged_at"):
            continue
        if cfg.max_prs is not None and examined >= cfg.max_prs:
            break
        examined += 1
        key = f"{repo}#{pr['number']}"
        if not store.has(key):
            try:
                rec = _examine(client, repo, info, pr, cfg, decon)
            except SwelegoError as e:
                rec = {"status": "error", "reasons": [f"error: {str(e).splitlines()[0][:300]}"]}
            store.put(key, {"repo": repo, **rec})
        if progress:
            progress(repo, examined)
    return examined


def _examine(client: GitHubClient, repo: str, info: dict, pr: dict, cfg: MinePRsConfig, decon) -> dict:
    number = pr["number"]
    issues = closing_references(f"{pr.get('title') or ''}\n{pr.get('body') or ''}", repo)
    if not issues and cfg.linked_issues and client.token:
        issues = _linked_issues(client, repo, number)
    texts, hints = [], []
    for n in issues:
        try:
            issue = client.get_json(f"repos/{repo}/issues/{n}")
        except GitHubError as e:
            if e.status in (404, 410):  # deleted or transferred
                continue
            raise
        if "pull_request" in issue:  # "fixes #12" where #12 is another PR
            continue
        texts.append(f"{issue.get('title') or ''}\n{issue.get('body') or ''}".strip())
        if cfg.hints and issue.get("comments", 1):
            for c in client.paginate(f"repos/{repo}/issues/{n}/comments"):
                if c.get("created_at", "") < pr["created_at"] and (c.get("body") or "").strip():
                    hints.append(c["body"].strip())
    if not texts:
        return {"status": "no_issue", "reasons": []}
    diff = client.get_text(f"repos/{repo}/pulls/{number}", accept=DIFF)
    split = split_diff(diff)
    statement = "\n\n".join(texts) + "\n"
    reasons = rejection_reasons(split, statement, cfg.filters)
    if reasons:
        return {"status": "filtered", "reasons": reasons}
    if why := decon.patch_reason(split.patch, split.test_patch):
        return {"status": "contaminated", "reasons": [f"contaminated: {why}"]}
    owner, name = repo.split("/", 1)
    cand = Candidate(
        instance_id=f"{owner}__{name}-{number}", repo=repo,
        source=(pr.get("base", {}).get("repo") or {}).get("clone_url") or info["clone_url"],
        base_commit=pr["base"]["sha"], patch=split.patch, test_patch=split.test_patch,
        problem_statement=statement, origin="pr", ref=str(number), statement_origin="issue",
        hints_text="\n\n".join(hints), created_at=pr["created_at"], issues=issues,
        metadata={"url": pr.get("html_url", ""), "merged_at": pr.get("merged_at"), "title": pr.get("title", ""),
                  "files": split.files})
    return candidate_record(cand)


def _linked_issues(client: GitHubClient, repo: str, number: int) -> list[int]:
    owner, name = repo.split("/", 1)
    try:
        data = client.graphql(_LINKED, {"owner": owner, "name": name, "number": number})
    except GitHubError:
        return []  # GraphQL is a bonus; keyword references still work without it
    pull = ((data.get("repository") or {}).get("pullRequest") or {})
    nodes = (pull.get("closingIssuesReferences") or {}).get("nodes") or []
    return [n["number"] for n in nodes if (n.get("repository") or {}).get("nameWithOwner", repo).lower() == repo.lower()]


def mine_prs(repos: list[str], out: str | Path, *, log: Callable[[str], None] = lambda m: None,
             progress: Callable[[str, int], None] | None = None, **options) -> dict:
    """Mine candidates from the merged PRs of `repos` (OWNER/REPO each) into `out`.

    `options` are MinePRsConfig fields. Returns the summary (also written to out/summary.json).
    A repository that fails (not found, contaminated, API error) is reported in the summary's
    `errors` / `skipped` and the others continue."""
    cfg = MinePRsConfig(out=str(out), **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    client = GitHubClient(cfg.api_url, token=cfg.token, refresh=cfg.refresh, log=log,
                          cache_dir=Path(cfg.cache) if cfg.cache else cache_dir() / "github")
    decon = Decontaminator(cfg.swebench_datasets, allow=cfg.allow_contaminated)
    errors, skipped = {}, {}
    with mined_store(out) as store:
        for repo in repos:
            if why := decon.repo_reason(repo):
                skipped[repo] = why
                log(f"skipping {repo}: {why} (--allow-contaminated to keep it)")
                continue
            try:
                mine_repo_prs(client, repo, cfg, store, decon, progress)
            except SwelegoError as e:
                errors[repo] = str(e).splitlines()[0][:300]
                log(f"✗ {repo}: {errors[repo]}")
    stats = {"requests": client.stats.requests, "cache_hits": client.stats.cache_hits,
             "rate_limit_waits": client.stats.rate_limit_waits}
    return write_outputs(out, errors, skipped, extra={"github": stats})
