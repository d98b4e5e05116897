"""Images: base (a registry image, or an offline Debian rootfs) → environment (repo + deps).

An environment image holds the repository at /testbed as a clean git repo at its base
commit and its dependencies in /opt/venv, installed from wheels downloaded on the host:
the build itself runs with no network. Tags are content hashes of everything that goes
into the image, so an unchanged spec never rebuilds, and the names are valid swebench
`image` fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker.errors
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import docker
from swelego.errors import ImageBuildError, SwelegoError
from swelego.sandbox.docker import docker_client
from swelego.sandbox.sources import PreparedRepo, RepoSource, prepare_testbed

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
ENV_FORMAT = 2  # bump when the image layout changes, so old images are not reused
BASE_DISTS = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
BASE_NAMESPACE = "swelego/base"
# -rfEsxXp lists every outcome's line for swebench's parser, like -rA, but without -rA's PASSES
# section, whose rendering takes minutes on large suites (packaging 24.1: 27k tests, 16 s with
# these flags, over 10 min with -rA). One test module that cannot be imported (an optional
# dependency, say) must not stop the rest of the suite: pytest runs nothing after a collection
# error unless told to continue.
DEFAULT_TEST_CMD = "pytest -rfEsxXp -p no:cacheprovider --continue-on-collection-errors"
DEFAULT_LOG_PARSER = "parse_log_pytest"
ENV_LABEL = "swelego.env"
TEST_EXTRAS = ("test", "tests", "testing")
_REQ_FILE_GLOBS = ("requirements-test*.txt", "requirements_test*.txt", "test-requirements*.txt",
                   "test_requirements*.txt", "requirements/test*.txt", "tests/requirements*.txt")


def cache_dir() -> Path:
    root = os.environ.get("SWELEGO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "swelego")
    return Path(root)


# -- base images -------------------------------------------------------------------------
def base_image_name(spec: str) -> str:
    return f"{BASE_NAMESPACE}:{spec}" if spec in BASE_DISTS else spec


def ensure_base_image(spec: str = "bookworm", *, client: docker.DockerClient | None = None, log=print) -> str:
    """Return the image name for `spec`, building (Debian) or pulling (registry) it if missing."""
    client = client or docker_client()
    name = base_image_name(spec)
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    if spec not in BASE_DISTS:
        log(f"pulling base image {name} ...")
        try:
            client.images.pull(name)
        except docker.errors.APIError as e:
            raise SwelegoError(
                f"base image {name} is not present and could not be pulled ({e.explanation or e}); "
                f"use an offline Debian base instead: --base {'|'.join(BASE_DISTS)}") from None
        return name
    if shutil.which("debootstrap") is None:
        raise SwelegoError("debootstrap is not installed: `apt-get install debootstrap` (needed to build "
                           f"the offline base image {name})")
    if os.geteuid() != 0:
        raise SwelegoError(f"building the offline base image {name} needs root (debootstrap); run as root once")
    log(f"building offline base image {name} with debootstrap (about a minute) ...")
    with tempfile.TemporaryDirectory(prefix="swelego-rootfs-") as tmp:
        rootfs, tar = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        p = subprocess.run(["bash", str(DOCKER_DIR / "debian-rootfs.sh"), spec, str(rootfs)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise ImageBuildError(f"debootstrap of {spec} failed", _tail(p.stdout + p.stderr))
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        repo, tag = name.rsplit(":", 1)
        client.api.import_image_from_file(
            str(tar), repository=repo, tag=tag,
            changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
    return name


@dataclass(frozen=True)
class PythonInfo:
    version: str  # "3.11"
    abi: str  # "cp311"
    glibc: tuple[int, int]
    machine: str

    def platforms(self) -> list[str]:
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        return tags + [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}", f"manylinux1_{self.machine}"]


def probe_python(image: str, client: docker.DockerClient) -> PythonInfo:
    code = ("import sys,platform,json;v=platform.libc_ver()[1] or '2.17';"
            "print(json.dumps([f'{sys.version_info[0]}.{sys.version_info[1]}',"
            "f'cp{sys.version_info[0]}{sys.version_info[1]}',v,platform.machine()]))")
    try:
        out = client.containers.run(image, ["python3", "-c", code], remove=True, network_mode="none",
                                    entrypoint=[]).decode()
    except docker.errors.ContainerError as e:
        raise SwelegoError(f"base image {image} has no working python3 ({e.stderr!r:.200})") from None
    ver, abi, glibc, machine = json.loads(out.strip().splitlines()[-1])
    g = tuple(int(x) for x in glibc.split(".")[:2])
    return PythonInfo(ver, abi, g, machine)


# -- dependencies ------------------------------------------------------------------------
def _marker_env(py: PythonInfo, extra: str) -> dict[str, str]:
    return {"python_version": py.version, "python_full_version": py.version + ".0", "extra": extra,
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": py.machine,
            "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def _strip_marker(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


def _keep(req: Requirement, py: PythonInfo, extras: tuple[str, ...]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate(_marker_env(py, e)) for e in extras)


def project_metadata(testbed: Path) -> dict:
    """The project's core metadata (name, requires_dist), computed by pip on the host."""
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "-q",
         "--report", "-", str(testbed)],
        capture_output=True, text=True)
    if p.returncode != 0:
        return {}
    try:
        report = json.loads(p.stdout)
        return report["install"][0]["metadata"]
    except (ValueError, KeyError, IndexError):
        return {}


