"""An image laid out like the official SWE-bench ones (conda `testbed` env activated only from
~/.bashrc, built here: tests/official_image.py): the agent's shell, the oracle, the harness
and `data rollout` through the real OpenAI client all run in the testbed environment."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import GOLD_PATCH, TEST_NS, TEST_PATCH
from official_image import ENV_PREFIX, build_official_layout_image

from swelego.agent import OraclePolicy, ToolBox, run_episode
from swelego.agent.rollout import load_trajectories
from swelego.cli import cli as cli_main
from swelego.harness import new_task, run_eval, validate_task
from swelego.sandbox import DockerSandbox
from swelego.sandbox.images import EnvImage
from swelego.schema import save_jsonl


@pytest.fixture(scope="module")
def official(client, base_image, toy_repo, tmp_path_factory):
    tag = f"{TEST_NS}/sweb.eval.x86_64.toy_1776_toycalc-official:latest"
    image, base, fix = build_official_layout_image(client, base_image, toy_repo, GOLD_PATCH + TEST_PATCH, tag,
                                                   tmp_path_factory.mktemp("official"))
    env = EnvImage(image=image, repo="toycalc", version="0.1", source=str(toy_repo), base=base_image,
                   python="3.11", base_commit=base)
    task = new_task(env, instance_id="toy__toycalc-official-1", patch=GOLD_PATCH, test_patch=TEST_PATCH,
                    problem_statement="median() is wrong for lists of even length",
                    metadata={"fix_commit": fix})
    with DockerSandbox(image, client=client) as sb:
        task = validate_task(sb, task)
    # the fields official SWE-bench Verified rows carry beyond ours, as the Hub stores them
    return task.model_copy(update={"environment_setup_commit": base, "difficulty": "<15 min fix",
                                   "image_assets": json.dumps({"test_patch": []}), "created_at": "2020-01-01T00:00:00Z"})


def bash(tb: ToolBox, command: str):
    return tb.execute("execute_bash", {"command": command})


def test_python_and_pytest_resolve_to_the_testbed_env(official, client):
    # The control: a plain `bash -c` never activates (the .bashrc returns early when not
    # interactive), and the base `python` has no pytest.
    with DockerSandbox(official.image, client=client, shell_env=False) as plain:
        r = plain.exec("which python; python -c 'import pytest'")
        assert r.output.startswith("/opt/miniconda3/bin/python\n") and r.exit_code == 1, r.output
    with DockerSandbox(official.image, client=client) as sb:
        tb = ToolBox(sb)
        try:
            r = bash(tb, "which python pytest; python -c 'import pytest, sys; print(sys.prefix)'")
            assert r.output == f"{ENV_PREFIX}/bin/python\n{ENV_PREFIX}/bin/pytest\n{ENV_PREFIX}\n[exit code: 0]"
            # An activated environment is session state like any other.
            assert bash(tb, "conda deactivate && which python").output == "/opt/miniconda3/bin/python\n[exit code: 0]"
            assert bash(tb, "python -c 'import pytest'").exit_code == 1
            assert bash(tb, "conda activate testbed && cd toycalc").exit_code == 0
            assert bash(tb, "pwd; which python").output == f"/testbed/toycalc\n{ENV_PREFIX}/bin/python\n[exit code: 0]"
        finally:
            tb.close()
        # The harness's commands (sandbox.exec) run in the same environment.
        r = sb.exec("which python pytest")
        assert r.output == f"{ENV_PREFIX}/bin/python\n{ENV_PREFIX}/bin/pytest\n", r.output


def test_harness_validates_and_grades_in_the_testbed_env(official, client):
    # validate_task (in the fixture) ran the suite with the image's own pytest and found the bug.
    assert official.FAIL_TO_PASS and official.PASS_TO_PASS
    with DockerSandbox(official.image, client=client) as sb:
        assert run_eval(sb, official, GOLD_PATCH).resolved is True
        sb.reset("fresh")
        assert run_eval(sb, official, "").resolved is False


def test_oracle_resolves_the_official_layout_task(official, client):
    with DockerSandbox(official.image, client=client) as sb:
        traj = run_episode(official, sb, OraclePolicy(official))
    assert traj.exit_reason == "finish" and traj.resolved is True, traj.error
    runs = [traj.messages[s.message_index + 1]["content"] for s in traj.steps if s.tool == "execute_bash"]
    # The visible tests ran twice with the testbed env's pytest (the failing test is hidden).
    assert len(runs) == 2 and all(" passed" in r and r.endswith("[exit code: 0]") for r in runs), runs


def _call(i: int, name: str, args: dict) -> dict:
    return {"content": f"step {i}", "tool_calls": [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


def test_data_rollout_through_the_openai_client(official, openai_server, tmp_path):
    """`swelego data rollout --policy openai` against a loopback endpoint: the scripted model
    finds the testbed env, keeps cwd and variables across calls, fixes the bug, tampers with
    the shell's startup files (the grade, in a fresh container, sees none of its shell state)
    and finds no trace of the fix commit the image shipped. The same row, with the official
    fields, is then scored by `tts score` through the official harness, fields intact."""
    fix = official.metadata["fix_commit"]
    openai_server.script(
        _call(0, "execute_bash", {"command": "which python && python -c 'import pytest; print(pytest.__name__)'"}),
        _call(1, "execute_bash", {"command": "cd /tmp && export SWELEGO_X=41"}),
        _call(2, "execute_bash", {"command": "pwd && echo $SWELEGO_X"}),
        _call(3, "str_replace_editor", {"command": "create", "path": "/tmp/fix.patch", "file_text": GOLD_PATCH}),
        _call(4, "execute_bash", {"command": "cd /testbed && git apply /tmp/fix.patch && python -m pytest -q tests "
                                             "2>&1 | tail -n 1"}),
        _call(5, "execute_bash", {"command": "echo 'conda deactivate; export PATH=/nowhere' >> ~/.bashrc && "
                                             "export PYTHONPATH=/nowhere PATH=/nowhere", "timeout": 30}),
        # the later fix commit the image shipped is gone: no ref, no reflog, no object
        _call(6, "execute_bash", {"command": "cd /testbed; export PATH=/usr/bin:/bin; git log --all --oneline | wc -l; "
                                             f"git cat-file -e {fix} 2>/dev/null && echo FIX-PRESENT || echo FIX-GONE; "
                                             "git cat-file --batch-all-objects --batch-check | wc -l; "
                                             "git rev-list --objects --all | wc -l"}),
        _call(7, "finish", {"message": "fixed median"}),
    )
    ds = tmp_path / "tasks.jsonl"
    save_jsonl([official], ds)
    out = tmp_path / "ro"
    res = CliRunner().invoke(cli_main, ["data", "rollout", str(ds), "--out", str(out), "--policy", "openai",
                                        "--base-url", openai_server.base_url, "--model", "scripted"])
    assert res.exit_code == 0, res.output
    (traj,) = load_trajectories(out)
    seen = [m["content"] for m in traj["messages"] if m["role"] == "tool"]
    assert seen[0] == f"{ENV_PREFIX}/bin/python\npytest\n[exit code: 0]"
    assert seen[2] == "/tmp\n41\n[exit code: 0]"
    assert " passed" in seen[4] and "failed" not in seen[4] and seen[4].endswith("[exit code: 0]")
    assert seen[5] == "[exit code: 0]"
    commits, fix_state, objects, reachable = seen[6].split("\n")[:4]
    assert (commits, fix_state) == ("1", "FIX-GONE") and objects == reachable, seen[6]
    assert traj["exit_reason"] == "finish" and traj["resolved"] is True

    # tts score: the trajectory as the one sample, a verifier score for it, the official harness
    run = tmp_path / "tts"
    run.mkdir()
    save_jsonl([official], run / "tasks.jsonl")
    (run / "samples.jsonl").write_text(json.dumps({**traj, "sampling": {**traj["sampling"], "sample": 0}}) + "\n")
    (run / "scores.jsonl").write_text(json.dumps({"instance_id": official.instance_id, "sample": 0, "score": 0.9})
                                      + "\n")
    res = CliRunner().invoke(cli_main, ["tts", "score", str(run), "--k", "1", "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    report = json.loads((run / "report.json").read_text())
    assert report["selected"]["resolved"] == 1 and report["metric_labels"] == {"official": 1}, report["selected"]
    (sent,) = [json.loads(x) for f in (run / "grading").glob("*.dataset.jsonl") for x in f.read_text().splitlines()]
    assert {k: sent[k] for k in ("environment_setup_commit", "difficulty", "image_assets")} == {
        "environment_setup_commit": official.environment_setup_commit, "difficulty": "<15 min fix",
        "image_assets": json.dumps({"test_patch": []})}
    # The system prompt the model saw describes the persistent shell.
    assert "persistent bash session" in openai_server.requests[0]["messages"][0]["content"]
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in openai_server.requests[0]["tools"]}
    assert list(tools["execute_bash"]["properties"]) == ["command", "is_input", "timeout"]
