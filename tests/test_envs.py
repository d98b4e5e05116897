"""Environments: the one inference (read from files, never run), overrides, repair rules and
the failure taxonomy; on the real engine, `env build` of a package whose pytest addopts need a
plugin, and a package whose C extension is required: Debian packages installed offline, its
suite passing, resets that keep the install's .so files but nothing an adversary planted, and
a synthetic task on it that the official swebench harness grades resolved with its gold patch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TEST_NS

from swelego.errors import SwelegoError
from swelego.harness import evaluate_official, run_tests
from swelego.sandbox import DockerSandbox
from swelego.sandbox.envrepair import FAILURE_KINDS, classify_failure, rule_repair
from swelego.sandbox.envspec import EnvOverrides, EnvSpec, infer_env
from swelego.sandbox.images import build_env_image
from swelego.schema import load_dataset

SWELEGO = str(Path(sys.executable).with_name("swelego"))
C_PACKAGE = "pypi:bitarray==2.9.2"  # a 130 kB sdist whose package imports its C extension unconditionally


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def test_inference_reads_plugins_test_imports_extras_and_compiled_needs_without_running_setup_py(tmp_path):
    marker = tmp_path / "setup-py-ran"
    tree = _tree(tmp_path / "proj", {
        "setup.py": f"""\
            open({str(marker)!r}, "w").write("executed")  # must never run on the host
            from setuptools import setup, Extension
            setup(name="proj", python_requires=">=3.8",
                  extras_require={{"test": ["pytest"], "docs": ["sphinx"]}},
                  ext_modules=[Extension("proj._speed", ["src/speed.c"], libraries=["ffi"])])
            """,
        "src/speed.c": "#include <Python.h>\n#include <zlib.h>\n#include \"local.h\"\n",
        "src/local.h": "",
        "setup.cfg": "[tool:pytest]\naddopts = --cov=proj -p pytest_randomly\nasyncio_mode = auto\n",
        "tests/conftest.py": "import hypothesis\nimport helpers\n",
        "tests/helpers.py": "",
        "tests/test_a.py": """\
            import pytest
            from tests.helpers import x

            @pytest.mark.timeout(5)
            def test_one(mocker):
                pass
            """,
    })
    spec = infer_env(tree)
    assert not marker.exists()
    for dep in ("pytest-cov", "pytest-randomly", "pytest-asyncio", "hypothesis", "pytest-mock", "pytest-timeout"):
        assert dep in spec.extra_deps, (dep, spec.extra_deps)
    assert "helpers" not in " ".join(spec.extra_deps)  # the project's own module is no PyPI package
    assert spec.extras == ("test",)
    assert {"gcc", "python3-dev", "zlib1g-dev", "libffi-dev"} <= set(spec.system_packages)
    assert spec.build_backend.startswith("setuptools")
    assert spec.test_cmd.startswith("python -m pytest ")  # tests import the tests package
    assert "system packages" in spec.evidence and "test imports" in spec.evidence
    pure = infer_env(_tree(tmp_path / "pure", {"pyproject.toml": '[project]\nname = "p"\n', "p.py": ""}))
    assert pure.system_packages == () and pure.test_cmd.startswith("pytest ")


def test_overrides_parse_apply_and_refuse_bad_keys():
    o = EnvOverrides.parse(["python=3.9", "extra_deps+=six,attrs", "system_packages=libyaml-dev",
                            "test_cmd=pytest -rA tests"])
    spec = o.apply(EnvSpec(extra_deps=("freezegun",), system_packages=("gcc",)))
    assert spec.python == "3.9" and spec.base == "bullseye"
    assert spec.extra_deps == ("freezegun", "six", "attrs") and spec.system_packages == ("libyaml-dev",)
    assert spec.test_cmd == "pytest -rA tests" and "overridden" in spec.evidence
    assert EnvOverrides.parse(["base_image=python:3.12-slim"]).apply(EnvSpec()).base == "python:3.12-slim"
    for bad in ("colour=red", "python=2.7", "test_cmd+=x", "no-equals"):
        with pytest.raises(SwelegoError):
            EnvOverrides.parse([bad])
    assert EnvOverrides.from_mapping({"python": "3.13"}).apply(EnvSpec()).base == "trixie"


@pytest.mark.parametrize("stage,log,field,wanted,kind", [
    ("tests", "E   ModuleNotFoundError: No module named 'yaml'", "extra_deps", "pyyaml", "missing_python_dependency"),
    ("build", "src/x.c:3:10: fatal error: zlib.h: No such file or directory", "system_packages", "zlib1g-dev",
     "missing_system_library"),
    ("build", "error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory", "system_packages", "gcc",
     "missing_system_library"),
    ("tests", "E   ModuleNotFoundError: No module named 'distutils'", "python", "3.11", "missing_python_dependency"),
    ("tests", "pytest: error: unrecognized arguments: --cov=proj", "extra_deps", "pytest-cov", "collection_error"),
    ("tests", "E       fixture 'mocker' not found", "extra_deps", "pytest-mock", "other"),
])
def test_rules_repair_from_the_log(stage, log, field, wanted, kind):
    spec = EnvSpec(python="3.13")
    new, rule = rule_repair(spec, stage, log)
    got = getattr(new, field)
    assert (wanted in got) if isinstance(got, tuple) else got == wanted, (rule, got)
    assert classify_failure(stage, "", log) == kind
    assert rule_repair(new, stage, log) is None or rule_repair(new, stage, log)[0] != new  # no loop on one rule


def test_failure_taxonomy():
    assert classify_failure("tests", "no test results in the output (exit code 5)", "collected 0 items") == "no_tests"
    assert classify_failure("tests", "1 test module(s) fail to collect", "ERROR collecting tests/x.py") == \
        "collection_error"
    assert classify_failure("tests", "no test passes", "socket.gaierror: [Errno -3] Temporary failure in name "
                                                        "resolution") == "network_at_test_time"
    assert classify_failure("tests", "the test suite timed out") == "timeout"
    assert classify_failure("build", "image build failed: backend exploded", "") == "build_backend_error"
    assert set(FAILURE_KINDS) >= {"no_tests", "build_backend_error", "missing_system_library",
                                  "missing_python_dependency", "collection_error", "network_at_test_time",
                                  "timeout", "other"}


def test_env_build_infers_addopts_plugins_and_records_the_decision(client, base_image):
    r = subprocess.run([SWELEGO, "env", "build", "pypi:parse==1.22.4", "--run-tests", "--json", "--namespace",
                        TEST_NS, "--set", "extra_deps+=six"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["tests"]["passed"] > 100 and row["tests"]["failed"] == 0, row["tests"]
    assert "pytest-cov" in row["spec"]["extra_deps"] and "six" in row["spec"]["extra_deps"]
    label = json.loads(client.images.get(row["image"]).labels["swelego.env"])
    assert label["spec"]["extra_deps"] == row["spec"]["extra_deps"] and "pytest plugins" in " ".join(
        label["spec"]["evidence"])


@pytest.fixture(scope="module")
def c_env(client, base_image):
    from data_gen.synth.pipeline import ENV_EXTRA_DEPS

    # the image `data synth` builds for this source, so the synthetic test below reuses it
    return build_env_image(C_PACKAGE, namespace=TEST_NS, extra_deps=ENV_EXTRA_DEPS, client=client, log=lambda m: None)


def test_required_c_extension_builds_offline_and_its_suite_passes(c_env, client):
    assert {"gcc", "python3-dev"} <= set(c_env.spec["system_packages"])
    assert c_env.system_image.startswith("swelego/sys:")
    assert "swelego.system_packages" in client.images.get(c_env.system_image).labels
    with DockerSandbox(c_env.image, client=client) as sb:
        so = sb.exec("ls bitarray/*.so | wc -l; git status --porcelain").output.split()
        run = run_tests(sb, c_env.test_cmd, log_parser=c_env.log_parser)
    assert so == ["2"]  # built in place and ignored by git: the tree is clean
    assert run.counts["passed"] > 100 and run.counts["failed"] == 0 and run.counts["error"] == 0, run.counts


def test_reset_keeps_build_products_but_nothing_an_adversary_planted(c_env, client):
    with DockerSandbox(c_env.image, client=client) as sb:
        before = sb.exec("sha256sum bitarray/*.so").output
        r = sb.exec("echo 'import os' > planted.py && mkdir -p build/evil && echo x > build/evil/hook.py && "
                    "echo '/tmp' > bitarray/evil.pth && cp /bin/true bitarray/_util.cpython-311-x86_64-linux-gnu.so && "
                    "echo 'x = 1' >> bitarray/util.py && git add planted.py")
        assert r.ok, r.output
        sb.reset("git")
        after = sb.exec("sha256sum bitarray/*.so; ls planted.py build/evil bitarray/evil.pth 2>&1; "
                        "git status --porcelain; tail -c 6 bitarray/util.py | od -c | head -1").output
        run = run_tests(sb, c_env.test_cmd, log_parser=c_env.log_parser)
    assert before.strip() in after  # both .so files restored byte for byte, the tampered one too
    assert "No such file" in after and after.count("No such file") == 3
    assert "x = 1" not in after
    assert run.counts["passed"] > 100 and run.counts["failed"] == 0


def test_synthetic_task_on_a_c_extension_is_resolved_by_the_official_harness(c_env, tmp_path):
    out = tmp_path / "synth"
    r = subprocess.run([SWELEGO, "data", "synth", C_PACKAGE, "--out", str(out), "--namespace", TEST_NS,
                        "--max-candidates", "6", "--strategies", "procedural"], capture_output=True, text=True,
                       timeout=900, env={**os.environ})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = load_dataset(out)
    assert rows, r.stdout[-3000:]
    sample = rows[:1]
    gold = evaluate_official(sample, [{"instance_id": t.instance_id, "model_patch": t.patch} for t in sample],
                             run_id="cext-gold", workdir=tmp_path)
    assert gold.resolved(sample[0].instance_id), gold.summary
    empty = evaluate_official(sample, [{"instance_id": t.instance_id, "model_patch": ""} for t in sample],
                              run_id="cext-empty", workdir=tmp_path, model="empty")
    assert not empty.resolved(sample[0].instance_id)


def test_repair_loop_tries_rules_before_the_model(openai_server):
    from swelego.llm import LLMClient, LLMConfig
    from swelego.sandbox.envrepair import EnvFailure, repair_loop

    def attempt(spec: EnvSpec) -> str:
        if "pyyaml" not in spec.extra_deps:
            raise EnvFailure("tests", "no test passes", "E   ModuleNotFoundError: No module named 'yaml'")
        return "env-ok"

    n = len(openai_server.requests)
    llm = LLMClient(LLMConfig(base_url=openai_server.base_url, model="m", max_retries=0))
    result, spec, attempts = repair_loop(EnvSpec(), attempt, llm=llm, max_attempts=3)
    assert result == "env-ok" and spec.extra_deps == ("pyyaml",) and len(openai_server.requests) == n
    assert [(a.source, a.ok, a.kind) for a in attempts] == [("inferred", False, "missing_python_dependency"),
                                                            ("rule", True, "")]
    assert attempts[1].reply == "missing module yaml" and "ModuleNotFoundError" in attempts[0].log


def test_image_gc_lists_only_what_no_dataset_references(c_env, client, tmp_path):
    from swelego.sandbox.images import unreferenced_images

    kept = unreferenced_images({c_env.image}, client=client, namespace=TEST_NS)
    assert c_env.image not in {o["image"] for o in kept}
    assert c_env.system_image not in {o["image"] for o in kept}  # a kept environment starts from it
    dropped = {o["image"]: o["kind"] for o in unreferenced_images(set(), client=client, namespace=TEST_NS)}
    assert dropped.get(c_env.image) == "env"
    assert not any(name.startswith("swelego/base:") for name in dropped)  # bases are never listed
    (tmp_path / "tasks.jsonl").write_text("")  # an empty dataset references nothing: a dry run removes nothing
    r = subprocess.run([SWELEGO, "sandbox", "gc", "--images", str(tmp_path / "tasks.jsonl"), "--namespace", TEST_NS],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"would remove env      {c_env.image}" in r.stdout and "dry run" in r.stdout
    client.images.get(c_env.image)  # still there
