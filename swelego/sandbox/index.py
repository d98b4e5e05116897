"""Package indexes: find and download distribution files without running any of their code.

`pip download` of an sdist prepares its metadata, which runs the sdist's setup.py or build
backend on the host. Here the host only reads index pages (PEP 503 HTML or PEP 691 JSON,
from pip's own configured indexes and find-links, PyPI by default), picks a file by its
name, and downloads it with its hash checked. Building happens in `buildbox`, offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import url2pathname

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from swelego.errors import SourceError
from swelego.records import atomic_writer

DEFAULT_INDEX = "https://pypi.org/simple/"
SDIST_EXTS = (".tar.gz", ".zip", ".tar.bz2")
_JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")


@dataclass(frozen=True)
class IndexConfig:
    """Where pip looks for distributions: its index (unless no-index), extra indexes, and
    find-links locations (directories or pages)."""

    index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    cert: str | None = None

    def describe(self) -> str:
        return ", ".join(self.index_urls + self.find_links) or "no index"


def pip_config() -> IndexConfig:
    """pip's own configuration for `pip download`: config files, then PIP_* variables."""
    p = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    values: dict[str, dict[str, str]] = {}
    for line in p.stdout.splitlines() if p.returncode == 0 else []:
        m = re.match(r"^([^.=]+)\.([^=]+)='(.*)'$", line.strip())
        if m:
            values.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    # pip's config list spells variables as ":env:"; read them directly too, in case it does not
    env = {k[4:].lower().replace("_", "-"): v for k, v in os.environ.items() if k.startswith("PIP_")}
    merged: dict[str, str] = {}
    for section in ("global", "download", ":env:"):
        merged.update(values.get(section, {}))
    merged.update(env)

    def words(key: str) -> list[str]:
        return merged.get(key, "").split()

    no_index = merged.get("no-index", "").lower() in ("1", "true", "yes", "on")
    index = [] if no_index else (words("index-url")[:1] or [DEFAULT_INDEX]) + words("extra-index-url")
    return IndexConfig(tuple(index), tuple(words("find-links")), merged.get("cert") or None)


@dataclass(frozen=True)
class DistFile:
    filename: str
    url: str
    version: Version
    sha256: str | None
    requires_python: str | None
    yanked: bool


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs))


def _ssl(cfg: IndexConfig):
    return ssl.create_default_context(cafile=cfg.cert) if cfg.cert and os.path.exists(cfg.cert) else None


def _local_path(location: str) -> Path | None:
    if location.startswith("file:"):
        return Path(url2pathname(urlparse(location).path))
    if "://" not in location:
        return Path(location).expanduser()
    return None


