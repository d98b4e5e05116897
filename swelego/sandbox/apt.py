"""Debian packages offline: resolved and downloaded on the host, installed with `dpkg -i` in
a no-network container, like the wheels.

The host's apt runs against a private state per Debian release (its own sources list, lists
and archive cache under the swelego cache) with the *base image's* dpkg status as the
installed set, so it resolves exactly what the image lacks, at the versions of that release.
The packages are signed Debian archives; their maintainer scripts run only in the container.
A base plus a set of packages becomes a "system" image, shared by every environment that
needs the same set (one layer per set, not per repository).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import subprocess
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import docker.errors

from swelego.errors import ImageBuildError, SwelegoError
from swelego.records import write_text_atomic
from swelego.sandbox.cache import cache_dir

MIRROR = os.environ.get("SWELEGO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600.0
SYSTEM_NAMESPACE = "swelego/sys"
_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([\w-]+)\]\)", re.M)


class MissingSystemPackage(SwelegoError):
    """apt knows no package of that name for the base's release."""

    def __init__(self, names: list[str], release: str, detail: str):
        self.names = names
        super().__init__(f"Debian {release} has no package {', '.join(names)} ({detail})")


def _cache_root() -> Path:
    return cache_dir() / "apt"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def image_release(image: str, client) -> tuple[str, str]:
    """(Debian codename, dpkg status text) of `image`, read from its files (nothing runs)."""
    c = client.containers.create(image, command=["true"], entrypoint=[], network_mode="none")
    try:
        def read(path: str) -> str:
            try:
                chunks, _ = c.get_archive(path)
            except docker.errors.NotFound:
                return ""
            with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
                m = tf.next()
                while m is not None and m.issym():
                    return read(str(Path(path).parent / m.linkname))
                return tf.extractfile(m).read().decode("utf-8", "replace") if m and m.isfile() else ""

        osr = read("/etc/os-release")
        status = read("/var/lib/dpkg/status")
    finally:
        c.remove(force=True)
    m = re.search(r"^VERSION_CODENAME=\"?(\w+)", osr, re.M)
    if not m or not status:
        raise SwelegoError(f"{image} is not a Debian image with dpkg (system packages need one)")
    return m.group(1), status


def _apt_opts(root: Path, status: Path) -> list[str]:
    return ["-o", f"Dir::State::status={status}", "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}", "-o", f"Dir::Cache::archives={root / 'archives'}",
            "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", "Dir::Etc::preferencesparts=-", "-o", "APT::Install-Recommends=0",
            "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
            "-q"]


def _apt(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["apt-get", *args], capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})


def download_packages(release: str, status_text: str, packages: list[str], *, log=print) -> list[Path]:
    """The .deb files that installing `packages` on a system with `status_text` needs (all
    their missing dependencies), downloaded for `release` into the shared apt cache."""
    root = _cache_root() / release
    for d in ("lists/partial", "archives/partial", "cache"):
        (root / d).mkdir(parents=True, exist_ok=True)
    status = _cache_root() / "status" / hashlib.sha256(status_text.encode()).hexdigest()[:20]
    status.parent.mkdir(parents=True, exist_ok=True)
    if not status.is_file():
        write_text_atomic(status, status_text)
    with _locked(root / "lock"):
        (root / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {release} main\n")
        opts = _apt_opts(root, status)
        stamp = root / "lists" / ".updated"
        if not stamp.is_file() or time.time() - stamp.stat().st_mtime > LISTS_MAX_AGE:
            log(f"apt: reading the package lists of Debian {release} ...")
            p = _apt([*opts, "update"])
            if p.returncode != 0:
                raise SwelegoError(f"apt-get update for Debian {release} failed: {p.stderr.strip()[-300:]}")
            stamp.touch()
        p = _apt([*opts, "-s", "install", *packages])
        if p.returncode != 0:
            unknown = re.findall(r"Unable to locate package (\S+)", p.stdout + p.stderr)
            detail = next((ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("E:")), p.stderr[-200:])
            if unknown:
                raise MissingSystemPackage(unknown, release, detail.strip())
            raise SwelegoError(f"apt cannot install {', '.join(packages)} on Debian {release}: {detail.strip()}")
        wanted = _INST.findall(p.stdout)
        if not wanted:
            return []
        log(f"apt: downloading {len(wanted)} Debian package(s) for {release} ...")
        p = _apt([*opts, "-y", "--download-only", "install", *packages])
        if p.returncode != 0:
            raise SwelegoError(f"apt-get download for Debian {release} failed: {p.stderr.strip()[-300:]}")
        out = []
        for name, version, arch in wanted:
            f = root / "archives" / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
            if not f.is_file():
                raise SwelegoError(f"apt did not download {f.name}")
            out.append(f)
        return out


def system_image_name(base_id: str, packages: list[str]) -> str:
    digest = hashlib.sha256(("\n".join([base_id, *sorted(set(packages))])).encode()).hexdigest()[:16]
    return f"{SYSTEM_NAMESPACE}:{digest}"


def ensure_system_image(base: str, packages: list[str] | tuple[str, ...], *, client, log=print) -> str:
    """`base` with `packages` installed (built once per base and set): the image environments
    that need them start from. Returns `base` itself when nothing is asked for."""
    packages = sorted(set(packages))
    if not packages:
        return base
    base_id = client.images.get(base).id
    name = system_image_name(base_id, packages)
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    release, status = image_release(base, client)
    debs = download_packages(release, status, packages, log=log)
    log(f"installing {len(debs)} Debian package(s) into {name} (no network) ...")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for f in debs:
            tf.add(f, arcname=f"debs/{f.name}")
    # A container, not a Dockerfile: COPY would keep the .debs in a layer of their own forever.
    c = client.containers.create(base, command=["sleep", "infinity"], entrypoint=[], network_mode="none",
                                 init=True, labels={"swelego.kind": "build"})
    try:
        c.start()
        if not c.put_archive("/tmp", buf.getvalue()):
            raise SwelegoError("could not copy the Debian packages into the build container")
        r = c.exec_run(["bash", "-c", "dpkg -i /tmp/debs/*.deb 2>&1 && rm -rf /tmp/debs "
                                      "/var/cache/debconf/*-old /var/lib/dpkg/*-old"],
                       environment={"DEBIAN_FRONTEND": "noninteractive"})
        text = r.output.decode("utf-8", "replace")
        if r.exit_code != 0:
            raise ImageBuildError(f"dpkg -i of {', '.join(packages)} failed in {base}",
                                  "\n".join(text.splitlines()[-25:]))
        repo, tag = name.rsplit(":", 1)
        c.commit(repository=repo, tag=tag, changes=[f'LABEL swelego.kind=system swelego.system_packages="{" ".join(packages)}"'])
    finally:
        c.remove(force=True)
    return name
