"""The `swelego` command as a user runs it: help everywhere, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import TEST_NS

from swelego.cli import cli

SWELEGO = [str(Path(sys.executable).with_name("swelego"))]


def swelego(*args, env=None, timeout=600):
    return subprocess.run(SWELEGO + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _all_commands(group: click.Group, ctx: click.Context, prefix=()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, click.Context(cmd, parent=ctx), (*prefix, name))


def test_every_command_has_help():
    paths = list(_all_commands(cli, click.Context(cli)))
    names = {p[0] for p in paths}
    assert {"data", "sft", "verifier", "tts", "env", "sandbox", "doctor"} <= names
    for path in [(), *paths]:
        r = swelego(*path, "--help")
        assert r.returncode == 0, (path, r.stderr)
        assert "Usage: swelego" in r.stdout


@pytest.mark.parametrize("source,words", [
    ("svn://example.org/x", "unknown source scheme"),
    ("pypi:toolz==99.99.99", "no sdist of that version on PyPI"),
    ("/no/such/dir", "no such local path"),
])
def test_bad_sources_fail_with_one_line_while_the_batch_continues(source, words, toolz_env):
    r = swelego("env", "build", source, "pypi:toolz==1.0.0", "--namespace", TEST_NS, "--json")
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("✗")]
    assert len(errors) == 1 and words in errors[0]
    assert "Traceback" not in r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [x["ok"] for x in rows] == [False, True]
    assert rows[1]["image"] == toolz_env.image


def test_docker_not_running_is_one_line():
    r = swelego("env", "build", "pypi:toolz==1.0.0", env={"DOCKER_HOST": "unix:///tmp/no-docker-here.sock"})
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: Docker engine is not running")
    assert len(r.stderr.strip().splitlines()) == 1


def test_env_build_runs_tests_and_reports_counts(toolz_env):
    r = swelego("env", "build", "pypi:toolz==1.0.0", "--namespace", TEST_NS, "--run-tests", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["image"] == toolz_env.image and row["built"] is False
    assert row["tests"]["passed"] > 100 and row["tests"]["failed"] == 0 and row["tests"]["exit_code"] == 0
    table = swelego("env", "build", "pypi:toolz==1.0.0", "--namespace", TEST_NS)
    assert "environment images" in table.stdout and "reused" in table.stdout


def test_doctor_reports_engine_and_packages(base_image):
    r = swelego("doctor")
    assert r.returncode == 0, r.stdout
    assert "docker engine" in r.stdout and "swebench" in r.stdout and "5.0.2" in r.stdout
    assert "flash-attn" in r.stdout


def test_sandbox_exec_and_gc(toolz_env):
    r = swelego("sandbox", "exec", toolz_env.image, "echo hi-from-sandbox; exit 7")
    assert r.returncode == 7 and "hi-from-sandbox" in r.stdout
    r = swelego("sandbox", "gc")
    assert r.returncode == 0 and "removed" in r.stdout