def _get(url: str, cfg: IndexConfig) -> tuple[bytes, str, str] | None:
    """(body, content type, base URL) of an index page; None when it does not exist."""
    path = _local_path(url)
    if path is not None:
        page = path / "index.html" if path.is_dir() else path
        if not page.is_file():
            return None
        return page.read_bytes(), "text/html", page.parent.as_uri() + "/"
    req = urllib.request.Request(url, headers={"Accept": f"{_JSON_TYPE}, text/html;q=0.1", "User-Agent": "swelego"})
    try:
        with urllib.request.urlopen(req, timeout=60, context=_ssl(cfg)) as r:
            return r.read(), r.headers.get("Content-Type", ""), r.geturl()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise SourceError(f"package index {url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SourceError(f"package index {url} is not reachable ({getattr(e, 'reason', e)})") from None


def sdist_version(filename: str, project: str) -> Version | None:
    """The version in an sdist's file name, when the name is `project`'s (sdist names may
    spell the project with hyphens, so every split point is tried)."""
    ext = next((e for e in SDIST_EXTS if filename.endswith(e)), None)
    if ext is None:
        return None
    stem = filename[: -len(ext)]
    want = canonicalize_name(project)
    for i in [m.start() for m in re.finditer("-", stem)]:
        if canonicalize_name(stem[:i]) == want:
            try:
                return Version(stem[i + 1 :])
            except InvalidVersion:
                return None
    return None


def _files_from_page(body: bytes, ctype: str, base: str, project: str) -> list[DistFile]:
    out = []
    if _JSON_TYPE in ctype:
        for f in json.loads(body).get("files", []):
            name = f.get("filename", "")
            v = sdist_version(name, project)
            if v is not None:
                out.append(DistFile(name, urljoin(base, f["url"]), v, (f.get("hashes") or {}).get("sha256"),
                                    f.get("requires-python"), bool(f.get("yanked"))))
        return out
    parser = _Anchors()
    parser.feed(body.decode("utf-8", errors="replace"))
    for a in parser.links:
        href = a.get("href")
        if not href:
            continue
        url, frag = urldefrag(urljoin(base, href))
        name = url.rstrip("/").rsplit("/", 1)[-1]
        v = sdist_version(name, project)
        if v is None:
            continue
        sha = frag[len("sha256="):] if frag.startswith("sha256=") else None
        out.append(DistFile(name, url, v, sha, a.get("data-requires-python"), "data-yanked" in a))
    return out


def find_sdists(project: str, cfg: IndexConfig | None = None) -> list[DistFile]:
    """Every sdist of `project` that the configured indexes and find-links offer."""
    cfg = cfg or pip_config()
    files: list[DistFile] = []
    for index in cfg.index_urls:
        page = _get(index.rstrip("/") + f"/{canonicalize_name(project)}/", cfg)
        if page is not None:
            files += _files_from_page(*page, project)
    for loc in cfg.find_links:
        path = _local_path(loc)
        if path is not None and path.is_dir():
            for f in sorted(path.iterdir()):
                v = sdist_version(f.name, project)
                if v is not None and f.is_file():
                    files.append(DistFile(f.name, f.resolve().as_uri(), v, None, None, False))
        elif (page := _get(loc, cfg)) is not None:
            files += _files_from_page(*page, project)
    return files


def choose_sdist(files: list[DistFile], specifier: str = "", python: str | None = None) -> DistFile | None:
    """The newest file whose version satisfies `specifier` and whose Requires-Python admits
    `python`; yanked files only when pinned with ==, .tar.gz before other formats."""
    try:
        spec = SpecifierSet(specifier)
    except InvalidSpecifier:
        return None
    pinned = any(s.operator in ("==", "===") for s in spec)

    def fits(f: DistFile) -> bool:
        if f.yanked and not pinned:
            return False
        if python and f.requires_python:
            try:
                if not SpecifierSet(f.requires_python).contains(Version(python + ".0"), prereleases=True):
                    return False
            except InvalidSpecifier:
                pass
        return True

    usable = [f for f in files if fits(f)]
    versions = set(spec.filter({f.version for f in usable}))
    ranked = sorted((f for f in usable if f.version in versions),
                    key=lambda f: (f.version, f.filename.endswith(".tar.gz")))
    return ranked[-1] if ranked else None


def download(f: DistFile, dest_dir: Path, cfg: IndexConfig | None = None) -> Path:
    """Save `f` into `dest_dir` (atomically), checking its sha256 when the index gave one."""
    cfg = cfg or pip_config()
    if not _SAFE_FILENAME.match(f.filename):
        raise SourceError(f"refusing a distribution file with an unusual name: {f.filename!r}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f.filename
    digest = hashlib.sha256()
    with atomic_writer(target, "wb") as out:  # renamed into place only when complete and checked
        path = _local_path(f.url)
        try:
            src = open(path, "rb") if path is not None else urllib.request.urlopen(  # noqa: SIM115
                urllib.request.Request(f.url, headers={"User-Agent": "swelego"}), timeout=120, context=_ssl(cfg))
        except (urllib.error.URLError, OSError) as e:
            raise SourceError(f"cannot download {f.url} ({getattr(e, 'reason', e)})") from None
        with src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if f.sha256 and digest.hexdigest() != f.sha256.lower():
            raise SourceError(f"{f.filename}: sha256 {digest.hexdigest()[:16]}… does not match the index's "
                              f"{f.sha256[:16]}…")
    return target


def fetch_sdist(project: str, specifier: str, dest_dir: Path, *, python: str | None = None) -> Path:
    """Find and download the best sdist of `project` for `specifier`; SourceError naming
    what the indexes offer when none fits."""
    cfg = pip_config()
    files = find_sdists(project, cfg)
    best = choose_sdist(files, specifier, python)
    if best is None:
        have = sorted({f.version for f in files})
        offer = f"sdists of versions {', '.join(map(str, have[-5:]))}" if have else "no sdist at all"
        raise SourceError(f"{project}{specifier}: no sdist fits ({cfg.describe()} offer {offer})")
    cached = dest_dir / best.filename
    if cached.is_file() and (best.sha256 is None or hashlib.sha256(cached.read_bytes()).hexdigest() == best.sha256):
        return cached
    return download(best, dest_dir, cfg)
