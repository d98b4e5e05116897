"""Untrusted build code runs only in sandboxes. Repositories whose setup.py, or in-tree PEP
517 backend, and whose sdist-only dependency's setup.py leave a marker file wherever they
run: after `env build`, `data synth` and `data validate` no marker exists on the host, while
the environments still build, hold the dependencies only that code declares, and pass their
tests (the marker inside the image shows that the code did run, in the sandbox)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import TEST_NS, git

from swelego.errors import SourceError
from swelego.sandbox import DockerSandbox
from swelego.sandbox.images import static_metadata
from swelego.sandbox.index import pip_config
from swelego.sandbox.sources import download_sdist

SWELEGO = str(Path(sys.executable).with_name("swelego"))
MARK = f"swelego-ran-{uuid.uuid4().hex[:12]}"
DEP = "swelego-isodep"  # exists only as an sdist in a local find-links directory


def marker_code(spot: Path) -> str:
    """Python that writes the marker at `spot` (a unique host path), in /tmp and in $HOME,
    wherever it can (not in the working directory: that would dirty the image's tree)."""
    places = [str(spot / MARK), f"/tmp/{MARK}", os.path.expanduser(f"~/{MARK}")]
    return textwrap.dedent(f"""\
        import pathlib as _pl
        for _p in {places!r}:
            try:
                _pl.Path(_p).parent.mkdir(parents=True, exist_ok=True)
                _pl.Path(_p).write_text("build code ran here\\n")
            except OSError:
                pass
        """)


def host_markers(spot: Path, *trees: Path) -> list[str]:
    found = [p for p in (spot / MARK, Path("/tmp") / MARK, Path.home() / MARK) if p.exists()]
    for tree in trees:
        found += [p for p in tree.rglob(MARK)]
    return [str(p) for p in found]


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


CORE = """\
import six
import swelego_isodep


def scale(x, k):
    return x * k


def describe(x):
    return six.text_type(x) + swelego_isodep.SUFFIX


def clamp(x, lo, hi):
    if x < lo:
        return lo
    return x
"""
CORE_TESTS = """\
from isosetup import describe, scale


def test_scale():
    assert scale(3, 2) == 6
    assert scale(-1, 4) == -4


def test_describe():
    assert describe(5) == "5!"
"""
CLAMP_TEST = """

def test_clamp():
    from isosetup import clamp
    assert clamp(5, 0, 10) == 5
    assert clamp(-2, 0, 10) == 0
    assert clamp(20, 0, 10) == 10
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The marker spot, a find-links directory holding only the sdist of DEP, and two
    repositories: `isosetup` (setup.py, depends on six and DEP, with a fix commit for
    mine-git) and `isobackend` (in-tree backend, dependencies dynamic)."""
    root = tmp_path_factory.mktemp("isolation")
    spot = root / "spot"
    links = root / "links"
    links.mkdir()
    dep_files = {
        "setup.py": marker_code(spot) + f"from setuptools import setup\nsetup(name={DEP!r}, version='1.0', "
                                        "py_modules=['swelego_isodep'])\n",
        "swelego_isodep.py": "SUFFIX = '!'\n",
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {DEP}\nVersion: 1.0\n",
    }
    with tarfile.open(links / "swelego_isodep-1.0.tar.gz", "w:gz") as tf:
        for rel, text in dep_files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"swelego_isodep-1.0/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

    setup_repo = root / "isosetup"
    setup_repo.mkdir()
    git("init", "-q", "-b", "main", cwd=setup_repo)
    write_tree(setup_repo, {
        "setup.py": marker_code(spot) + "from setuptools import setup\nsetup(name='isosetup', version='1.0', "
                                        f"packages=['isosetup'], install_requires=['six', {DEP!r}])\n",
        "isosetup/__init__.py": CORE, "tests/test_core.py": CORE_TESTS})
    commit_all(setup_repo, "Initial import")
    write_tree(setup_repo, {
        "isosetup/__init__.py": CORE.replace("        return lo\n", "        return lo\n    if x > hi:\n"
                                                                   "        return hi\n"),
        "tests/test_core.py": CORE_TESTS + CLAMP_TEST})
    commit_all(setup_repo, "Fix clamp for values above the range")

    backend_repo = root / "isobackend"
    backend_repo.mkdir()
    git("init", "-q", "-b", "main", cwd=backend_repo)
    write_tree(backend_repo, {
        "pyproject.toml": textwrap.dedent("""\
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "isobackend_build"
            backend-path = ["_build"]

            [project]
            name = "isobackend"
            version = "1.0"
            dynamic = ["dependencies"]

            [tool.setuptools]
            packages = ["isobackend"]

            [tool.setuptools.dynamic]
            dependencies = {file = ["requirements.txt"]}
            """),
        "_build/isobackend_build.py": marker_code(spot) + "from setuptools.build_meta import *  # noqa\n",
        "requirements.txt": "six\n",
        "isobackend/__init__.py": "import six\n\n\ndef shout(s):\n    return six.text_type(s).upper()\n",
        "tests/test_shout.py": "from isobackend import shout\n\n\ndef test_shout():\n    assert shout('a') == 'A'\n"})
    commit_all(backend_repo, "Initial import")

    env = {**os.environ, "SWELEGO_CACHE": str(root / "cache"),  # nothing built earlier is reused
           "PIP_FIND_LINKS": " ".join([*pip_config().find_links, str(links)])}
    return {"root": root, "spot": spot, "links": links, "setup": setup_repo, "backend": backend_repo, "env": env}


def swelego(world, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([SWELEGO, *args], capture_output=True, text=True, timeout=timeout, env=world["env"])


def assert_no_host_marker(world) -> None:
    assert host_markers(world["spot"], world["root"]) == []


# -- static reading and the index: no Docker ------------------------------------------------
def test_static_metadata_is_read_only_where_the_project_declares_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\ndependencies = ["six"]\n[project.optional-dependencies]\n'
        'test = ["pytest; python_version >= \'3.8\'"]\n')
    meta = static_metadata(tmp_path)
    assert meta == {"name": "p", "requires_dist": ["six", 'pytest; python_version >= "3.8" and extra == "test"']}
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\ndynamic = ["dependencies"]\n')
    assert static_metadata(tmp_path) is None
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = q\n[options]\ninstall_requires =\n    six\n    toolz>=1\n")
    assert static_metadata(tmp_path) == {"name": "q", "requires_dist": ["six", "toolz>=1"]}
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")  # may add anything
    assert static_metadata(tmp_path) is None


def test_sdist_comes_from_the_configured_index_with_its_hash_checked(tmp_path, monkeypatch):
    data = b"not really an archive"
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "demo_pkg-1.0.tar.gz").write_bytes(data)
    page = tmp_path / "simple" / "demo-pkg"
    page.mkdir(parents=True)
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "simple").as_uri())
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")

    def publish(sha: str) -> None:
        (page / "index.html").write_text(f'<a href="../../files/demo_pkg-1.0.tar.gz#sha256={sha}">x</a>\n')

    publish(hashlib.sha256(data).hexdigest())
    f, version = download_sdist("demo-pkg", "1.0", tmp_path / "cache")
    assert version == "1.0" and f.read_bytes() == data
    publish("0" * 64)
    with pytest.raises(SourceError) as e:
        download_sdist("demo-pkg", "1.0", tmp_path / "other-cache")
    assert "does not match" in str(e.value) and not (tmp_path / "other-cache" / f.name).exists()
    with pytest.raises(SourceError) as e:
        download_sdist("demo-pkg", "2.0", tmp_path / "cache")
    assert "no sdist of that version" in str(e.value) and "1.0" in str(e.value)


