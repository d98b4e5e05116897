"""The agent loop on the toy task in real sandboxes: the oracle policy (clean and noisy),
scripted policies that misbehave, the turn limit and git-history sanitization."""

from __future__ import annotations

import json

import pytest
from conftest import GOLD_PATCH, TEST_PATCH

from swelego.agent import OraclePolicy, Policy, Trajectory, run_episode
from swelego.agent.oracle import parse_patch
from swelego.sandbox import DockerSandbox


@pytest.fixture
def sandbox(toy_task, client):
    with DockerSandbox(toy_task.image, client=client) as sb:
        yield sb


def _call(i: int, name: str, arguments) -> dict:
    return {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": arguments}}


class Scripted:
    """Returns canned assistant messages, then finishes."""

    def __init__(self, replies: list[dict]):
        self.replies = list(replies)
        self.seen: list[list[dict]] = []

    def next_message(self, messages, tools):
        self.seen.append(list(messages))
        if self.replies:
            return self.replies.pop(0)
        return {"role": "assistant", "content": None,
                "tool_calls": [_call(99, "finish", json.dumps({"message": "done"}))]}


def test_parse_patch_reads_gold_and_new_files():
    (fp,) = parse_patch(GOLD_PATCH)
    assert fp.path == "toycalc/__init__.py" and not fp.is_new and len(fp.hunks) == 1
    h = fp.hunks[0]
    assert h.src_start == 4 and len(h.old()) == 4 and len(h.new()) == 7
    (tp,) = parse_patch(TEST_PATCH)
    assert tp.is_new and tp.path == "tests/test_even.py" and len(tp.hunks[0].new()) == 11


DUP_FILE = "def a():\n    x = 1\n    return x\n\n\ndef b():\n    x = 1\n    return x\n"
DUP_PATCH = """\
diff --git a/pkg/m.py b/pkg/m.py
--- a/pkg/m.py
+++ b/pkg/m.py
@@ -7,2 +7,2 @@ def b():
     x = 1
-    return x
+    return x + 1
"""


def test_oracle_widens_context_until_old_str_is_unique(toy_task):
    from swelego.agent.tools import _numbered

    task = toy_task.model_copy(update={"patch": DUP_PATCH})
    policy = OraclePolicy(task)
    messages: list[dict] = []
    listing = "Files ...:\n/testbed/\n/testbed/pkg/\n/testbed/pkg/m.py"
    view = "Contents of /testbed/pkg/m.py (cat -n):\n" + _numbered(DUP_FILE.splitlines(), 1)
    for obs in (listing, view, "[exit code: 0]"):
        msg = policy.next_message(messages, [])
        messages += [msg, {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": obs}]
    args = json.loads(policy.next_message(messages, [])["tool_calls"][0]["function"]["arguments"])
    assert args["command"] == "str_replace" and DUP_FILE.count(args["old_str"]) == 1
    assert DUP_FILE.replace(args["old_str"], args["new_str"]).endswith("def b():\n    x = 1\n    return x + 1\n")


def test_oracle_resolves_the_toy_task(toy_task, sandbox):
    policy = OraclePolicy(toy_task)
    assert isinstance(policy, Policy)
    traj = run_episode(toy_task, sandbox, policy, policy_name="oracle")
    assert traj.exit_reason == "finish", traj.error
    assert traj.resolved is True and traj.semi_resolved is False
    assert "toycalc/__init__.py" in traj.patch and "(s[n // 2 - 1] + s[n // 2]) / 2" in traj.patch
    assert traj.policy == "oracle" and traj.turns == len(traj.steps)
    assert [s.tool for s in traj.steps][:2] == ["str_replace_editor", "str_replace_editor"]
    assert [s.tool for s in traj.steps][-1] == "finish"
    bash = [s for s in traj.steps if s.tool == "execute_bash"]
    # The F2P file arrives with the hidden test patch, so the oracle runs the existing tests.
    assert len(bash) == 2 and all(s.exit_code == 0 for s in bash)
    commands = [json.loads(c["function"]["arguments"]).get("command") for m in traj.messages
                for c in m.get("tool_calls") or [] if c["function"]["name"] == "execute_bash"]
    assert commands == ["python -m pytest -q tests/test_calc.py"] * 2
    assert not any(s.error for s in traj.steps)
    roles = [m["role"] for m in traj.messages]
    assert roles[:2] == ["system", "user"] and "/testbed" in traj.messages[1]["content"]
    for m in traj.messages:
        for c in m.get("tool_calls") or []:
            assert isinstance(c["function"]["arguments"], str)
            assert isinstance(json.loads(c["function"]["arguments"]), dict)
            assert c["type"] == "function" and c["id"]
    ids = [c["id"] for m in traj.messages for c in m.get("tool_calls") or []]
    assert ids == [m["tool_call_id"] for m in traj.messages if m["role"] == "tool"]
    back = Trajectory.from_json(traj.to_json())
    assert back == traj and back.to_json() == traj.to_json()
    assert traj.started_at <= traj.finished_at and traj.tools and traj.tools[0]["type"] == "function"


def test_noisy_oracle_ends_unresolved_on_the_same_file(toy_task, sandbox):
    policy = OraclePolicy(toy_task, noise=1.0, seed=3)
    assert policy.corrupted == 1
    traj = run_episode(toy_task, sandbox, policy)
    assert traj.exit_reason == "finish"
    assert traj.patch.strip() and traj.patch != GOLD_PATCH
    assert traj.resolved is False and traj.semi_resolved is True
    assert traj.policy == "oracle" and traj.sampling == {"noise": 1.0, "seed": 3}


def test_scripted_policy_errors_become_observations(toy_task, sandbox):
    policy = Scripted([
        {"role": "assistant", "content": "oops", "tool_calls": [_call(1, "execute_bash", "{not json")]},
        {"role": "assistant", "content": None, "tool_calls": [_call(2, "launch_rockets", {"n": 1})]},
        {"role": "assistant", "content": "thinking out loud, no tool call"},
    ])
    traj = run_episode(toy_task, sandbox, policy, grade=False, policy_name="scripted", model="none")
    assert traj.exit_reason == "finish" and traj.turns == 4
    assert [(s.tool, s.error, s.error_kind) for s in traj.steps] == [
        ("execute_bash", True, "bad_arguments"), ("launch_rockets", True, "unknown_tool"), ("finish", False, None)]
    tool_msgs = [m for m in traj.messages if m["role"] == "tool"]
    assert tool_msgs[0]["content"].startswith("ERROR") and "launch_rockets" in tool_msgs[1]["content"]
    assert traj.messages[-3]["role"] == "user" and "call finish" in traj.messages[-3]["content"]
    call2 = traj.messages[4]["tool_calls"][0]["function"]
    assert call2["arguments"] == '{"n": 1}'  # dict arguments are stored as a JSON string
    assert traj.patch == "" and traj.resolved is None and traj.semi_resolved is None
    assert Trajectory.from_json(traj.to_json()) == traj


def test_max_turns_is_enforced(toy_task, sandbox):
    class Thinker:
        def next_message(self, messages, tools):
            return {"role": "assistant", "content": None,
                    "tool_calls": [_call(len(messages), "think", json.dumps({"thought": "hmm"}))]}

    traj = run_episode(toy_task, sandbox, Thinker(), max_turns=3, grade=False)
    assert traj.exit_reason == "max_turns" and traj.turns == 3 and len(traj.steps) == 3


def test_policy_exception_is_recorded(toy_task, sandbox):
    class Broken:
        def next_message(self, messages, tools):
            raise RuntimeError("model server down")

    traj = run_episode(toy_task, sandbox, Broken(), grade=False)
    assert traj.exit_reason == "error" and "model server down" in traj.error


def test_git_history_is_sanitized(toy_task, sandbox):
    git = "git -c user.name=x -c user.email=x@x"
    setup = (f"{git} branch extra && {git} tag v9 && {git} remote add origin https://example.invalid/r.git && "
             f"{git} checkout -q -b side && {git} commit -q --allow-empty -m leak && {git} checkout -q - && "
             "git log --all --oneline | wc -l && git rev-list --count HEAD")
    r = sandbox.exec(setup, timeout=60)
    assert r.exit_code == 0, r.output
    total, base = (int(x) for x in r.output.split())
    assert total == base + 1  # the leaked commit is visible before sanitization
    probe = ("echo $(git log --all --oneline | wc -l) $(git rev-list --count HEAD) $(git reflog | wc -l) "
             "$(git remote | wc -l) $(git tag | wc -l) $(git branch | wc -l) $(git rev-parse HEAD)")
    policy = Scripted([{"role": "assistant", "content": None,
                        "tool_calls": [_call(1, "execute_bash", json.dumps({"command": probe}))]}])
    traj = run_episode(toy_task, sandbox, policy, grade=False)
    out = next(m["content"] for m in traj.messages if m["role"] == "tool")
    fields = out.split("\n")[0].split()
    assert fields[:6] == [str(base), str(base), "0", "0", "0", "1"], out
    assert fields[6] == toy_task.base_commit
