"""Session fixtures: the real Docker engine, the offline base image, and test images that
are built once per session under the `swelego-test/` prefix and removed at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swelego.sandbox import docker_client
from swelego.sandbox.images import build_env_image, ensure_base_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from harness_quickstart import GOLD_PATCH, TEST_PATCH, make_toy_repo  # noqa: E402
from openai_server import openai_server  # noqa: E402, F401 - the loopback LLM endpoint, for every test

# Per session, so that two test sessions on one engine never remove each other's images.
TEST_NS = f"swelego-test-{os.getpid()}"
__all__ = ["GOLD_PATCH", "TEST_PATCH", "TEST_NS", "git"]


@pytest.fixture(scope="session")
def client():
    return docker_client()


@pytest.fixture(scope="session")
def base_image(client):
    return ensure_base_image("bookworm", client=client)


@pytest.fixture(scope="session", autouse=True)
def _remove_test_images():
    yield
    try:
        c = docker_client()
    except Exception:
        return
    # The low-level listing: images.list() inspects each image, which races with other
    # sessions removing theirs.
    for img in c.api.images():
        for tag in img.get("RepoTags") or []:
            if tag.startswith(TEST_NS + "/"):
                try:
                    c.images.remove(tag, force=True)
                except Exception:
                    pass


@pytest.fixture(scope="session")
def toolz_env(client, base_image):
    return build_env_image("pypi:toolz==1.0.0", namespace=TEST_NS, client=client, log=lambda m: None)


def git(*args, cwd):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def toy_repo(tmp_path_factory) -> Path:
    """A real git repo with a median() bug; a later commit (the fix) must never leak."""
    return make_toy_repo(tmp_path_factory.mktemp("toyrepo") / "toycalc")


@pytest.fixture(scope="session")
def toy_env(client, base_image, toy_repo):
    return build_env_image(str(toy_repo), namespace=TEST_NS, client=client, log=lambda m: None)


@pytest.fixture(scope="session")
def toy_task(toy_env, client):
    """The toy repo's median bug as a validated swebench row (F2P/P2P from real runs)."""
    from swelego.harness import new_task, validate_task
    from swelego.sandbox import DockerSandbox

    task = new_task(toy_env, instance_id="toy__toycalc-1", patch=GOLD_PATCH, test_patch=TEST_PATCH,
                    problem_statement="median() is wrong for lists of even length")
    with DockerSandbox(toy_env.image, client=client) as sb:
        return validate_task(sb, task)
