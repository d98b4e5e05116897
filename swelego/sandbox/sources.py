"""Repository sources: `git` URL@commit, a local path, or `pypi:NAME==VER` (the sdist).

`prepare_testbed` turns any of them into a directory that becomes /testbed: a clean git
repository at its base commit, with no remote, no other branches or tags, and no reflog.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.version import InvalidVersion, Version

from swelego.errors import SourceError
from swelego.sandbox import index
from swelego.sandbox.gitsanitize import sanitize_local

_GIT_URL = re.compile(r"^(https?://|ssh://|git://|file://|git@)")
_PYPI_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
# Build artefacts an install or a test run leaves in the tree; ignored so that the image's
# tree is clean and `git diff` shows only real edits.
GIT_EXCLUDES = ["*.egg-info/", "__pycache__/", "*.py[cod]", ".pytest_cache/", ".eggs/", "build/", ".coverage", "*.so"]
# Fixed identity and dates make the commit of an unchanged tree byte-identical, so image
# tags derived from it are stable across builds and machines.
FIXED_GIT_DATE = "2000-01-01T00:00:00+0000"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "swelego",
    "GIT_AUTHOR_EMAIL": "swelego@localhost",
    "GIT_COMMITTER_NAME": "swelego",
    "GIT_COMMITTER_EMAIL": "swelego@localhost",
    "GIT_AUTHOR_DATE": FIXED_GIT_DATE,
    "GIT_COMMITTER_DATE": FIXED_GIT_DATE,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


@dataclass(frozen=True)
class RepoSource:
    kind: Literal["git", "local", "pypi"]
    location: str  # URL, absolute path, or package name
    ref: str | None  # commit/branch/tag, or the package version
    raw: str

    @classmethod
    def parse(cls, text: str) -> RepoSource:
        text = text.strip()
        if not text:
            raise SourceError("empty repository source")
        if text.startswith("pypi:"):
            spec = text[5:]
            name, sep, version = spec.partition("==")
            if not _PYPI_NAME.match(name) or (sep and not re.match(r"^[A-Za-z0-9.+!_-]+$", version)):
                raise SourceError(f"bad PyPI source {text!r}: expected pypi:NAME==VERSION (or pypi:NAME for the latest)")
            return cls("pypi", name, version or None, text)
        loc, ref = text, None
        at = text.rfind("@")
        if at > 0 and not re.search(r"[/:]", text[at + 1 :]) and text[at + 1 :]:
            loc, ref = text[:at], text[at + 1 :]
        if _GIT_URL.match(loc) or loc.endswith(".git"):
            return cls("git", loc, ref, text)
        if "://" in loc or re.match(r"^[a-z][a-z0-9+.-]*:", loc):
            raise SourceError(
                f"unknown source scheme in {text!r}: use a git URL[@commit], a local path, or pypi:NAME==VERSION"
            )
        path = Path(loc).expanduser()
        if path.exists():
            if not path.is_dir():
                raise SourceError(f"local source {loc!r} is not a directory")
            return cls("local", str(path.resolve()), ref, text)
        raise SourceError(f"no such local path {loc!r} (and not a git URL or pypi:NAME==VERSION)")


@dataclass(frozen=True)
class PreparedRepo:
    source: RepoSource
    name: str  # short repo name, e.g. "toolz"
    version: str  # package version or short commit
    testbed: Path  # directory with the files and a sanitized .git
    base_commit: str


def _run(cmd: list[str], cwd: Path | None = None, what: str = "") -> str:
    env = {**os.environ, **_GIT_ENV}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise SourceError(f"{what or cmd[0]} failed: {' | '.join(tail)}")
    return p.stdout


def git(*args: str, cwd: Path, what: str = "") -> str:
    return _run(["git", "-c", "core.autocrlf=false", "-c", "commit.gpgsign=false", *args], cwd=cwd, what=what or f"git {args[0]}")


def _finish_testbed(dest: Path) -> str:
    """Drop everything but the checked-out branch and return its commit."""
    for ref in git("for-each-ref", "--format=%(refname)", cwd=dest).split():
        if ref != "refs/heads/main":
            git("update-ref", "-d", ref, cwd=dest)
    for remote in git("remote", cwd=dest).split():
        git("remote", "remove", remote, cwd=dest)
    git("reflog", "expire", "--expire=now", "--all", cwd=dest)
    git("gc", "-q", "--prune=now", cwd=dest)
    sanitize_local(dest)  # and what gc leaves behind: FETCH_HEAD, reflog files, commit-graph
    excludes = dest / ".git" / "info" / "exclude"
    excludes.parent.mkdir(parents=True, exist_ok=True)
    excludes.write_text("\n".join(GIT_EXCLUDES) + "\n")
    return git("rev-parse", "HEAD", cwd=dest).strip()


def _commit_tree(dest: Path, message: str) -> str:
    """Make `dest` (plain files) a single-commit repository."""
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", "-A", "-f", ".", cwd=dest)
    git("commit", "-q", "--no-verify", "--allow-empty", "-m", message, cwd=dest)
    return _finish_testbed(dest)


def _from_git(location: str, ref: str | None, dest: Path) -> str:
    """Copy history up to `ref` into a fresh repo at `dest`; nothing after it is reachable."""
    work = dest.with_name(dest.name + ".clone")
    shutil.rmtree(work, ignore_errors=True)
    try:
        _run(["git", "clone", "-q", "--no-checkout", location, str(work)], what=f"git clone {location}")
        try:
            commit = git("rev-parse", "--verify", f"{ref or 'HEAD'}^{{commit}}", cwd=work).strip()
        except SourceError:
            raise SourceError(f"{location}: no commit {ref!r}") from None
        git("branch", "-f", "swelego-base", commit, cwd=work)
        dest.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=dest)
        git("fetch", "-q", "--no-tags", str(work), "swelego-base", cwd=dest, what=f"git fetch {location}")
        git("reset", "-q", "--hard", "FETCH_HEAD", cwd=dest)
        return _finish_testbed(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _is_git_repo(path: Path) -> bool:
    p = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return p.returncode == 0 and Path(p.stdout.strip()).resolve() == path.resolve()


_COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", ".tox", ".pytest_cache", "*.egg-info")


def download_sdist(name: str, version: str | None, cache: Path) -> tuple[Path, str]:
    """Fetch the sdist of NAME[==VERSION] into `cache`; return (file, version). Nothing of the
    sdist runs here: the file is found on the configured package indexes and downloaded."""
    cache.mkdir(parents=True, exist_ok=True)
    if version:
        try:
            want = Version(version)
        except InvalidVersion:
            raise SourceError(f"pypi:{name}=={version}: {version!r} is not a valid version") from None
        for f in sorted(cache.iterdir()):
            if f.is_file() and index.sdist_version(f.name, name) == want:
                return f, version
    req = f"{name}=={version}" if version else name
    cfg = index.pip_config()
    files = index.find_sdists(name, cfg)
    if not files:
        raise SourceError(f"pypi:{req}: no sdist of {name} on PyPI or the configured indexes ({cfg.describe()})")
    best = index.choose_sdist(files, f"=={version}" if version else "")
    if best is None:
        newest = max(f.version for f in files)
        raise SourceError(f"pypi:{req}: no sdist of that version on PyPI (the newest sdist is {newest})")
    f = index.download(best, cache, cfg)
    return f, version or str(best.version)


def _unpack(archive: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    else:
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")
    entries = list(tmp.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    shutil.move(str(root), str(dest))
    shutil.rmtree(tmp, ignore_errors=True)


def prepare_testbed(source: RepoSource, dest: Path, cache: Path) -> PreparedRepo:
    """Materialize `source` as a sanitized git repo in `dest` (which must not exist)."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "pypi":
        archive, version = download_sdist(source.location, source.ref, cache / "sdists")
        _unpack(archive, dest)
        # Generated metadata the sdist carries; an install rewrites it, so it must not be tracked.
        for egg in [p for p in dest.rglob("*.egg-info") if p.is_dir()]:
            shutil.rmtree(egg)
        commit = _commit_tree(dest, f"{source.location} {version} (sdist)")
        return PreparedRepo(source, source.location.lower(), version, dest, commit)
    if source.kind == "git":
        commit = _from_git(source.location, source.ref, dest)
        name = re.sub(r"\.git$", "", source.location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        return PreparedRepo(source, name.lower(), commit[:12], dest, commit)
    path = Path(source.location)
    if _is_git_repo(path):
        commit = _from_git(str(path), source.ref, dest)
        return PreparedRepo(source, path.name.lower(), commit[:12], dest, commit)
    if source.ref:
        raise SourceError(f"{source.raw}: @{source.ref} given but {path} is not a git repository")
    shutil.copytree(path, dest, ignore=_COPY_IGNORE, symlinks=True)
    commit = _commit_tree(dest, f"{path.name} (local tree)")
    return PreparedRepo(source, path.name.lower(), commit[:12], dest, commit)
