"""Environment inference: how to build and test a repository, read from its files alone.

One decision for every path that builds an environment (`swelego env build`, `data synth`,
`data validate`, `data build`, the benchmarks): the Python version (requires-python,
classifiers, CI matrices, tox envlists, .python-version), the build backend and its
requirements, the install extras, test dependencies (test extras, tox/nox deps, dev
requirement files, pytest plugins named by addopts / ini keys / conftest and test imports),
the Debian packages a compiled extension needs (compiler, python3-dev, -dev libraries from
its #includes and `libraries=`), and the test command. Nothing here runs the repository's
code: setup.py is read as text. The result is an `EnvSpec`, recorded in the image's label;
`EnvOverrides` (CLI `--set key=value`, or a config's `env:` section) changes any part of it.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import re
import sys
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from swelego.config import doc_field
from swelego.errors import SwelegoError

BASE_DISTS = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
PYTHONS = {v: k for k, v in BASE_DISTS.items()}  # "3.11" -> "bookworm"
PREFERRED_PYTHON = "3.11"  # the default base; newer only when the project asks for it
# -rfEsxXp lists every outcome's line for swebench's parser, like -rA, but without -rA's PASSES
# section, whose rendering takes minutes on large suites (packaging 24.1: 27k tests, 16 s with
# these flags, over 10 min with -rA). One test module that cannot be imported (an optional
# dependency, say) must not stop the rest of the suite: pytest runs nothing after a collection
# error unless told to continue.
PYTEST_FLAGS = "-rfEsxXp -p no:cacheprovider --continue-on-collection-errors"
DEFAULT_TEST_CMD = f"pytest {PYTEST_FLAGS}"
DEFAULT_LOG_PARSER = "parse_log_pytest"
TEST_CMD = DEFAULT_TEST_CMD
TEST_EXTRAS = ("test", "tests", "testing")
DEV_EXTRAS = ("dev", "develop", "development")
# Options of a pytest configuration's addopts (or ini keys) and the plugin that provides them.
PYTEST_PLUGINS = {
    "--cov": "pytest-cov", "-n": "pytest-xdist", "--numprocesses": "pytest-xdist", "--dist": "pytest-xdist",
    "--timeout": "pytest-timeout", "--reruns": "pytest-rerunfailures", "--benchmark": "pytest-benchmark",
    "--doctest-plus": "pytest-doctestplus", "--mypy": "pytest-mypy", "--flake8": "pytest-flake8",
    "--randomly": "pytest-randomly", "--hypothesis": "hypothesis", "--ds": "pytest-django",
    "--mpl": "pytest-mpl", "--remote-data": "pytest-remotedata", "--black": "pytest-black",
    "--isort": "pytest-isort", "--env": "pytest-env", "--html": "pytest-html", "--ruff": "pytest-ruff",
    "--snapshot-update": "syrupy", "--memray": "pytest-memray", "--codspeed": "pytest-codspeed",
}
PYTEST_INI_PLUGINS = {
    "asyncio_mode": "pytest-asyncio", "asyncio_default_fixture_loop_scope": "pytest-asyncio",
    "timeout": "pytest-timeout", "DJANGO_SETTINGS_MODULE": "pytest-django", "env": "pytest-env",
    "mock_use_standalone_module": "pytest-mock", "trio_mode": "pytest-trio", "mypy-testing": "pytest-mypy-testing",
    "flake8-max-line-length": "pytest-flake8", "doctest_plus": "pytest-doctestplus", "mpl-baseline-path": "pytest-mpl",
    "django_find_project": "pytest-django", "required_plugins": "",
}
# Modules that tests import (conftest.py and test files) and the distribution that provides
# them. Only these are added: an import of anything else may be a helper module of the
# project's own, and guessing a PyPI name for it would break the download.
TEST_IMPORTS = {
    "hypothesis": "hypothesis", "mock": "mock", "freezegun": "freezegun", "responses": "responses",
    "requests_mock": "requests-mock", "pytest_mock": "pytest-mock", "pytest_asyncio": "pytest-asyncio",
    "pytest_lazyfixture": "pytest-lazy-fixture", "pytest_benchmark": "pytest-benchmark",
    "pytest_httpserver": "pytest-httpserver", "pytest_cases": "pytest-cases", "pytest_subtests": "pytest-subtests",
    "testfixtures": "testfixtures", "parameterized": "parameterized", "ddt": "ddt", "flaky": "flaky",
    "sybil": "sybil", "yaml": "pyyaml", "dateutil": "python-dateutil", "pytz": "pytz", "six": "six",
    "attr": "attrs", "simplejson": "simplejson", "toml": "toml", "tomli": "tomli", "jsonschema": "jsonschema",
    "dirty_equals": "dirty-equals", "inline_snapshot": "inline-snapshot", "syrupy": "syrupy",
    "time_machine": "time-machine", "faker": "faker", "pretend": "pretend", "pyfakefs": "pyfakefs",
    "typing_extensions": "typing-extensions", "trio": "trio", "anyio": "anyio", "numpy": "numpy",
    "docutils": "docutils", "pygments": "pygments", "trustme": "trustme", "pytest_timeout": "pytest-timeout",
    "coverage": "coverage", "nose2": "nose2", "importlib_metadata": "importlib-metadata", "py": "py",
    "pexpect": "pexpect", "psutil": "psutil", "immutables": "immutables", "sortedcontainers": "sortedcontainers",
    "pyparsing": "pyparsing", "packaging": "packaging", "cloudpickle": "cloudpickle", "execnet": "execnet",
    "xdist": "pytest-xdist", "pytest_cov": "pytest-cov", "pytest_randomly": "pytest-randomly",
    "pytest_trio": "pytest-trio", "pytest_django": "pytest-django", "pytest_env": "pytest-env",
    "pytest_rerunfailures": "pytest-rerunfailures", "pytest_doctestplus": "pytest-doctestplus",
}
# Fixtures and markers that only a plugin defines.
TEST_FIXTURES = {"mocker": "pytest-mock", "benchmark": "pytest-benchmark", "httpserver": "pytest-httpserver",
                 "snapshot": "syrupy", "subtests": "pytest-subtests", "freezer": "pytest-freezer"}
TEST_MARKERS = {"asyncio": "pytest-asyncio", "timeout": "pytest-timeout", "benchmark": "pytest-benchmark",
                "flaky": "flaky", "trio": "pytest-trio", "django_db": "pytest-django", "freeze_time": "pytest-freezer"}
# Development tools that dev requirement files list but tests do not need.
NOT_FOR_TESTS = {
    "black", "flake8", "isort", "mypy", "pre-commit", "ruff", "pylint", "sphinx", "twine", "tox", "nox", "build",
    "wheel", "bump2version", "bumpversion", "check-manifest", "readme-renderer", "ipython", "ipdb", "pip-tools",
    "towncrier", "codecov", "coveralls", "pyupgrade", "autopep8", "yapf", "doc8", "mkdocs", "furo", "flit",
    "setuptools", "hatch", "hatchling", "poetry", "pdm", "setuptools-scm", "releases", "jupyter", "notebook",
    "pyright", "bandit", "safety", "commitizen", "bump-my-version", "pydocstyle", "pycodestyle", "pyflakes",
    "invoke", "nbsphinx", "myst-parser", "zest-releaser", "wheel-inspect", "pyroma", "vulture",
}
NOT_FOR_TESTS_PREFIXES = ("sphinx", "mkdocs", "flake8-", "types-", "mypy-", "pytest-mypy", "pylint-")
DEV_REQ_FILES = ("requirements-dev*.txt", "requirements_dev*.txt", "dev-requirements*.txt", "requirements/dev*.txt")
TEST_REQ_FILES = ("requirements-test*.txt", "requirements_test*.txt", "test-requirements*.txt",
                  "test_requirements*.txt", "requirements/test*.txt", "tests/requirements*.txt")
# Compiled extensions: what any C build needs, and the -dev package of common headers and
# `libraries=[...]` names (Debian names, the same in bullseye, bookworm and trixie).
C_TOOLCHAIN = ("gcc", "libc6-dev", "python3-dev")
CXX_TOOLCHAIN = ("g++",)
HEADER_PACKAGES = {
    "zlib.h": "zlib1g-dev", "ffi.h": "libffi-dev", "openssl/ssl.h": "libssl-dev", "openssl/evp.h": "libssl-dev",
    "libxml/parser.h": "libxml2-dev", "libxml/tree.h": "libxml2-dev", "libxslt/xslt.h": "libxslt1-dev",
    "yaml.h": "libyaml-dev", "jpeglib.h": "libjpeg-dev", "png.h": "libpng-dev", "sqlite3.h": "libsqlite3-dev",
    "bzlib.h": "libbz2-dev", "lzma.h": "liblzma-dev", "libpq-fe.h": "libpq-dev", "curl/curl.h": "libcurl4-openssl-dev",
    "gmp.h": "libgmp-dev", "mpfr.h": "libmpfr-dev", "uv.h": "libuv1-dev", "zstd.h": "libzstd-dev",
    "lz4.h": "liblz4-dev", "snappy-c.h": "libsnappy-dev", "readline/readline.h": "libreadline-dev",
    "ncurses.h": "libncurses-dev", "curses.h": "libncurses-dev", "expat.h": "libexpat1-dev",
    "uuid/uuid.h": "uuid-dev", "krb5.h": "libkrb5-dev", "sasl/sasl.h": "libsasl2-dev", "ldap.h": "libldap2-dev",
    "mysql.h": "default-libmysqlclient-dev", "hdf5.h": "libhdf5-dev", "fftw3.h": "libfftw3-dev",
    "cblas.h": "libopenblas-dev", "lapacke.h": "liblapacke-dev", "magic.h": "libmagic-dev", "pcre.h": "libpcre3-dev",
    "gdbm.h": "libgdbm-dev", "db.h": "libdb-dev", "systemd/sd-daemon.h": "libsystemd-dev", "cairo.h": "libcairo2-dev",
    "freetype/freetype.h": "libfreetype-dev", "ft2build.h": "libfreetype-dev", "tiffio.h": "libtiff-dev",
    "webp/decode.h": "libwebp-dev", "sodium.h": "libsodium-dev", "zmq.h": "libzmq3-dev", "xxhash.h": "libxxhash-dev",
    "brotli/decode.h": "libbrotli-dev", "libdeflate.h": "libdeflate-dev", "blosc.h": "libblosc-dev",
    "archive.h": "libarchive-dev", "pcap.h": "libpcap-dev", "libusb-1.0/libusb.h": "libusb-1.0-0-dev",
    "alsa/asoundlib.h": "libasound2-dev", "portaudio.h": "portaudio19-dev", "geos_c.h": "libgeos-dev",
    "proj.h": "libproj-dev", "gsl/gsl_math.h": "libgsl-dev", "leveldb/c.h": "libleveldb-dev",
    "rocksdb/c.h": "librocksdb-dev", "re2/re2.h": "libre2-dev", "libmemcached/memcached.h": "libmemcached-dev",
}
LIBRARY_PACKAGES = {
    "z": "zlib1g-dev", "ffi": "libffi-dev", "ssl": "libssl-dev", "crypto": "libssl-dev", "xml2": "libxml2-dev",
    "xslt": "libxslt1-dev", "exslt": "libxslt1-dev", "yaml": "libyaml-dev", "jpeg": "libjpeg-dev", "png": "libpng-dev",
    "sqlite3": "libsqlite3-dev", "bz2": "libbz2-dev", "lzma": "liblzma-dev", "pq": "libpq-dev", "gmp": "libgmp-dev",
    "mpfr": "libmpfr-dev", "uv": "libuv1-dev", "zstd": "libzstd-dev", "lz4": "liblz4-dev", "snappy": "libsnappy-dev",
    "readline": "libreadline-dev", "ncurses": "libncurses-dev", "expat": "libexpat1-dev", "uuid": "uuid-dev",
    "magic": "libmagic-dev", "pcre": "libpcre3-dev", "sodium": "libsodium-dev", "zmq": "libzmq3-dev",
    "curl": "libcurl4-openssl-dev", "m": "", "pthread": "", "dl": "", "rt": "", "stdc++": "",
}
# meson / pkg-config dependency names.
PKGCONFIG_PACKAGES = {"zlib": "zlib1g-dev", "libffi": "libffi-dev", "openssl": "libssl-dev", "libxml-2.0": "libxml2-dev",
                      "yaml-0.1": "libyaml-dev", "sqlite3": "libsqlite3-dev", "libzstd": "libzstd-dev",
                      "liblz4": "liblz4-dev", "openblas": "libopenblas-dev", "blas": "libopenblas-dev",
                      "lapack": "liblapack-dev", "libcurl": "libcurl4-openssl-dev", "gmp": "libgmp-dev"}
BACKEND_PACKAGES = {
    "scikit_build_core": ("cmake", "ninja-build", "pkg-config"), "skbuild": ("cmake", "ninja-build", "pkg-config"),
    "mesonpy": ("ninja-build", "pkg-config"), "pybind11": (), "cmake": ("cmake",),
}
_C_SUFFIXES = {".c", ".h"}
_CXX_SUFFIXES = {".cpp", ".cc", ".cxx", ".hpp", ".hh", ".hxx"}
_SKIP_DIRS = {".git", "node_modules", ".tox", ".nox", "build", "dist", ".eggs", "site-packages", "venv", ".venv"}


@dataclass
class EnvSpec:
    """How to build and test a repository's environment (inferred, then possibly repaired).

    python: interpreter version, one of the offline bases' (3.9 bullseye, 3.11 bookworm, 3.13 trixie).
    base_image: a base other than the Debian one of `python` (a registry image); "" = that one.
    extras: install extras of the project whose requirements are preinstalled (test extras always).
    extra_deps: pip requirements added to what `build_env_image` derives from the project itself.
    system_packages: Debian packages (downloaded on the host, `dpkg -i` in the build).
    setup: shell commands run in /testbed after the install, during the build (no network).
    test_cmd: runs the whole suite; its output must suit `log_parser`.
    log_parser: a key of swebench's PARSER_REGISTRY.
    build_backend / build_requires: what the project builds with (read from pyproject.toml).
    evidence: where each choice came from, for people reading the records (not part of the key).
    """

    python: str = PREFERRED_PYTHON
    extra_deps: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    test_cmd: str = TEST_CMD
    log_parser: str = DEFAULT_LOG_PARSER
    system_packages: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    base_image: str = ""
    build_backend: str = field(default="", compare=False)
    build_requires: tuple[str, ...] = field(default=(), compare=False)
    evidence: dict = field(default_factory=dict, compare=False)

    _TUPLES = ("extra_deps", "setup", "system_packages", "extras", "build_requires")

    @property
    def base(self) -> str:
        return self.base_image or PYTHONS.get(self.python, PYTHONS[PREFERRED_PYTHON])

    def to_json(self) -> dict:
        d = asdict(self)
        for k in self._TUPLES:
            d[k] = list(d[k])
        return d

    @classmethod
    def from_json(cls, d: dict) -> EnvSpec:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in cls._TUPLES:
            if k in d:
                d[k] = tuple(d[k] or ())
        return cls(**d)

    def build_fields(self) -> dict:
        """What goes into the image (everything but the evidence and what is only reported)."""
        d = self.to_json()
        for k in ("evidence", "build_backend", "build_requires"):
            d.pop(k)
        return d

    def summary(self) -> str:
        """One line for people: the decision, as `env build` prints it."""
        parts = [f"python {self.python}" + (f" ({self.base_image})" if self.base_image else "")]
        if self.build_backend:
            parts.append(f"backend {self.build_backend}")
        if self.extras:
            parts.append(f"extras {','.join(self.extras)}")
        if self.extra_deps:
            parts.append(f"deps {', '.join(self.extra_deps)}")
        if self.system_packages:
            parts.append(f"apt {', '.join(self.system_packages)}")
        if self.setup:
            parts.append(f"setup {'; '.join(self.setup)}")
        parts.append(f"tests `{self.test_cmd}`")
        return "; ".join(parts)


def dependency_key(spec: EnvSpec, requirements: list[str]) -> str:
    """Tasks whose key is equal share one environment image."""
    data = {**spec.build_fields(), "extra_deps": sorted(spec.extra_deps), "requirements": sorted(requirements)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# -- overrides --------------------------------------------------------------------------------
@dataclass
class EnvOverrides:
    """Changes to the inferred environment (every field: None = keep the inferred value).

    On the command line: `--set key=value` (lists comma-separated; `key+=value` appends to
    the inferred list). In a config file: an `env:` mapping with the same keys."""

    python: str | None = doc_field("Interpreter version: 3.9 (bullseye), 3.11 (bookworm) or 3.13 (trixie).",
                                   default=None)
    base_image: str | None = doc_field("A base image instead of the Debian one of `python` (a registry name "
                                       "or bullseye|bookworm|trixie).", default=None)
    extras: list[str] | None = doc_field("Install extras whose requirements are preinstalled.", default=None)
    extra_deps: list[str] | None = doc_field("Extra pip requirements to preinstall.", default=None)
    system_packages: list[str] | None = doc_field("Debian packages installed offline before the project.",
                                                  default=None)
    setup: list[str] | None = doc_field("Shell commands run in /testbed after the install.", default=None)
    test_cmd: str | None = doc_field("The command that runs the whole suite.", default=None)
    log_parser: str | None = doc_field("swebench log parser of the test command's output.", default=None)
    append: dict = field(default_factory=dict, metadata={"help": "Values appended to the inferred lists "
                                                                 "(what `key+=value` sets)."})

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> EnvOverrides:
        """`key=value` / `key+=value` strings; SwelegoError naming the bad one."""
        o = cls()
        names = [f.name for f in fields(cls) if f.name != "append"]
        for item in items:
            m = re.match(r"^\s*([a-z_]+)\s*(\+?=)(.*)$", item, re.S)
            if not m or m.group(1) not in names:
                raise SwelegoError(f"--set {item!r}: expected key=value with key one of {', '.join(names)}")
            key, op, value = m.group(1), m.group(2), m.group(3).strip()
            is_list = key in ("extras", "extra_deps", "system_packages", "setup")
            if op == "+=" and not is_list:
                raise SwelegoError(f"--set {item!r}: += works on list keys only (extras, extra_deps, "
                                   "system_packages, setup)")
            if is_list:
                parts = [value] if key == "setup" else [v.strip() for v in value.split(",") if v.strip()]
                if op == "+=":
                    o.append.setdefault(key, []).extend(parts)
                else:
                    setattr(o, key, parts)
            else:
                if key == "python" and value not in PYTHONS:
                    raise SwelegoError(f"--set {item!r}: python must be one of {', '.join(sorted(PYTHONS))}")
                setattr(o, key, value)
        return o

    @classmethod
    def from_mapping(cls, data: dict | EnvOverrides | None) -> EnvOverrides:
        if isinstance(data, EnvOverrides):
            return data
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise SwelegoError(f"unknown env override(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def apply(self, spec: EnvSpec) -> EnvSpec:
        d = spec.to_json()
        changed = []
        for f in fields(self):
            if f.name == "append":
                continue
            v = getattr(self, f.name)
            if v is not None:
                if f.name == "base_image" and v in BASE_DISTS:
                    d["python"], v = BASE_DISTS[v], ""
                d[f.name] = list(v) if isinstance(v, list | tuple) else v
                changed.append(f.name)
        for k, vals in self.append.items():
            d[k] = list(dict.fromkeys([*d[k], *vals]))
            changed.append(k)
        if changed:
            d["evidence"] = {**d["evidence"], "overridden": ", ".join(changed)}
        return EnvSpec.from_json(d)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


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
    if not spec:
        m = re.search(r"^Requires-Python:\s*(.+)$", _read(tree / "PKG-INFO"), re.M)
        spec = m.group(1) if m else None
    return (spec or "").strip() if isinstance(spec, str) else ""


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


def older_python(python: str) -> str | None:
    """The next older available interpreter (the repair for 'Python too new')."""
    older = [v for v in sorted(PYTHONS, key=Version) if Version(v) < Version(python)]
    return older[-1] if older else None


def pytest_config(tree: Path) -> tuple[str, dict[str, str]]:
    """(where, options) of the pytest configuration pytest itself would pick first."""
    for name, section in (("pytest.ini", "pytest"), (".pytest.ini", "pytest"), ("pyproject.toml", None),
                          ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        if name == "pyproject.toml":
            opts = ((_toml(tree).get("tool") or {}).get("pytest") or {}).get("ini_options")
            if isinstance(opts, dict):
                return name, {k: " ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in opts.items()}
            continue
        cp = _ini(_read(tree / name))
        if cp.has_section(section):
            return name, dict(cp.items(section))
    return "", {}


def _wanted_requirement(line: str) -> str | None:
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith(("#", "-", ".", "/", "{")) or "://" in line:
        return None
    try:
        r = Requirement(line)
    except InvalidRequirement:
        return None
    name = r.name.lower().replace("_", "-")
    if name in NOT_FOR_TESTS or name.startswith(NOT_FOR_TESTS_PREFIXES):
        return None
    return line


def _requirement_names(lines: list[str]) -> list[str]:
    return [r for line in lines if (r := _wanted_requirement(line))]


def is_dev_tool(requirement: str) -> bool:
    try:
        name = Requirement(requirement).name.lower().replace("_", "-")
    except InvalidRequirement:
        return False
    return name in NOT_FOR_TESTS or name.startswith(NOT_FOR_TESTS_PREFIXES)


def _files(tree: Path, suffixes: set[str], limit: int = 4000):
    n = 0
    stack = [tree]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.is_dir() and not p.is_symlink():
                if p.name not in _SKIP_DIRS:
                    stack.append(p)
            elif p.suffix in suffixes and p.is_file():
                n += 1
                if n > limit:
                    return
                yield p


def _is_test_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    parts = rel.split("/")[:-1]
    return (name.startswith("test") or name.endswith("_test.py") or name == "conftest.py"
            or any(p in ("test", "tests", "testing") for p in parts))


def _declared_extras(tree: Path, pyproject: dict) -> set[str]:
    names = set((pyproject.get("project") or {}).get("optional-dependencies") or {})
    cp = _ini(_read(tree / "setup.cfg"))
    if cp.has_section("options.extras_require"):
        names |= set(cp.options("options.extras_require"))
    m = re.search(r"extras_require\s*=\s*(\{.*?\})", _read(tree / "setup.py"), re.S)
    if m:
        names |= set(re.findall(r"['\"]([A-Za-z0-9][\w.-]*)['\"]\s*:", m.group(1)))
    poetry = ((pyproject.get("tool") or {}).get("poetry") or {}).get("extras") or {}
    names |= set(poetry)
    names |= set(re.findall(r"^Provides-Extra:\s*(\S+)", _read(tree / "PKG-INFO"), re.M))
    return {n.lower() for n in names}


def top_level_names(tree: Path) -> set[str]:
    """Names importable from the project itself (packages, modules, src/ layout)."""
    names = set()
    for root in (tree, tree / "src", tree / "lib"):
        if root.is_dir():
            for p in root.iterdir():
                if p.is_dir() or p.suffix in (".py", ".pyx", ".so"):
                    names.add(p.stem if p.is_file() else p.name)
    for d in ("tests", "test", "testing"):
        if (tree / d).is_dir():
            names |= {p.stem for p in (tree / d).rglob("*.py")}
    return names


def _test_needs(tree: Path) -> tuple[list[str], list[str], bool]:
    """(distributions, why) that the test files and conftest.py import or use, and whether
    a test imports the tests directory as a package (`from tests.x import ...`)."""
    own = top_level_names(tree)
    found: dict[str, str] = {}
    imports_tests_pkg = False
    for f in _files(tree, {".py"}, limit=3000):
        rel = str(f.relative_to(tree))
        if not _is_test_file(rel):
            continue
        text = _read(f)
        if len(text) > 400_000:
            continue
        try:
            mod = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(mod):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                for a in node.args.args:
                    if a.arg in TEST_FIXTURES:
                        found.setdefault(TEST_FIXTURES[a.arg], f"fixture `{a.arg}` in {rel}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "mark" and node.attr in TEST_MARKERS:
                found.setdefault(TEST_MARKERS[node.attr], f"marker `{node.attr}` in {rel}")
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytest_plugins"
                                                      for t in node.targets):
                for s in ast.walk(node.value):
                    if isinstance(s, ast.Constant) and isinstance(s.value, str):
                        names.append(s.value)
            for name in names:
                top = name.split(".")[0]
                if top in ("tests", "test") and top in own:
                    imports_tests_pkg = True
                if top in own or top in sys.stdlib_module_names:
                    continue
                if top in TEST_IMPORTS:
                    found.setdefault(TEST_IMPORTS[top], f"import {top} in {rel}")
    return list(found), [f"{d}: {w}" for d, w in found.items()], imports_tests_pkg


ODD_TEST_FILES = "test*.py *_test.py tests.py *_tests.py"


def _unmatched_test_files(tree: Path) -> list[str]:
    """Test modules under a test directory that pytest's default `python_files` (test_*.py,
    *_test.py) would skip (tests/tests.py, test/testfoo.py)."""
    found = []
    for d in ("tests", "test", "testing"):
        for f in sorted((tree / d).glob("*.py")) if (tree / d).is_dir() else []:
            if f.name.startswith("test_") or f.name.endswith("_test.py"):
                continue
            if f.name != "__init__.py" and f.name != "conftest.py" and re.match(r"(test.*|.*_?tests?)\.py$", f.name):
                found.append(f"{d}/{f.name}")
    return found


def _nox_deps(tree: Path) -> list[str]:
    text = _read(tree / "noxfile.py")
    deps: list[str] = []
    for call in re.findall(r"session\.install\(([^)]*)\)", text):
        for s in re.findall(r"['\"]([^'\"]+)['\"]", call):
            if r := _wanted_requirement(s):
                deps.append(r)
    return deps


def compiled_extension_needs(tree: Path, pyproject: dict) -> tuple[list[str], list[str]]:
    """(Debian packages, evidence) a build of the project's compiled extensions needs, read
    statically: ext_modules / Extension( / cythonize in setup.py, a compiling backend, C/C++
    and Cython sources beside the Python package, their #includes and `libraries=`."""
    setup_py = _read(tree / "setup.py")
    backend = str((pyproject.get("build-system") or {}).get("build-backend") or "")
    requires = " ".join(str(r) for r in (pyproject.get("build-system") or {}).get("requires") or [])
    why: list[str] = []
    pkgs: list[str] = []
    if re.search(r"\bext_modules\b|\bExtension\s*\(|\bcythonize\s*\(|\bPybind11Extension\b|\bCFFI\b|cffi_modules",
                 setup_py):
        why.append("setup.py declares compiled extensions")
    top = backend.split(".")[0].replace("-", "_")
    if top in BACKEND_PACKAGES or re.search(r"scikit-build|meson-python|pybind11|cython|cffi", requires, re.I):
        why.append(f"build system {backend or requires}")
        for key, extra in BACKEND_PACKAGES.items():
            if key == top or key.replace("_", "-") in requires.replace("_", "-"):
                pkgs += extra
    if (tree / "CMakeLists.txt").is_file() and "cmake" not in pkgs and top in ("scikit_build_core", "skbuild"):
        pkgs.append("cmake")
    if (tree / "meson.build").is_file():
        for dep in re.findall(r"dependency\(\s*['\"]([^'\"]+)['\"]", _read(tree / "meson.build")):
            if deb := PKGCONFIG_PACKAGES.get(dep):
                pkgs.append(deb)
                why.append(f"meson dependency {dep}")
    sources = list(_files(tree, _C_SUFFIXES | _CXX_SUFFIXES | {".pyx", ".pxd"}, limit=2000))
    if sources and not why and (setup_py or top in ("setuptools", "")):
        # C sources next to a setuptools project whose setup.py we cannot read (generated, say)
        if any(p.suffix == ".pyx" for p in sources) or re.search(r"\.c['\"]|\.pyx['\"]", setup_py):
            why.append("C/Cython sources in the tree")
    if not why:
        return [], []
    cxx = any(p.suffix in _CXX_SUFFIXES for p in sources) or re.search(r"language\s*=\s*['\"]c\+\+", setup_py)
    pkgs = [*C_TOOLCHAIN, *(CXX_TOOLCHAIN if cxx else ()), *pkgs]
    headers = set()
    for p in sources:
        if p.suffix in (".pxd", ".pyx"):
            headers |= set(re.findall(r'cdef extern from\s+["<]([^">]+)[">]', _read(p)))
        else:
            headers |= set(re.findall(r'^\s*#\s*include\s*<([^>]+)>', _read(p), re.M))
    vendored = {str(p.relative_to(tree)).split("/")[-1] for p in sources}
    for h in sorted(headers):
        if (deb := HEADER_PACKAGES.get(h)) and h.split("/")[-1] not in vendored:
            pkgs.append(deb)
            why.append(f"#include <{h}>")
    for lib in re.findall(r"libraries\s*=\s*\[([^\]]*)\]", setup_py):
        for name in re.findall(r"['\"]([\w+.-]+)['\"]", lib):
            if deb := LIBRARY_PACKAGES.get(name):
                pkgs.append(deb)
                why.append(f"links -l{name}")
    return list(dict.fromkeys(pkgs)), why


def infer_env(tree: Path) -> EnvSpec:
    """An EnvSpec for the repository checked out at `tree`."""
    tree = Path(tree)
    evidence: dict[str, str] = {}
    pyproject = _toml(tree)
    requires = requires_python(tree)
    listed = listed_pythons(tree)
    every = set().union(*listed.values())
    python, why = choose_python(requires, every)
    evidence["python"] = why + "".join(f"; {k}: {', '.join(sorted(v, key=Version))}" for k, v in listed.items() if v)

    system = pyproject.get("build-system") if isinstance(pyproject.get("build-system"), dict) else {}
    backend = str(system.get("build-backend") or ("setuptools.build_meta:__legacy__" if (tree / "setup.py").is_file()
                                                   else ""))
    build_requires = tuple(r for r in system.get("requires") or [] if isinstance(r, str)) or (
        ("setuptools>=40.8.0", "wheel") if backend.startswith("setuptools") else ())
    if backend:
        evidence["build"] = f"{backend} ({', '.join(build_requires) or 'no requirements'})"

    extra: list[str] = []

    def add(reqs, where: str) -> None:
        new = [r for r in reqs if r and r not in extra]
        if new:
            evidence[where] = ", ".join(new)
            extra.extend(new)

    where, opts = pytest_config(tree)
    addopts = opts.get("addopts", "")
    plugins = [plugin for flag, plugin in PYTEST_PLUGINS.items()
               if re.search(rf"(^|\s){re.escape(flag)}(\s|=|$)", addopts)]
    for mod in re.findall(r"(?:^|\s)-p\s*([\w.]+)", addopts):
        if not mod.startswith("no:") and (dist := TEST_IMPORTS.get(mod.split(".")[0])):
            plugins.append(dist)
    plugins += [plugin for key, plugin in PYTEST_INI_PLUGINS.items() if key in opts and plugin]
    plugins += [r for r in opts.get("required_plugins", "").split() if _wanted_requirement(r)]
    add(list(dict.fromkeys(plugins)), f"pytest plugins ({where})")
    tox = _ini(_read(tree / "tox.ini"))
    if tox.has_section("testenv"):
        add(_requirement_names(tox.get("testenv", "deps", fallback="").splitlines()), "tox deps")
    add(_nox_deps(tree), "nox deps")
    for pattern in DEV_REQ_FILES:
        for f in sorted(tree.glob(pattern)):
            add(_requirement_names(_read(f).splitlines()), f.name)
    test_files = [str(f.relative_to(tree)) for pattern in TEST_REQ_FILES for f in sorted(tree.glob(pattern))]
    if test_files:
        evidence["test requirement files"] = ", ".join(test_files) + " (preinstalled)"
    used, used_why, imports_tests_pkg = _test_needs(tree)
    add(used, "test imports")
    if used_why:
        evidence["test imports"] = "; ".join(used_why)

    declared = _declared_extras(tree, pyproject)
    extras = tuple(e for e in TEST_EXTRAS if e in declared)
    if not extras:
        extras = tuple(e for e in DEV_EXTRAS if e in declared)[:1]
    if extras:
        evidence["extras"] = f"{', '.join(extras)} (declared: {', '.join(sorted(declared))})"

    system_packages, sys_why = compiled_extension_needs(tree, pyproject)
    if system_packages:
        evidence["system packages"] = "; ".join(sys_why)

    test_cmd = DEFAULT_TEST_CMD
    if "python_files" not in opts and (odd := _unmatched_test_files(tree)):
        test_cmd = f"{test_cmd} -o python_files='{ODD_TEST_FILES}'"
        evidence["test command"] = f"test files pytest would not collect by name: {', '.join(odd[:3])}"
    if re.search(r"--color[= ]yes|--code-highlight[= ]yes", addopts):
        # swebench's parser reads plain `PASSED test` lines: colour codes would hide every result
        test_cmd = f"{test_cmd} --color=no --code-highlight=no"
        evidence["test command"] = f"{where} forces colour (addopts); turned off for the log parser"
    if imports_tests_pkg:
        test_cmd = "python -m " + test_cmd
        evidence["test command"] = "tests import the tests directory as a package: python -m pytest (cwd on sys.path)"
    return EnvSpec(python=python, extra_deps=tuple(extra), extras=extras, system_packages=tuple(system_packages),
                   test_cmd=test_cmd, build_backend=backend, build_requires=build_requires, evidence=evidence)
