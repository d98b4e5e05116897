"""Environment images from real sources on the real engine: content-hashed reuse, a clean
/testbed, a real PyPI package's suite, and build failures that show the log."""

from __future__ import annotations

import pytest
from conftest import TEST_NS, git

from swelego.errors import ImageBuildError
from swelego.harness import run_tests
from swelego.sandbox import DockerSandbox
from swelego.sandbox.images import build_env_image


def test_real_pypi_package_suite_runs_and_is_repeatable(toolz_env, client):
    assert toolz_env.image.startswith(f"{TEST_NS}/env.toolz:") and toolz_env.python == "3.11"
    with DockerSandbox(toolz_env.image, client=client) as sb:
        first = run_tests(sb, toolz_env.test_cmd, log_parser=toolz_env.log_parser)
        sb.reset("git")
        second = run_tests(sb, toolz_env.test_cmd, log_parser=toolz_env.log_parser)
    assert first.counts["passed"] > 100 and first.consistent
    assert first.counts == second.counts
    assert first.passed == second.passed


def test_unchanged_spec_reuses_the_image(toolz_env, client):
    again = build_env_image("pypi:toolz==1.0.0", namespace=TEST_NS, client=client, log=lambda m: None)
    assert again.image == toolz_env.image and not again.built
    assert again.base_commit == toolz_env.base_commit and again.test_cmd == toolz_env.test_cmd


def test_testbed_is_a_clean_single_commit_repo_without_remote(toolz_env, client):
    with DockerSandbox(toolz_env.image, client=client) as sb:
        r = sb.exec("git status --porcelain; echo ---; git remote; echo ---; git rev-list --all --count; "
                    "git rev-parse HEAD; python -c 'import toolz; print(toolz.__file__)'")
    status, remotes, rest = r.output.split("---\n")
    assert status.strip() == "" and remotes.strip() == ""
    count, head, path = rest.split()
    assert count == "1" and head == toolz_env.base_commit
    assert path.startswith("/testbed/")  # editable: edits in /testbed are what the tests import


def test_git_source_exposes_nothing_after_the_base_commit(toy_repo, client, tmp_path):
    repo = tmp_path / "hist"
    git("clone", "-q", str(toy_repo), str(repo), cwd=tmp_path)
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "FUTURE_FIX.txt").write_text("the secret fix\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "future fix", cwd=repo)
    git("tag", "v-future", cwd=repo)
    git("branch", "other", cwd=repo)
    env = build_env_image(f"{repo}@{base}", namespace=TEST_NS, client=client, log=lambda m: None)
    assert env.base_commit == base
    with DockerSandbox(env.image, client=client) as sb:
        r = sb.exec("git log --all --oneline; git tag; git branch -a; git reflog; git fsck --lost-found 2>&1; "
                    "git grep -r 'secret fix' $(git rev-list --all) 2>&1; ls")
    assert "future fix" not in r.output and "v-future" not in r.output and "other" not in r.output
    assert "secret fix" not in r.output and "FUTURE_FIX" not in r.output


def test_failing_build_shows_the_log_tail(toy_repo, client):
    with pytest.raises(ImageBuildError) as exc:
        build_env_image(str(toy_repo), namespace=TEST_NS, client=client, log=lambda m: None,
                        setup=("echo setup-step-broke-here >&2", "exit 3"))
    e = exc.value
    assert "image build failed" in e.headline and len(e.headline.splitlines()) == 1
    assert "setup-step-broke-here" in e.log_tail


def test_offline_base_with_another_python(client):
    """bullseye = Python 3.9: wheels are chosen for the image's Python, not the host's."""
    env = build_env_image("pypi:inflection==0.5.1", base="bullseye", namespace=TEST_NS, client=client,
                          log=lambda m: None)
    assert env.python == "3.9" and env.base == "swelego/base:bullseye"
    with DockerSandbox(env.image, client=client) as sb:
        assert sb.exec("python --version").output.strip().startswith("Python 3.9")
        run = run_tests(sb, env.test_cmd, log_parser=env.log_parser)
    assert run.counts["passed"] > 100 and run.counts["failed"] == 0 and run.consistent
