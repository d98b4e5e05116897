"""`swelego data mine-git`: fixes found in a repository's history alone, as task candidates.

Walks every non-merge commit of the range (with `merges`, the first-parent history instead,
where a merged branch counts once, as its merge commit diffed against the first parent) and
keeps commits whose message reads like a fix or names an issue and that touch both tests and
code. A commit message describes the fix, so it is never the problem statement: it is kept in
the candidate's metadata (`commit_message`), and the statement is the text of a referenced
issue found locally (a directory or JSON file of issues) or, without one, written by
validation from the failing tests (data_gen.issue_text), through the same leak check."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from data_gen.real.decontam import Decontaminator
from data_gen.real.filters import Candidate, FilterConfig, rejection_reasons, split_diff
from data_gen.real.mining import candidate_record, mined_store, write_outputs
from swelego.errors import SourceError, SwelegoError
from swelego.records import read_jsonl
from swelego.sandbox.images import cache_dir
from swelego.sandbox.sources import RepoSource

FIX_MESSAGE = re.compile(
    r"\b(fix(e[sd]|ing)?|bug(fix)?|hotfix|resolve[sd]?|close[sd]?|repair(s|ed)?|regression|crash(es|ed)?|"
    r"correct(s|ed)?|broken|issue)\b|#\d+\b|\bgh-\d+\b", re.IGNORECASE)
_ISSUE_REF = re.compile(r"(?:#|\bgh-)(\d+)\b", re.IGNORECASE)
_TRAILER = re.compile(r"^[A-Z][A-Za-z-]+: .*<.*@.*>$|^(Signed-off-by|Co-authored-by|Reviewed-by|Change-Id):", re.M)


def _git(repo: Path, *args: str) -> str:
    p = subprocess.run(["git", "-C", str(repo), "-c", "core.quotepath=false", *args], capture_output=True,
                       text=True, errors="replace")
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()
        raise SwelegoError(f"git {args[0]} in {repo} failed: {tail[-1] if tail else f'exit {p.returncode}'}")
    return p.stdout


def repo_name_from_url(url: str) -> str | None:
    """owner/name from a hosted clone URL (https://host/owner/name.git, git@host:owner/name.git);
    None for local paths and file:// URLs, whose parent directory is no owner."""
    url = url.strip()
    if url.startswith("file:") or ("://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)):
        return None
    m = re.search(r"[:/]([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", url)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def local_repository(text: str, cache: Path | None = None) -> tuple[Path, str, str, str]:
    """(a local git work tree, the repository's name, the source validation should use, the
    default revision) for a path or URL; a URL is cloned (or updated) under the swelego cache."""
    src = RepoSource.parse(text)
    if src.ref:
        raise SourceError(f"{text}: give a revision range with --rev-range, not @{src.ref}")
    if src.kind == "pypi":
        raise SourceError(f"{text}: mine-git needs a git repository (a path or a URL)")
    if src.kind == "git":
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", src.location.split("://")[-1]).strip("_")
        dest = (cache or cache_dir() / "real" / "repos") / slug
        if (dest / ".git").exists():
            _git(dest, "fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*")
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            p = subprocess.run(["git", "clone", "-q", "--no-checkout", src.location, str(dest)], capture_output=True,
                               text=True, env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"})
            if p.returncode != 0:
                tail = p.stderr.strip().splitlines()
                raise SourceError(f"git clone {src.location} failed: {tail[-1] if tail else p.returncode}")
        bare = re.sub(r"\.git$", "", src.location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        return dest, repo_name_from_url(src.location) or bare, src.location, "origin/HEAD"
    path = Path(src.location)
    p = subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"], capture_output=True, text=True)
    if p.returncode != 0:
        raise SourceError(f"{path} is not a git repository")
    origin = subprocess.run(["git", "-C", str(path), "remote", "get-url", "origin"], capture_output=True, text=True)
    name = (repo_name_from_url(origin.stdout) if origin.returncode == 0 else None) or path.name
    return path, name, str(path), "HEAD"


def load_issues(path: str | Path | None) -> dict[int, str]:
    """Issue texts available locally: a directory of `<number>.md|.txt|.json` files, or a JSON /
    JSONL file of GitHub issue objects (number, title, body)."""
    if not path:
        return {}
    path = Path(path)
    out: dict[int, str] = {}

    def add(obj: dict) -> None:
        if isinstance(obj, dict) and str(obj.get("number", "")).isdigit():
            out[int(obj["number"])] = f"{obj.get('title') or ''}\n{obj.get('body') or ''}".strip()

    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.stem.isdigit() and f.suffix in (".md", ".txt"):
                out[int(f.stem)] = f.read_text(errors="replace").strip()
            elif f.stem.isdigit() and f.suffix == ".json":
                add({"number": f.stem, **json.loads(f.read_text())})
    elif path.suffix == ".jsonl":
        try:
            for obj in read_jsonl(path, strict=True):
                add(obj)
        except ValueError as e:
            raise SwelegoError(f"issues: {e}") from None
    elif path.exists():
        data = json.loads(path.read_text())
        for obj in data if isinstance(data, list) else [data]:
            add(obj)
    else:
        raise SwelegoError(f"no issues file or directory at {path}")
    return out


def commit_message(message: str) -> str:
    """The commit message without trailers (Signed-off-by, Co-authored-by, ...)."""
    return _TRAILER.sub("", message).strip() + "\n"


@dataclass
class MineGitConfig:
    """Options of `swelego data mine-git`.

    out: output directory (mined.jsonl, candidates.jsonl, summary.json).
    rev_range: commits to examine, e.g. `v1.0..main` (default: all of HEAD's history).
    max_commits: examine only the newest N commits of the range.
    issues: local issue texts (see load_issues); the texts of the issues a commit names become
        its problem statement (validation still checks it for leaks). Without one, validation
        writes the statement from the failing tests: the LLM when configured, else a template.
    merges: examine merge commits too, walking the first-parent history (a merged branch is its
        merge commit); by default merges are skipped and every other commit is examined.
    filters: which changes become candidates; the statement-length filter applies to issue texts.
    allow_contaminated / swebench_datasets: see decontam.Decontaminator.
    """

    out: str
    rev_range: str | None = None
    max_commits: int | None = None
    issues: str | None = None
    merges: bool = False
    filters: FilterConfig = field(default_factory=FilterConfig)
    allow_contaminated: bool = False
    swebench_datasets: tuple[str, ...] = ()


def _commits(repo: Path, rev_range: str, max_commits: int | None,
             merges: bool = False) -> list[tuple[str, list[str], str, str]]:
    """(sha, parents, author date, message), oldest first: every non-merge commit, or with
    `merges` the first-parent line, merge commits included."""
    args = ["log", "--first-parent" if merges else "--no-merges", "--format=%H%x00%P%x00%aI%x00%B%x1e"]
    if max_commits:
        args.append(f"--max-count={max_commits}")
    try:
        text = _git(repo, *args, rev_range, "--")
    except SwelegoError as e:
        raise SwelegoError(f"bad revision range {rev_range!r} ({str(e).rsplit(': ', 1)[-1]})") from None
    out = []
    for rec in text.split("\x1e"):
        rec = rec.strip("\n")
        if rec:
            sha, parents, date, message = rec.split("\x00", 3)
            out.append((sha, parents.split(), date, message))
    return out[::-1]


def merges_in(repo: Path, rev_range: str) -> int:
    """How many merge commits `rev_range` holds."""
    return int(_git(repo, "rev-list", "--count", "--merges", rev_range, "--").strip() or 0)


def mine_repo_git(source: str, cfg: MineGitConfig, store, decon: Decontaminator, issues: dict[int, str],
                  progress: Callable[[str, int, int], None] | None = None) -> tuple[str, int]:
    """Examine one repository's history; returns its name and the merge commits skipped."""
    path, repo, where, default_rev = local_repository(source)
    if why := decon.repo_reason(repo):
        raise _Skip(why)
    commits = _commits(path, cfg.rev_range or default_rev, cfg.max_commits, cfg.merges)
    skipped_merges = 0 if cfg.merges else merges_in(path, cfg.rev_range or default_rev)
    for i, (sha, parents, date, message) in enumerate(commits, 1):
        key = f"{repo}@{sha}"
        if not store.has(key):
            try:
                rec = _examine(path, repo, where, sha, parents, date, message, cfg, decon, issues)
            except SwelegoError as e:
                rec = {"status": "error", "reasons": [f"error: {str(e).splitlines()[0][:300]}"]}
            store.put(key, {"repo": repo, **rec})
        if progress:
            progress(repo, i, len(commits))
    return repo, skipped_merges


class _Skip(Exception):
    pass


def _examine(path: Path, repo: str, where: str, sha: str, parents: list[str], date: str, message: str,
             cfg: MineGitConfig, decon: Decontaminator, issues: dict[int, str]) -> dict:
    if not parents:
        return {"status": "not_a_fix", "reasons": []}  # the root commit has nothing to fix
    if not FIX_MESSAGE.search(message):
        return {"status": "not_a_fix", "reasons": []}
    diff = _git(path, "diff", "--no-color", "--no-ext-diff", "--no-renames", "--src-prefix=a/", "--dst-prefix=b/",
                parents[0], sha)
    split = split_diff(diff)
    refs = [int(n) for n in dict.fromkeys(_ISSUE_REF.findall(message))]
    statement = "\n\n".join(issues[n] for n in refs if n in issues).strip()
    # Without an issue text the statement is written at validation, once the failing tests are known.
    filters = cfg.filters if statement else replace(cfg.filters, min_statement_chars=0)
    reasons = rejection_reasons(split, statement, filters)
    if reasons:
        return {"status": "filtered", "reasons": reasons}
    if why := decon.patch_reason(split.patch, split.test_patch):
        return {"status": "contaminated", "reasons": [f"contaminated: {why}"]}
    cand = Candidate(
        instance_id=f"{repo.replace('/', '__')}-{sha[:8]}", repo=repo, source=where, base_commit=parents[0],
        patch=split.patch, test_patch=split.test_patch, problem_statement=statement + "\n" if statement else "",
        origin="commit", ref=sha, statement_origin="issue" if statement else "tests", created_at=date,
        issues=[n for n in refs if n in issues],
        metadata={"files": split.files, "merge": len(parents) > 1, "commit_message": commit_message(message)})
    return candidate_record(cand)


def mine_git(sources: list[str] | str, out: str | Path, *, log: Callable[[str], None] = lambda m: None,
             progress: Callable[[str, int, int], None] | None = None, **options) -> dict:
    """Mine candidates from the history of each path or URL in `sources` into `out`.

    `options` are MineGitConfig fields. Returns the summary (also out/summary.json); a source
    that fails is reported in `errors` (or `skipped` when contaminated) and the rest continue;
    `merges_skipped` counts the merge commits of each repository left out (without `merges`)."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    cfg = MineGitConfig(out=str(out), **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    decon = Decontaminator(cfg.swebench_datasets, allow=cfg.allow_contaminated)
    issues = load_issues(cfg.issues)
    errors, skipped, merges = {}, {}, {}
    with mined_store(out) as store:
        for source in sources:
            try:
                repo, n = mine_repo_git(source, cfg, store, decon, issues, progress)
                if n:
                    merges[repo] = n
            except _Skip as e:
                skipped[source] = str(e)
                log(f"skipping {source}: {e} (--allow-contaminated to keep it)")
            except SwelegoError as e:
                errors[source] = str(e).splitlines()[0][:300]
                log(f"✗ {source}: {errors[source]}")
    return write_outputs(out, errors, skipped, extra={"merges_skipped": merges})
