"""Rollouts end to end: the real OpenAIPolicy client against a loopback OpenAI server driving
episodes in real sandboxes, the rollout command (resume, kill -9, bad rows), filtering, and
git-history mining attempts inside a task sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GOLD_PATCH, TEST_NS, git

from swelego.agent import run_episode
from swelego.agent.openai_policy import OpenAIPolicy, SamplingParams
from swelego.agent.rollout import RolloutConfig, load_trajectories, rollout, trajectory_key
from swelego.cli import cli as cli_main
from swelego.sandbox import DockerSandbox
from swelego.schema import save_jsonl
from swelego.trajectories.filter import FilterConfig, filter_trajectories, git_mining_reason

ROOT = Path(__file__).resolve().parents[1]


def _native(name: str, args: dict, i: int = 0) -> dict:
    return {"content": f"calling {name}", "tool_calls": [
        {"id": f"call_{name}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


@pytest.fixture
def sandbox(toy_task, client):
    with DockerSandbox(toy_task.image, client=client) as sb:
        yield sb


@pytest.fixture(scope="module")
def toy_dataset(toy_task, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ds") / "tasks.jsonl"
    save_jsonl([toy_task], path)
    return path


def test_openai_policy_native_text_malformed_429_timeout(toy_task, sandbox, openai_server):
    """One episode through every wire case: a native call, a Qwen text call, a malformed call,
    a 429 then success, a timeout then success, an OpenHands text call; the fix is real."""
    openai_server.script(
        _native("str_replace_editor", {"command": "create", "path": "/tmp/fix.patch", "file_text": GOLD_PATCH}),
        {"status": 429, "headers": {"retry-after": "0"}, "message": "slow down"},
        'Applying it.\n<tool_call>\n{"name": "execute_bash", "arguments": {"command": "git apply /tmp/fix.patch"}}'
        "\n</tool_call>",
        "Checking.\n<tool_call>\n{\"name\": \"execute_bash\", \"arguments\": {\"command\": \n</tool_call>",
        {"delay": 3.0, "content": "never seen"},
        _native("execute_bash", {"command": "python -m pytest -q tests 2>&1 | tail -n 1"}, 1),
        "Done.\n<function=finish>\n<parameter=message>\nfixed median\n</parameter>\n</function>",
    )
    policy = OpenAIPolicy(openai_server.base_url, "test-model", timeout=1.5, max_retries=3,
                          sampling=SamplingParams(temperature=0.3, top_p=0.9, max_tokens=512, seed=7))
    traj = run_episode(toy_task, sandbox, policy, max_turns=10)
    assert traj.exit_reason == "finish", traj.error
    assert traj.resolved is True and traj.semi_resolved is False
    assert "+    return (s[n // 2 - 1] + s[n // 2]) / 2" in traj.patch
    kinds = [(s.tool, s.error_kind) for s in traj.steps]
    assert kinds == [("str_replace_editor", None), ("execute_bash", None), ("", "malformed_call"),
                     ("execute_bash", None), ("finish", None)], kinds
    # Every step points at the assistant message that made it.
    for s in traj.steps:
        assert traj.messages[s.message_index]["role"] == "assistant"
    # The malformed call came back to the model as an error observation it saw next turn.
    malformed = traj.messages[traj.steps[2].message_index + 1]
    assert malformed["role"] == "user" and malformed["content"].startswith("ERROR: your tool call could not be parsed")
    later = openai_server.requests[-1]["messages"]
    assert any(m.get("content", "").startswith("ERROR: your tool call could not be parsed") for m in later
               if isinstance(m.get("content"), str))
    # Requests: native schemas, sampling params; the 429 and the timeout were retried.
    first = openai_server.requests[0]
    assert {t["function"]["name"] for t in first["tools"]} == {"execute_bash", "str_replace_editor", "think", "finish"}
    assert first["temperature"] == 0.3 and first["top_p"] == 0.9 and first["max_tokens"] == 512 and first["seed"] == 7
    assert len(openai_server.requests) == 7 and traj.usage["requests"] == 5
    assert traj.usage["prompt_tokens"] > 0 and traj.usage["completion_tokens"] > 0
    assert traj.sampling["temperature"] == 0.3 and traj.model == "test-model" and traj.policy == "openai"
    # Tool-call arguments are stored as JSON strings.
    calls = [c for m in traj.messages for c in m.get("tool_calls") or []]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls)
    assert json.loads(calls[1]["function"]["arguments"]) == {"command": "git apply /tmp/fix.patch"}


def test_openai_policy_openhands_text_format(toy_task, sandbox, openai_server):
    openai_server.script(
        "Let me look.\n<function=execute_bash>\n<parameter=command>\ngrep -n 'def median' -A6 toycalc/__init__.py\n"
        "</parameter>\n",  # the server stopped at the stop word: no closing tag
        "<function=finish>\n<parameter=message>\ngiving up\n</parameter>\n</function>",
    )
    policy = OpenAIPolicy(openai_server.base_url, "text-model", tool_format="openhands")
    traj = run_episode(toy_task, sandbox, policy, max_turns=5)
    assert traj.exit_reason == "finish" and traj.resolved is False and traj.patch == ""
    assert [s.tool for s in traj.steps] == ["execute_bash", "finish"] and not traj.steps[0].error
    first, second = openai_server.requests
    assert "tools" not in first and first["stop"] == ["</function"]
    assert "execute_bash" in first["messages"][0]["content"] and "str_replace_editor" in first["messages"][0]["content"]
    # The second request shows the call as text and its result as an EXECUTION RESULT user turn.
    roles = [m["role"] for m in second["messages"]]
    assert "tool" not in roles and roles[-1] == "user"
    assert "<function=execute_bash>" in second["messages"][-2]["content"]
    assert second["messages"][-1]["content"].startswith("EXECUTION RESULT of [execute_bash]")
    assert "def median" in second["messages"][-1]["content"]


def test_context_budget_stops_the_episode(toy_task, sandbox, openai_server):
    openai_server.responder = lambda req: _native("think", {"thought": "x " * 50})
    policy = OpenAIPolicy(openai_server.base_url, "m")
    traj = run_episode(toy_task, sandbox, policy, max_turns=50, max_context_tokens=200, grade=False)
    assert traj.exit_reason == "context" and 1 <= traj.turns < 50


def test_git_mining_finds_no_trace_of_the_fix(tmp_path, client, base_image):
    """A repository whose fix is a later commit: in the task sandbox, an agent mining git
    history (log --all -p, reflog, fsck --lost-found, rev-list --all) sees no trace of it."""
    from swelego.agent.tools import ToolBox
    from swelego.sandbox.images import build_env_image

    repo = tmp_path / "leaky"
    (repo / "leaky").mkdir(parents=True)
    (repo / "leaky" / "__init__.py").write_text("def double(x):\n    return x + x + 1\n")
    (repo / "pyproject.toml").write_text('[project]\nname = "leaky"\nversion = "0.1"\n'
                                         '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "buggy", cwd=repo)
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "leaky" / "__init__.py").write_text("def double(x):\n    return 2 * x  # SECRET_FIX_MARKER\n")
    git("commit", "-qam", "fix double SECRET_FIX_MARKER", cwd=repo)
    git("tag", "v1.0", cwd=repo)
    env = build_env_image(f"{repo}@{base}", namespace=TEST_NS, client=client, log=lambda m: None)
    with DockerSandbox(env.image, client=client) as sb:
        tools = ToolBox(sb)
        outputs = []
        for cmd in ("git log --all -p", "git reflog", "git fsck --lost-found --unreachable --dangling",
                    "git rev-list --all --objects | cut -d' ' -f1 | git cat-file --batch",
                    "git tag; git branch -a; git stash list; git remote -v", "grep -r SECRET_FIX_MARKER / "
                    "--exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -5; true"):
            r = tools.execute("execute_bash", {"command": cmd})
            assert not r.error, (cmd, r.output)
            outputs.append(r.output)
        assert "return x + x + 1" in tools.execute("execute_bash", {"command": "cat leaky/__init__.py"}).output
    joined = "\n".join(outputs)
    assert "SECRET_FIX_MARKER" not in joined and "2 * x" not in joined
    assert "v1.0" not in outputs[4]


def test_rollout_bad_rows_continue_and_rerun_skips(toy_task, toy_dataset, tmp_path):
    missing = toy_task.model_copy(update={"instance_id": "toy__missing-1", "image": f"{TEST_NS}/no-such:image"})
    ds = tmp_path / "tasks.jsonl"
    save_jsonl([toy_task, missing], ds)
    out = tmp_path / "ro"
    cfg = RolloutConfig(out=str(out), samples=2, workers=2)
    summary = rollout([toy_task, missing], cfg)
    assert summary.ran == 2 and summary.failed == 2 and summary.trajectories == 2 and summary.resolved == 2
    assert all("toy__missing-1" in k for k in summary.errors)
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 2 and all("no-such" in e["error"] or "not found" in e["error"].lower() for e in errors)
    recs = load_trajectories(out)
    assert {r["policy"] for r in recs} == {"oracle"} and sorted(r["sampling"]["sample"] for r in recs) == [0, 1]
    # The CLI on the same output: nothing reruns for the good row, the bad one is tried again.
    res = CliRunner().invoke(cli_main, ["data", "rollout", str(ds), "--out", str(out), "--samples-per-task", "2"])
    assert res.exit_code == 0, res.output
    assert "resuming: 2/4 samples already done" in res.output
    assert len(load_trajectories(out)) == 2
    assert "resolved" in res.output and "trajectories" in res.output


def _rollout_containers(client, pid: int) -> list:
    found = client.containers.list(all=True, filters={"label": "swelego.rollout"})
    return [c for c in found if c.labels.get("swelego.owner", "").endswith(f":{pid}")]


def test_kill_and_resume_loses_nothing_duplicates_nothing(toy_dataset, tmp_path, client):
    out = tmp_path / "ro"
    cmd = [sys.executable, "-m", "swelego.cli", "data", "rollout", str(toy_dataset), "--out", str(out),
           "--samples-per-task", "5", "--workers", "1", "--noise", "0.5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    traj_file = out / "trajectories.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if traj_file.exists() and traj_file.read_text().count("\n") >= 2:
            break
        time.sleep(0.2)
    time.sleep(0.5)  # let the next episode's container start
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    first = traj_file.read_text().count("\n")
    assert 2 <= first < 5, "the driver should have been killed mid-run"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming: {first}/5 samples already done" in res.stderr
    lines = traj_file.read_text().splitlines()
    keys = [trajectory_key(json.loads(x)) for x in lines]
    assert len(keys) == 5 and len(set(keys)) == 5
    assert sorted(json.loads(x)["sampling"]["sample"] for x in lines) == [0, 1, 2, 3, 4]
    # Whatever the killed driver left running was removed by the rerun; nothing is left now.
    assert _rollout_containers(client, proc.pid) == []
    assert _rollout_containers(client, os.getpid()) == []


def test_git_mining_rules():
    mining = ["git log --all -p", "git log --oneline --branches", "cd /testbed && git reflog", "git fsck --lost-found",
              "git log -S'median' --oneline", "git log -Gfoo", "git show 3f2a9c1d", "git rev-list --all",
              "git cat-file -p HEAD~1", "git -C /testbed log --tags", "git fetch origin", "git stash list",
              "git checkout 0123456789abcdef", "git log -g"]
    fine = ["git status", "git diff", "git log --oneline -5", "git show HEAD", "git diff HEAD -- a.py",
            "grep -rn 'all' .", "python -m pytest -q", "git add -A && git stash"]
    assert [c for c in mining if git_mining_reason(c) is None] == []
    assert [c for c in fine if git_mining_reason(c) is not None] == []


def _record(i: int, *, resolved=False, semi=False, commands=(), turns=3, exit_reason="finish", patch="diff") -> dict:
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    for t in range(turns):
        cmd = commands[t] if t < len(commands) else "ls"
        msgs.append({"role": "assistant", "content": "x", "tool_calls": [
            {"id": f"c{t}", "type": "function", "function": {"name": "execute_bash",
                                                           "arguments": json.dumps({"command": cmd})}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{t}", "content": "ok"})
    return {"instance_id": f"t{i}", "messages": msgs, "resolved": resolved, "semi_resolved": semi,
            "patch": patch, "exit_reason": exit_reason, "policy": "oracle", "sampling": {"sample": 0}}


CONFTEST_PATCH = """\
diff --git a/pkg/core.py b/pkg/core.py
--- a/pkg/core.py
+++ b/pkg/core.py
@@ -1 +1 @@
-x = 1
+x = 2
diff --git a/tests/conftest.py b/tests/conftest.py
new file mode 100644
--- /dev/null
+++ b/tests/conftest.py
@@ -0,0 +1 @@
+import pytest
"""
GIT_CONFIG_PATCH = "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1,2 @@\n [core]\n+\tfsmonitor = sh x\n"


def test_filter_counts_every_reason(tmp_path):
    recs = [_record(0, resolved=True), _record(1, semi=True), _record(2),
            _record(3, resolved=True, commands=["git log --all -p"]), _record(4, resolved=True, turns=9),
            _record(5, resolved=True, exit_reason="error"), _record(6, semi=True, commands=["x" * 4000]),
            _record(7, resolved=True, patch=CONFTEST_PATCH), _record(8, resolved=True, patch=GIT_CONFIG_PATCH)]
    res = filter_trajectories(recs, FilterConfig(keep=("resolved", "semi_resolved"), max_turns=8, max_tokens=500))
    assert [r["instance_id"] for r in res.kept] == ["t0", "t1"]
    assert res.counts() == {"error": 1, "git_mining": 1, "test_tampering": 2, "over_turns": 1, "over_length": 1,
                            "not_kept": 1}
    assert [d for _, why, d in res.dropped if why == "test_tampering"] == ["tests/conftest.py", ".git/config"]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = CliRunner().invoke(cli_main, ["data", "filter", str(path), "--out", str(tmp_path / "f"),
                                        "--keep", "resolved,semi_resolved", "--max-turns", "8",
                                        "--max-tokens", "500"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["kept_by_outcome"] == {"resolved": 1, "semi_resolved": 1, "unresolved": 0}
    assert report["dropped"]["git_mining"] == 1
    assert len((tmp_path / "f" / "resolved.jsonl").read_text().splitlines()) == 1
    dropped = [json.loads(x) for x in (tmp_path / "f" / "dropped.jsonl").read_text().splitlines()]
    assert {d["drop_reason"] for d in dropped} == {"error", "git_mining", "test_tampering", "over_turns",
                                                   "over_length", "not_kept"}
    assert report["dropped"]["test_tampering"] == 2
    kept = CliRunner().invoke(cli_main, ["data", "filter", str(path), "--out", str(tmp_path / "t"),
                                         "--allow-test-tampering"])
    assert kept.exit_code == 0 and json.loads((tmp_path / "t" / "report.json").read_text())["dropped"][
        "test_tampering"] == 0
    bad = CliRunner().invoke(cli_main, ["data", "filter", str(path), "--out", str(tmp_path / "g"), "--keep", "nope"])
    assert bad.exit_code != 0 and "unknown outcome nope" in bad.output


def test_rollout_on_ray(toy_dataset, tmp_path):
    out = tmp_path / "ray"
    res = subprocess.run([sys.executable, "-m", "swelego.cli", "data", "rollout", str(toy_dataset), "--out", str(out),
                          "--samples-per-task", "2", "--executor", "ray"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = load_trajectories(out)
    assert sorted(r["sampling"]["sample"] for r in recs) == [0, 1] and all(r["resolved"] for r in recs)
