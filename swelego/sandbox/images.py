"""Images: base (a registry image, or an offline Debian rootfs) → environment (repo + deps).

An environment image holds the repository at /testbed as a clean git repo at its base
commit and its dependencies in /opt/venv, installed from wheels downloaded on the host:
the build itself runs with no network. The repository's build code (and that of sdist-only
dependencies) runs only in no-network sandboxes (`buildbox`): the host downloads files and
reads static metadata. Tags are content hashes of everything that goes into the image, so an
unchanged spec never rebuilds, and the names are valid swebench `image` fields.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker.errors
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import docker
from swelego.errors import ImageBuildError, SourceError, SwelegoError
from swelego.records import write_json_atomic
from swelego.sandbox import index
from swelego.sandbox.buildbox import NO_MATCH, BuildBox, MissingRequirement
from swelego.sandbox.cache import cache_dir  # noqa: F401  (public here too: callers import it from images)
from swelego.sandbox.docker import docker_client
from swelego.sandbox.envspec import (  # noqa: F401 - BASE_DISTS and the defaults are imported from here too
    BASE_DISTS,
    DEFAULT_LOG_PARSER,
    DEFAULT_TEST_CMD,
    TEST_EXTRAS,
    TEST_REQ_FILES,
    EnvOverrides,
    EnvSpec,
    infer_env,
    is_dev_tool,
)
from swelego.sandbox.sources import PreparedRepo, RepoSource, git, prepare_testbed

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
ENV_FORMAT = 5  # bump when the image layout changes, so old images are not reused
BASE_NAMESPACE = "swelego/base"
# pytest-xdist lets the eval script run the tests in a worker process apart from the one that
# reports them (swelego.harness.make_eval_script), so code under test cannot forge the report.
GRADING_REQUIREMENTS = ("pytest", "pytest-xdist")
ENV_LABEL = "swelego.env"
_REQ_FILE_GLOBS = TEST_REQ_FILES
EDITABLE_REQUIRES = {"hatchling": ("editables",), "mesonpy": ("ninja", "meson"), "pdm": ("editables",)}


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
        # linux_*: wheels built from sdists in the build sandbox carry the plain platform tag
        return tags + [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}", f"manylinux1_{self.machine}",
                       f"linux_{self.machine}"]


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


def _pyproject(tree: Path) -> dict:
    try:
        return tomllib.loads((tree / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _with_extra(raw: str, extra: str) -> str | None:
    """`raw` as a Requires-Dist line of the extra `extra`."""
    try:
        r = Requirement(raw)
    except InvalidRequirement:
        return None
    cond = f'extra == "{extra}"'
    r.marker = Marker(f"({r.marker}) and {cond}" if r.marker else cond)
    return str(r)


def static_metadata(tree: Path) -> dict | None:
    """{name, requires_dist} when the project declares its dependencies statically (a PEP 621
    [project] table that does not mark them dynamic, or a setuptools setup.cfg with no
    setup.py and no file:/attr: directives); None when only its build code can tell."""
    data = _pyproject(tree)
    project = data.get("project")
    if isinstance(project, dict) and isinstance(project.get("name"), str):
        if {"dependencies", "optional-dependencies"} & set(project.get("dynamic") or []):
            return None
        reqs = [d for d in project.get("dependencies") or [] if isinstance(d, str)]
        for extra, deps in (project.get("optional-dependencies") or {}).items():
            reqs += [x for d in deps if isinstance(d, str) and (x := _with_extra(d, extra))]
        return {"name": project["name"], "requires_dist": reqs}
    backend = (data.get("build-system") or {}).get("build-backend", "setuptools.build_meta")
    cfg_file = tree / "setup.cfg"
    if project is not None or (tree / "setup.py").exists() or not cfg_file.is_file() or \
            not str(backend).startswith("setuptools."):
        return None
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read_string(cfg_file.read_text(errors="replace"))
    except configparser.Error:
        return None
    name = cp.get("metadata", "name", fallback="").strip()
    values = [("", cp.get("options", "install_requires", fallback=""))]
    if cp.has_section("options.extras_require"):
        values += list(cp.items("options.extras_require"))
    if not name or any(v.strip().startswith(("file:", "attr:")) for _, v in values):
        return None
    reqs = []
    for extra, value in values:
        for line in value.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                req = _with_extra(line, extra) if extra else line
                if req is None:
                    return None
                reqs.append(req)
    return {"name": name, "requires_dist": reqs}


def _tree_id(tree: Path) -> str | None:
    try:
        if git("status", "--porcelain", cwd=tree).strip():
            return None
        return git("rev-parse", "HEAD^{tree}", cwd=tree).strip()
    except SwelegoError:
        return None


def project_metadata(tree: Path, py: PythonInfo, box: BuildBox | None, *, version: str = "", log=print) -> dict:
    """The project's core metadata (name, requires_dist): read from its files when they are
    static, else prepared by its build backend in `box` (never on the host). Cached per
    tree and base image. {} when it cannot be read (the reason is logged)."""
    static = static_metadata(tree)
    if static is not None:
        return static
    if box is None:
        return {}
    tree_id = _tree_id(tree)
    name = f"{tree_id}-{box.image_id[7:23]}-{_slug(version) if version else 'scm'}.json"
    cache = cache_dir() / "metadata" / name if tree_id else None
    if cache is not None and cache.is_file():
        try:
            return json.loads(cache.read_text())
        except ValueError:
            pass
    log("reading the project's metadata in a sandbox (its build code runs there, offline) ...")
    try:
        meta = _in_box(box, py, build_requirements(_pyproject(tree)),
                       lambda wheels: box.metadata(tree, wheels, version=version))
    except SwelegoError as e:
        log(f"warning: the project's metadata could not be prepared in the sandbox: {str(e).splitlines()[0]}")
        return {}
    meta = {"name": meta.get("name", ""), "requires_dist": meta.get("requires_dist") or []}
    if cache is not None:
        write_json_atomic(cache, meta, indent=None, ensure_ascii=True, newline=False)
    return meta


def build_requirements(pyproject: dict) -> list[str]:
    """What pip installs before running a project's backend (PEP 518; setuptools when the
    project names no build system)."""
    system = pyproject.get("build-system")
    requires = system.get("requires") if isinstance(system, dict) else None
    if not isinstance(requires, list):
        requires = ["setuptools>=40.8.0"]
    return [r for r in requires if isinstance(r, str)] + ["wheel"]


def _sdist_pyproject(sdist: Path) -> dict:
    """The top-level pyproject.toml of an sdist archive, read without unpacking it."""
    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as z:
                name = next((n for n in z.namelist() if n.count("/") == 1 and n.endswith("/pyproject.toml")), None)
                text = z.read(name) if name else b""
        else:
            with tarfile.open(sdist) as t:
                m = next((m for m in t if m.isfile() and m.name.count("/") == 1
                          and m.name.endswith("/pyproject.toml")), None)
                text = t.extractfile(m).read() if m else b""
        return tomllib.loads(text.decode("utf-8", errors="replace"))
    except (OSError, tarfile.TarError, zipfile.BadZipFile, tomllib.TOMLDecodeError, KeyError):
        return {}


def _in_box(box: BuildBox, py: PythonInfo, reqs: list[str], call, depth: int = 0):
    """`call(build_wheels)` with the wheels of `reqs` (and pip) downloaded on the host; a
    requirement the backend asks for at build time is fetched and the call repeated."""
    with tempfile.TemporaryDirectory(prefix="swelego-buildreqs-") as tmp:
        wheels = Path(tmp)
        wanted = ["pip", *reqs]
        download_wheels(wanted, py, wheels, box=box, _depth=depth + 1)
        for _ in range(8):
            try:
                return call(wheels)
            except MissingRequirement as m:
                if m.requirement in wanted:
                    raise SwelegoError(f"the sandboxed build cannot use the downloaded wheel of {m.requirement}") from None
                wanted.append(m.requirement)
                download_wheels(wanted, py, wheels, box=box, _depth=depth + 1)
        raise SwelegoError("the sandboxed build kept asking for more build requirements")


def _requirement_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", ".", "/")) or "://" in line:
            continue
        out.append(line)
    return out


def dependency_requirements(testbed: Path, py: PythonInfo, extra_deps: tuple[str, ...] = (),
                            log=print, *, box: BuildBox | None = None, version: str = "",
                            extras: tuple[str, ...] = ()) -> tuple[list[str], str]:
    """Requirements to preinstall: runtime deps, test extras, test requirement files, the
    build backend (for the editable install), pytest, and the user's extras. `extras` are
    further install extras (a `dev` extra, say), whose development tools are left out.
    Metadata that only the project's build code can compute is computed in `box`; without
    one, only static metadata is read. Returns (requirements, project name)."""
    meta = project_metadata(testbed, py, box, version=version, log=log)
    if not meta and any((testbed / f).exists() for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        log("warning: the project's metadata could not be read; its runtime dependencies are not "
            "preinstalled (add them with --extra-dep)")
    reqs: list[str] = []
    for raw in meta.get("requires_dist", []) or []:
        try:
            r = Requirement(raw)
        except InvalidRequirement:
            continue
        if _keep(r, py, ("",) + TEST_EXTRAS):
            reqs.append(_strip_marker(r))
        elif extras and _keep(r, py, tuple(extras)) and not is_dev_tool(raw):
            reqs.append(_strip_marker(r))
    build_reqs = ["setuptools>=64", "wheel"]
    data = _pyproject(testbed)
    if data:
        requires = (data.get("build-system") or {}).get("requires") or []
        build_reqs += [r for r in requires if isinstance(r, str)] if isinstance(requires, list) else []
        # what the backend's get_requires_for_build_editable adds (the install runs with
        # --no-build-isolation, so nothing is fetched then)
        backend = str((data.get("build-system") or {}).get("build-backend") or "").split(".")[0]
        build_reqs += list(EDITABLE_REQUIRES.get(backend, ()))
        groups = data.get("dependency-groups") or {}
        for g in TEST_EXTRAS:
            reqs += [x for x in groups.get(g, []) if isinstance(x, str)]
    for pattern in _REQ_FILE_GLOBS:
        for f in sorted(testbed.glob(pattern)):
            reqs += _requirement_lines(f.read_text(errors="replace"))
    out, seen = [], set()
    for raw in [*reqs, *build_reqs, *GRADING_REQUIREMENTS, *extra_deps]:
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


def download_wheels(reqs: list[str], py: PythonInfo, dest: Path, *, box: BuildBox | None = None,
                    log=print, _depth: int = 0) -> None:
    """Download wheels for `reqs` and their dependencies, for the image's Python, into `dest`.
    A requirement with no wheel for it is built from its sdist in `box` (the host downloads
    the sdist; its build code runs in the sandbox), and the built wheel joins `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    todo = list(reqs)
    built: set[str] = set()
    for _ in range(32):
        missing = _pip_download(todo, py, dest)
        if missing is not None:
            _wheel_from_sdist(missing, py, dest, box, built, log, _depth)
            continue
        todo = _missing_for_target(dest, reqs, py)
        if not todo:
            return
    raise SwelegoError(f"dependencies for Python {py.version} did not converge; still missing: {', '.join(todo)}")


def _wheel_from_sdist(req_text: str, py: PythonInfo, dest: Path, box: BuildBox | None, built: set[str],
                      log, depth: int) -> None:
    where = f"could not fetch wheels for Python {py.version}"
    try:
        req = Requirement(req_text)
    except InvalidRequirement:
        raise SwelegoError(f"{where}: pip names no usable requirement ({req_text!r})") from None
    name = canonicalize_name(req.name)
    if name in built:
        raise SwelegoError(f"{where}: the wheel built from the sdist of {name} does not satisfy {req_text}")
    if box is None:
        raise SwelegoError(f"{where}: {req_text} has no wheel for it (sdists are built only in a build sandbox)")
    if depth > 3:
        raise SwelegoError(f"{where}: {req_text} has no wheel, and building it needs too deep a chain of sdists")
    try:
        sdist = index.fetch_sdist(req.name, str(req.specifier), cache_dir() / "sdists", python=py.version)
    except SourceError as e:
        raise SwelegoError(f"{where}: {req_text} has no wheel for it, and {e}") from None
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()[:20]
    cached = cache_dir() / "built-wheels" / f"{digest}-{py.abi}-{py.machine}-{box.image_id[7:23]}"
    wheels = sorted(cached.glob("*.whl"))
    if not wheels:
        log(f"building a wheel of {sdist.name} in a sandbox (no wheel for Python {py.version}) ...")
        with tempfile.TemporaryDirectory(prefix="swelego-sdist-") as tmp:
            try:
                made = _in_box(box, py, build_requirements(_sdist_pyproject(sdist)),
                               lambda build: box.build_wheel(sdist, build, Path(tmp)), depth)
            except SwelegoError as e:
                tail = getattr(e, "log_tail", "")
                raise SwelegoError(f"{where}: {req_text} has no wheel, and building {sdist.name} in the sandbox "
                                   f"failed: {str(e).splitlines()[0]}" + (f"\n{tail}" if tail else "")) from None
            cached.mkdir(parents=True, exist_ok=True)
            for w in made:
                shutil.copy2(w, cached / w.name)
        wheels = sorted(cached.glob("*.whl"))
    for w in wheels:
        shutil.copy2(w, dest / w.name)
    built.add(name)


def _pip_download(reqs: list[str], py: PythonInfo, dest: Path) -> str | None:
    """Download wheels only (nothing is built or run here). Returns the requirement that
    has no wheel for the image's Python, None when everything was downloaded."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest),
           "--find-links", str(dest), "--python-version", py.version, "--implementation", "cp",
           "--abi", py.abi, "--abi", "abi3", "--abi", "none"]
    for plat in py.platforms():
        cmd += ["--platform", plat]
    p = subprocess.run(cmd + reqs, capture_output=True, text=True)
    if p.returncode == 0:
        return None
    if m := NO_MATCH.search(p.stderr):
        return m.group(1)
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
    system_image: str = ""  # the base plus its Debian packages, shared by environments that need the same set
    spec: dict = field(default_factory=dict)  # the EnvSpec it was built from (inferred, then overridden)

    @property
    def env_spec(self) -> EnvSpec:
        return EnvSpec.from_json(self.spec) if self.spec else EnvSpec(test_cmd=self.test_cmd,
                                                                      log_parser=self.log_parser)

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


def resolve_spec(testbed: Path, spec: EnvSpec | None = None, *, base: str | None = None,
                 extra_deps: tuple[str, ...] = (), setup: tuple[str, ...] = (), test_cmd: str | None = None,
                 overrides: EnvOverrides | dict | None = None) -> EnvSpec:
    """The spec an image of `testbed` is built from: `spec`, or the inferred one, with the
    caller's additions (extra deps and setup appended, a test command or base replacing) and
    then `overrides` applied."""
    spec = spec or infer_env(testbed)
    add = EnvOverrides(test_cmd=test_cmd, base_image=base or None)
    if extra_deps:
        add.append["extra_deps"] = list(extra_deps)
    if setup:
        add.append["setup"] = list(setup)
    if add:
        spec = add.apply(spec)
    return EnvOverrides.from_mapping(overrides).apply(spec) if overrides else spec


def build_env_image(
    source: str | RepoSource,
    *,
    base: str | None = None,
    namespace: str = "swelego",
    extra_deps: tuple[str, ...] = (),
    setup: tuple[str, ...] = (),
    test_cmd: str | None = None,
    spec: EnvSpec | None = None,
    overrides: EnvOverrides | dict | None = None,
    client: docker.DockerClient | None = None,
    log=print,
) -> EnvImage:
    """Build (or reuse) the environment image of `source`.

    The environment is `spec`, else inferred from the source's files (`envspec.infer_env`);
    `base`, `extra_deps`, `setup` and `test_cmd` amend it, `overrides` has the last word. The
    decision is stored in the image's label (EnvImage.spec)."""
    src = source if isinstance(source, RepoSource) else RepoSource.parse(source)
    client = client or docker_client()
    cache = cache_dir()
    with tempfile.TemporaryDirectory(prefix="swelego-build-") as tmp:
        ctx = Path(tmp)
        repo: PreparedRepo = prepare_testbed(src, ctx / "testbed", cache)
        spec = resolve_spec(repo.testbed, spec, base=base, extra_deps=tuple(extra_deps), setup=tuple(setup),
                            test_cmd=test_cmd, overrides=overrides)
        log(f"environment: {spec.summary()}")
        base_name = ensure_base_image(spec.base, client=client, log=log)
        base_id = client.images.get(base_name).id
        template = (DOCKER_DIR / "env.Dockerfile").read_text()
        installer = (DOCKER_DIR / "install-testbed.sh").read_text()
        key = spec.build_fields()
        key.update(extra_deps=sorted(spec.extra_deps), system_packages=sorted(spec.system_packages))
        key_hash = {"format": ENV_FORMAT, "base": base_id, "repo": repo.name, "version": repo.version,
                    "commit": repo.base_commit, "spec": key, "dockerfile": template, "installer": installer}
        spec_hash = hashlib.sha256(json.dumps(key_hash, sort_keys=True).encode()).hexdigest()
        name = env_image_name(namespace, repo.name, spec_hash)
        try:
            return EnvImage.from_image(client.images.get(name))
        except docker.errors.ImageNotFound:
            pass
        t0 = time.monotonic()
        from swelego.sandbox.apt import ensure_system_image

        system_name = ensure_system_image(base_name, list(spec.system_packages), client=client, log=log)
        py = probe_python(base_name, client)
        box = BuildBox(system_name, client=client)
        version = repo.version if src.kind == "pypi" else ""
        log(f"resolving dependencies of {repo.name} {repo.version} for Python {py.version} ...")
        reqs, _ = dependency_requirements(repo.testbed, py, tuple(spec.extra_deps), log=log, box=box,
                                          version=version, extras=spec.extras)
        download_wheels(reqs, py, ctx / "wheels", box=box, log=log)
        (ctx / "wheels" / "requirements.txt").write_text("\n".join(reqs) + "\n")
        (ctx / "Dockerfile").write_text(template.format(base=system_name))
        (ctx / "install-testbed.sh").write_text(installer)
        (ctx / "setup.sh").write_text("# user setup commands\n" + "\n".join(spec.setup) + "\n")
        (ctx / "version").write_text(version)
        # A project with compiled extensions must install: a sys.path entry would import no .so.
        (ctx / "install-mode").write_text("required\n" if spec.system_packages else "fallback\n")
        info = EnvImage(image=name, repo=repo.name, version=repo.version, source=src.raw, base=base_name,
                        python=py.version, base_commit=repo.base_commit, test_cmd=spec.test_cmd,
                        log_parser=spec.log_parser, spec_hash=spec_hash, requirements=reqs,
                        system_image=system_name, spec=spec.to_json())
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


# -- pruning -------------------------------------------------------------------------------
def referenced_images(datasets: list[str | Path]) -> set[str]:
    """Every image a dataset's rows name: each row's `image` and the environment it came
    from (`metadata.env_image`). Raises SwelegoError for a path that holds no dataset."""
    from swelego.schema import load_dataset

    names: set[str] = set()
    for path in datasets:
        try:
            rows = load_dataset(path)
        except (FileNotFoundError, OSError, ValueError) as e:
            raise SwelegoError(f"{path}: not a task dataset ({e})") from None
        for row in rows:
            names.add(row.image)
            if env := (row.metadata or {}).get("env_image"):
                names.add(env)
    return names


def unreferenced_images(referenced: set[str], *, client: docker.DockerClient | None = None,
                        namespace: str | None = None) -> list[dict]:
    """Our environment, instance and system images (by their `swelego.kind` label; bases and
    anything unlabelled are never listed) that no name in `referenced` needs: an environment
    or instance image not named there, and a system image no kept environment starts from.
    `namespace` limits the listing to images under that prefix. Each: {image, kind, size}."""
    client = client or docker_client()
    ours = []
    for img in client.api.images(filters={"label": "swelego.kind"}):
        labels = img.get("Labels") or {}
        for tag in img.get("RepoTags") or []:
            if tag == "<none>:<none>":
                continue
            ours.append({"image": tag, "kind": labels.get("swelego.kind", ""), "size": img.get("Size", 0),
                         "system": json.loads(labels.get(ENV_LABEL) or "{}").get("system_image", "")})
    def listed(o) -> bool:
        return not namespace or o["image"].startswith(namespace + "/") or o["kind"] == "system"

    out = [o for o in ours if o["kind"] in ("env", "instance") and o["image"] not in referenced and listed(o)]
    gone = {o["image"] for o in out}
    # a system image stays while anything kept (in any namespace) starts from it
    still = {o["system"] for o in ours if o["image"] not in gone and o["kind"] != "system" and o["system"]}
    out += [o for o in ours if o["kind"] == "system" and o["image"] not in still]
    return out
