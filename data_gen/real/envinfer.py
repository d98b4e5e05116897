"""Heuristic environment inference for an arbitrary Python repository at one commit.

Reads only the tree: the Python version from `requires-python` / `python_requires`, trove
classifiers, CI workflow matrices, tox envlists and `.python-version`; extra packages the
test configuration needs (pytest plugins named by its options, tox test deps, dev requirement
files); the test command and its swebench log parser. Runtime dependencies, test extras and
test requirement files are already collected by `images.dependency_requirements`, so the
dependency key of a spec is that list plus the spec itself: tasks whose keys match share one
environment image."""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from swelego.sandbox.images import BASE_DISTS, DEFAULT_LOG_PARSER, DEFAULT_TEST_CMD

PYTHONS = {v: k for k, v in BASE_DISTS.items()}  # "3.11" -> "bookworm"
PREFERRED_PYTHON = "3.11"  # the default base; newer only when the project asks for it
TEST_CMD = DEFAULT_TEST_CMD  # why these flags: see swelego.sandbox.images
# Options of a pytest configuration's addopts (or ini keys) and the plugin that provides them.
PYTEST_PLUGINS = {
    "--cov": "pytest-cov", "-n": "pytest-xdist", "--numprocesses": "pytest-xdist", "--dist": "pytest-xdist",
    "--timeout": "pytest-timeout", "--reruns": "pytest-rerunfailures", "--benchmark": "pytest-benchmark",
    "--doctest-plus": "pytest-doctestplus", "--mypy": "pytest-mypy", "--flake8": "pytest-flake8",
    "--randomly": "pytest-randomly", "--hypothesis": "hypothesis", "--ds": "pytest-django",
}
PYTEST_INI_PLUGINS = {
    "asyncio_mode": "pytest-asyncio", "timeout": "pytest-timeout", "DJANGO_SETTINGS_MODULE": "pytest-django",
    "env": "pytest-env", "mock_use_standalone_module": "pytest-mock", "trio_mode": "pytest-trio",
}
# Development tools that dev requirement files list but tests do not need.
NOT_FOR_TESTS = {
    "black", "flake8", "isort", "mypy", "pre-commit", "ruff", "pylint", "sphinx", "twine", "tox", "nox", "build",
    "wheel", "bump2version", "bumpversion", "check-manifest", "readme-renderer", "ipython", "ipdb", "pip-tools",
    "towncrier", "codecov", "coveralls", "pyupgrade", "autopep8", "yapf", "doc8", "mkdocs", "furo", "flit",
    "setuptools", "hatch", "hatchling", "poetry", "pdm", "setuptools-scm", "releases", "jupyter", "notebook",
}
NOT_FOR_TESTS_PREFIXES = ("sphinx", "mkdocs", "flake8-", "types-")
DEV_REQ_FILES = ("requirements-dev*.txt", "requirements_dev*.txt", "dev-requirements*.txt", "requirements/dev*.txt")


@dataclass
class EnvSpec:
    """How to build and test a repository's environment (inferred, then possibly repaired).

    python: interpreter version, one of the offline bases' (3.9 bullseye, 3.11 bookworm, 3.13 trixie).
    extra_deps: pip requirements added to what `build_env_image` derives from the project itself.
    setup: shell commands run in /testbed after the install, during the build (no network).
    test_cmd: runs the whole suite; its output must suit `log_parser`.
    log_parser: a key of swebench's PARSER_REGISTRY.
    evidence: where each choice came from, for people reading the records (not part of the key).
    """

    python: str = PREFERRED_PYTHON
    extra_deps: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    test_cmd: str = TEST_CMD
    log_parser: str = DEFAULT_LOG_PARSER
    evidence: dict = field(default_factory=dict, compare=False)

    @property
    def base(self) -> str:
        return PYTHONS[self.python]

    def to_json(self) -> dict:
        d = asdict(self)
        d["extra_deps"], d["setup"] = list(self.extra_deps), list(self.setup)
        return d

    @classmethod
    def from_json(cls, d: dict) -> EnvSpec:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["extra_deps"] = tuple(d.get("extra_deps", ()))
        d["setup"] = tuple(d.get("setup", ()))
        return cls(**d)

    def build_fields(self) -> dict:
        """What goes into the image (everything but the evidence)."""
        d = self.to_json()
        d.pop("evidence")
        return d