def _requirement_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", ".", "/")) or "://" in line:
            continue
        out.append(line)
    return out


def dependency_requirements(testbed: Path, py: PythonInfo, extra_deps: tuple[str, ...] = (),
                            log=print) -> tuple[list[str], str]:
    """Requirements to preinstall: runtime deps, test extras, test requirement files, the
    build backend (for the editable install), pytest, and the user's extras.
    Returns (requirements, project name)."""
    meta = project_metadata(testbed)
    if not meta and any((testbed / f).exists() for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        log("warning: pip could not read the project's metadata; its runtime dependencies are not "
            "preinstalled (add them with --extra-dep)")
    reqs: list[str] = []
    for raw in meta.get("requires_dist", []) or []:
        try:
            r = Requirement(raw)
        except InvalidRequirement:
            continue
        if _keep(r, py, ("",) + TEST_EXTRAS):
            reqs.append(_strip_marker(r))
    build_reqs = ["setuptools>=64", "wheel"]
    pyproject = testbed / "pyproject.toml"
    if pyproject.exists():
        try:
            data = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        build_reqs += data.get("build-system", {}).get("requires", [])
        groups = data.get("dependency-groups", {})
        for g in TEST_EXTRAS:
            reqs += [x for x in groups.get(g, []) if isinstance(x, str)]
    for pattern in _REQ_FILE_GLOBS:
        for f in sorted(testbed.glob(pattern)):
            reqs += _requirement_lines(f.read_text(errors="replace"))
    out, seen = [], set()
    for raw in [*reqs, *build_reqs, "pytest", *extra_deps]:
        try:
            r = Requirement(raw)
        except InvalidRequirement:
            continue
        if not _keep(r, py, ("",)):
            continue
        s = _strip_marker(r)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out, (meta.get("name") or testbed.name)


def _wheel_requires(whl: Path) -> tuple[str, list[str]]:
    """(canonical name, Requires-Dist lines) from a wheel's METADATA."""
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = z.read(meta).decode("utf-8", errors="replace")
    name, reqs = "", []
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Name:"):
            name = canonicalize_name(line.split(":", 1)[1].strip())
        elif line.startswith("Requires-Dist:"):
            reqs.append(line.split(":", 1)[1].strip())
    return name, reqs


def _missing_for_target(dest: Path, reqs: list[str], py: PythonInfo) -> list[str]:
    """Requirements of the downloaded wheels that apply to the image's Python but are absent.

    pip evaluates environment markers against the host interpreter even with
    --python-version, so e.g. `exceptiongroup; python_version < "3.11"` is skipped when the
    host runs 3.11 and the image 3.9. Close the set with markers evaluated for the image."""
    wheels = dict(_wheel_requires(w) for w in dest.glob("*.whl"))
    extras: dict[str, set[str]] = {}
    for raw in reqs:
        r = Requirement(raw)
        extras.setdefault(canonicalize_name(r.name), set()).update(r.extras)
    missing = []
    for name, requires in wheels.items():
        wanted = ("",) + tuple(sorted(extras.get(name, ())))
        for raw in requires:
            try:
                r = Requirement(raw)
            except InvalidRequirement:
                continue
            if _keep(r, py, wanted) and canonicalize_name(r.name) not in wheels:
                missing.append(_strip_marker(r))
    return sorted(set(missing))


def download_wheels(reqs: list[str], py: PythonInfo, dest: Path) -> None:
    """Download wheels for `reqs` and their dependencies, for the image's Python, into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    todo = list(reqs)
    for _ in range(8):
        _pip_download(todo, py, dest)
        todo = _missing_for_target(dest, reqs, py)
        if not todo:
            return
    raise SwelegoError(f"dependencies for Python {py.version} did not converge; still missing: {', '.join(todo)}")


def _pip_download(reqs: list[str], py: PythonInfo, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest),
           "--python-version", py.version, "--implementation", "cp", "--abi", py.abi, "--abi", "abi3",
           "--abi", "none"]
    for plat in py.platforms():
        cmd += ["--platform", plat]
    p = subprocess.run(cmd + reqs, capture_output=True, text=True)
    if p.returncode == 0:
        return
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if host == py.version:
        # Some requirement ships only an sdist: build its wheel here, with the same Python.
        q = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dest), *reqs],
                           capture_output=True, text=True)
        if q.returncode == 0:
            return
        p = q
    err = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    why = next((ln for ln in err if "ERROR" in ln), err[-1] if err else "unknown error")
    raise SwelegoError(f"could not fetch wheels for Python {py.version}: {why.strip()}")


# -- environment images ------------------------------------------------------------------
@dataclass
class EnvImage:
    """What an environment image holds; stored as a label on the image itself."""

    image: str
    repo: str
    version: str
    source: str
    base: str
    python: str
    base_commit: str
    test_cmd: str = DEFAULT_TEST_CMD
    log_parser: str = DEFAULT_LOG_PARSER
    spec_hash: str = ""
    size_bytes: int = 0
    built: bool = False  # False when an existing image was reused
    build_seconds: float = 0.0
    requirements: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_image(cls, img) -> EnvImage:
        data = json.loads(img.labels[ENV_LABEL])
        data.update(image=img.tags[0] if img.tags else img.id, size_bytes=img.attrs.get("Size", 0),
                    built=False, build_seconds=0.0)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "repo"


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def env_image_name(namespace: str, repo: str, spec_hash: str) -> str:
    return f"{namespace}/env.{_slug(repo)}:{spec_hash[:16]}"


def build_env_image(
    source: str | RepoSource,
    *,
    base: str = "bookworm",
    namespace: str = "swelego",
    extra_deps: tuple[str, ...] = (),
    setup: tuple[str, ...] = (),
    test_cmd: str | None = None,
    client: docker.DockerClient | None = None,
    log=print,
) -> EnvImage:
    """Build (or reuse) the environment image of `source`."""
    src = source if isinstance(source, RepoSource) else RepoSource.parse(source)
    client = client or docker_client()
    base_name = ensure_base_image(base, client=client, log=log)
    base_id = client.images.get(base_name).id
    cache = cache_dir()
    with tempfile.TemporaryDirectory(prefix="swelego-build-") as tmp:
        ctx = Path(tmp)
        repo: PreparedRepo = prepare_testbed(src, ctx / "testbed", cache)
        template = (DOCKER_DIR / "env.Dockerfile").read_text()
        installer = (DOCKER_DIR / "install-testbed.sh").read_text()
        test_cmd = test_cmd or DEFAULT_TEST_CMD
        spec = {"format": ENV_FORMAT, "base": base_id, "repo": repo.name, "version": repo.version,
                "commit": repo.base_commit, "extra_deps": sorted(extra_deps), "setup": list(setup),
                "test_cmd": test_cmd, "dockerfile": template, "installer": installer}
        spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        name = env_image_name(namespace, repo.name, spec_hash)
        try:
            return EnvImage.from_image(client.images.get(name))
        except docker.errors.ImageNotFound:
            pass
        t0 = time.monotonic()
        py = probe_python(base_name, client)
        log(f"resolving dependencies of {repo.name} {repo.version} for Python {py.version} ...")
        reqs, _ = dependency_requirements(repo.testbed, py, tuple(extra_deps), log=log)
        download_wheels(reqs, py, ctx / "wheels")
        (ctx / "wheels" / "requirements.txt").write_text("\n".join(reqs) + "\n")
        (ctx / "Dockerfile").write_text(template.format(base=base_name))
        (ctx / "install-testbed.sh").write_text(installer)
        (ctx / "setup.sh").write_text("# user setup commands\n" + "\n".join(setup) + "\n")
        (ctx / "version").write_text(repo.version if src.kind == "pypi" else "")
        info = EnvImage(image=name, repo=repo.name, version=repo.version, source=src.raw, base=base_name,
                        python=py.version, base_commit=repo.base_commit, test_cmd=test_cmd,
                        spec_hash=spec_hash, requirements=reqs)
        label = {k: v for k, v in info.to_json().items() if k not in ("size_bytes", "built", "build_seconds")}
        log(f"building {name} ({len(list((ctx / 'wheels').glob('*.whl')))} wheels, no network) ...")
        _docker_build(client, ctx, name, {ENV_LABEL: json.dumps(label), "swelego.kind": "env"})
        img = client.images.get(name)
        info.size_bytes = img.attrs.get("Size", 0)
        info.built = True
        info.build_seconds = time.monotonic() - t0
        return info


def _docker_build(client: docker.DockerClient, ctx: Path, tag: str, labels: dict[str, str]) -> None:
    lines: list[str] = []
    error = None
    try:
        for chunk in client.api.build(path=str(ctx), tag=tag, rm=True, forcerm=True, network_mode="none",
                                      labels=labels, decode=True, pull=False):
            if "stream" in chunk:
                lines.extend(chunk["stream"].rstrip("\n").splitlines())
            if "error" in chunk:
                error = chunk["error"].strip()
    except docker.errors.APIError as e:
        error = str(e.explanation or e)
    if error:
        raise ImageBuildError(f"image build failed for {tag}: {error.splitlines()[-1][:300]}", _tail("\n".join(lines)))