# -- the three commands on the real engine --------------------------------------------------
def test_env_build_runs_build_code_only_in_the_sandbox(world, client, base_image):
    r = swelego(world, "env", "build", str(world["setup"]), str(world["backend"]), "--namespace", TEST_NS,
                "--run-tests", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert_no_host_marker(world)
    rows = {json.loads(line)["repo"]: json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")}
    setup_env, backend_env = rows["isosetup"], rows["isobackend"]
    # the dependencies only the build code declares were found (in the sandbox) and installed
    assert {"six", DEP} <= set(setup_env["requirements"]) and "six" in backend_env["requirements"]
    assert setup_env["tests"]["passed"] == 3 and setup_env["tests"]["failed"] == 0
    assert backend_env["tests"]["passed"] == 1 and backend_env["tests"]["failed"] == 0
    for env, dist in ((setup_env, f"{DEP}==1.0"), (backend_env, "isobackend==1.0")):
        with DockerSandbox(env["image"], client=client) as sb:
            ran = sb.exec(f"test -e {world['spot'] / MARK} && echo ran-in-image")
            pkgs = sb.exec("python -c 'import six' && pip list --format=freeze")
        assert "ran-in-image" in ran.output  # the build code did run: in the image build
        assert pkgs.ok and dist in pkgs.output, pkgs.output


def test_data_synth_runs_build_code_only_in_the_sandbox(world, base_image):
    out = world["root"] / "synth"
    r = swelego(world, "data", "synth", str(world["setup"]), "--out", str(out), "--namespace", TEST_NS,
                "--strategies", "procedural", "--max-candidates", "4")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert_no_host_marker(world)
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["kept_rows"] >= 1, funnel


def test_data_validate_runs_build_code_only_in_the_sandbox(world, base_image):
    mined, out = world["root"] / "mined", world["root"] / "tasks"
    r = swelego(world, "data", "mine-git", str(world["setup"]), "--out", str(mined), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    r = swelego(world, "data", "validate", str(mined), "--out", str(out), "--namespace", TEST_NS,
                "--baseline-runs", "1", "--confirm-runs", "1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert_no_host_marker(world)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["funnel"]["kept"] == 1, summary