def dependency_key(spec: EnvSpec, requirements: list[str]) -> str:
    """Tasks whose key is equal share one environment image."""
    data = {**spec.build_fields(), "extra_deps": sorted(spec.extra_deps), "requirements": sorted(requirements)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# -- reading the tree ------------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def _toml(tree: Path) -> dict:
    try:
        return tomllib.loads(_read(tree / "pyproject.toml"))
    except tomllib.TOMLDecodeError:
        return {}


def _ini(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read_string(text)
    except configparser.Error:
        pass
    return cp


def _versions(text: str) -> set[str]:
    return {f"3.{m}" for m in re.findall(r"\b3\.(\d{1,2})\b", text)}


def _ci_versions(tree: Path) -> set[str]:
    """Python versions named under any `python`-ish key of the CI workflow files."""
    found: set[str] = set()

    def walk(node, under_python: bool = False) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, under_python or "python" in str(k).lower())
        elif isinstance(node, list):
            for v in node:
                walk(v, under_python)
        elif under_python and isinstance(node, str | float | int):
            found.update(_versions(str(node)))

    for f in sorted((tree / ".github" / "workflows").glob("*.y*ml")):
        try:
            walk(yaml.safe_load(_read(f)))
        except yaml.YAMLError:
            continue
    return found


def requires_python(tree: Path) -> str:
    pyproject = _toml(tree)
    spec = (pyproject.get("project") or {}).get("requires-python")
    if not spec:
        spec = _ini(_read(tree / "setup.cfg")).get("options", "python_requires", fallback=None)
    if not spec:
        m = re.search(r"python_requires\s*=\s*['\"]([^'\"]+)['\"]", _read(tree / "setup.py"))
        spec = m.group(1) if m else None
    return (spec or "").strip()


def listed_pythons(tree: Path) -> dict[str, set[str]]:
    """Python versions the project says it supports or tests, by where it says so."""
    meta = _read(tree / "pyproject.toml") + _read(tree / "setup.cfg") + _read(tree / "setup.py")
    classifiers = {f"3.{m}" for m in re.findall(r"Programming Language :: Python :: 3\.(\d+)", meta)}
    tox = _ini(_read(tree / "tox.ini")).get("tox", "envlist", fallback="")
    return {
        "classifiers": classifiers,
        "ci": _ci_versions(tree),
        "tox": {f"3.{m}" for m in re.findall(r"\bpy3(\d{1,2})\b", tox)},
        ".python-version": _versions(_read(tree / ".python-version")),
    }


def choose_python(requires: str, listed: set[str]) -> tuple[str, str]:
    """(version, why) among the available interpreters."""
    available = sorted(PYTHONS, key=Version)
    try:
        allowed = [v for v in available if SpecifierSet(requires).contains(Version(v))] if requires else available
    except InvalidSpecifier:
        allowed = available
    if not allowed:
        return PREFERRED_PYTHON, f"no available Python satisfies {requires!r}; using {PREFERRED_PYTHON}"
    top = max(listed, key=Version) if listed else None
    if PREFERRED_PYTHON in allowed and (top is None or Version(top) >= Version(PREFERRED_PYTHON)):
        return PREFERRED_PYTHON, f"allowed by {requires or 'no constraint'!r}" + (f", tested up to {top}" if top else "")
    if top is None:
        return allowed[-1], f"newest available allowed by {requires!r}"
    older = [v for v in allowed if Version(v) <= Version(top)]
    if older:
        return older[-1], f"newest available <= {top} (the newest version the project lists)"
    return allowed[0], f"oldest available allowed by {requires!r}"


def pytest_config(tree: Path) -> tuple[str, dict[str, str]]:
    """(where, options) of the pytest configuration pytest itself would pick first."""
    for name, section in (("pytest.ini", "pytest"), ("pyproject.toml", None), ("tox.ini", "pytest"),
                          ("setup.cfg", "tool:pytest")):
        if name == "pyproject.toml":
            opts = ((_toml(tree).get("tool") or {}).get("pytest") or {}).get("ini_options")
            if opts is not None:
                return name, {k: " ".join(v) if isinstance(v, list) else str(v) for k, v in opts.items()}
            continue
        cp = _ini(_read(tree / name))
        if cp.has_section(section):
            return name, dict(cp.items(section))
    return "", {}


def _requirement_names(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", ".", "/", "{")) or "://" in line:
            continue
        try:
            r = Requirement(line)
        except InvalidRequirement:
            continue
        name = r.name.lower().replace("_", "-")
        if name not in NOT_FOR_TESTS and not name.startswith(NOT_FOR_TESTS_PREFIXES):
            out.append(line)
    return out


def infer_env(tree: Path) -> EnvSpec:
    """An EnvSpec for the repository checked out at `tree`."""
    tree = Path(tree)
    evidence: dict[str, str] = {}
    requires = requires_python(tree)
    listed = listed_pythons(tree)
    every = set().union(*listed.values())
    python, why = choose_python(requires, every)
    evidence["python"] = why + "".join(f"; {k}: {', '.join(sorted(v, key=Version))}" for k, v in listed.items() if v)

    extra: list[str] = []
    where, opts = pytest_config(tree)
    addopts = opts.get("addopts", "")
    for flag, plugin in PYTEST_PLUGINS.items():
        if re.search(rf"(^|\s){re.escape(flag)}(\s|=|$)", addopts) and plugin not in extra:
            extra.append(plugin)
    for key, plugin in PYTEST_INI_PLUGINS.items():
        if key in opts and plugin not in extra:
            extra.append(plugin)
    if extra:
        evidence["pytest plugins"] = f"{where}: {', '.join(extra)}"
    tox = _ini(_read(tree / "tox.ini"))
    if tox.has_section("testenv"):
        deps = _requirement_names(tox.get("testenv", "deps", fallback="").splitlines())
        if deps:
            evidence["tox deps"] = ", ".join(deps)
        extra += [d for d in deps if d not in extra]
    for pattern in DEV_REQ_FILES:
        for f in sorted(tree.glob(pattern)):
            deps = _requirement_names(_read(f).splitlines())
            if deps:
                evidence[f.name] = ", ".join(deps)
            extra += [d for d in deps if d not in extra]
    return EnvSpec(python=python, extra_deps=tuple(extra), evidence=evidence)
