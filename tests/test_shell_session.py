"""The agent's persistent shell (swelego.sandbox.session through execute_bash) in a real,
hardened sandbox: state across calls, input to running commands, timeouts, output caps."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from swelego.agent import TOOL_SCHEMAS, OraclePolicy, ToolBox
from swelego.agent.tools import STILL_RUNNING
from swelego.sandbox import DockerSandbox, SandboxLimits
from swelego.sandbox.session import eval_line, key_bytes


@pytest.fixture(scope="module")
def sb(base_image, client):
    with DockerSandbox(base_image, client=client, workdir="/tmp", limits=SandboxLimits(exec_timeout=60)) as s:
        yield s


@pytest.fixture
def tb(sb):
    box = ToolBox(sb, workdir="/tmp", command_timeout=30, no_output_timeout=1.5)
    yield box
    box.close()


def bash(tb: ToolBox, command: str, **kw):
    return tb.execute("execute_bash", {"command": command, **kw})


def test_schema_is_swe_legos():
    fn = TOOL_SCHEMAS[0]["function"]
    params = fn["parameters"]
    assert fn["name"] == "execute_bash" and list(params["properties"]) == ["command", "is_input", "timeout"]
    assert params["required"] == ["command"]
    assert params["properties"]["is_input"] == {**params["properties"]["is_input"], "type": "string",
                                                "enum": ["true", "false"]}
    assert params["properties"]["timeout"]["type"] == "number"


def test_eval_line_and_keys():
    line = eval_line("echo 'a'\n" + "é" * 2000)
    assert all(len(part) < 4095 for part in line.split(b"\n")) and line.endswith(b"\n")
    assert key_bytes("C-c") == b"\x03" and key_bytes("C-d") == b"\x04" and key_bytes("C-z") == b"\x1a"
    assert key_bytes("yes") is None


def test_cwd_variables_and_functions_persist(tb):
    r = bash(tb, "cd /etc && export SWELEGO_X=41 && greet() { echo hi \"$1\"; } && PLAIN=1")
    assert r.output == "[exit code: 0]" and r.exit_code == 0
    r = bash(tb, "pwd; echo $SWELEGO_X $PLAIN; greet you")
    assert r.output == "/etc\n41 1\nhi you\n[exit code: 0]"
    # The shell is interactive (as a terminal in the image is) and commands are one at a time.
    r = bash(tb, 'case $- in *i*) echo interactive;; esac\nfalse')
    assert r.output == "interactive\n[exit code: 1]" and r.exit_code == 1


def test_output_without_newline_and_binary(tb):
    assert bash(tb, "printf abc").output == "abc\n[exit code: 0]"
    r = bash(tb, r"printf 'a\0b\x01\xff\n'")
    assert r.output == "a\x00b\x01\ufffd\n[exit code: 0]"


def test_is_input_answers_a_prompt_and_sends_keys(tb):
    t0 = time.monotonic()
    r = bash(tb, "read -p 'name? ' who; echo got=$who")
    assert STILL_RUNNING in r.output and r.output.startswith("name? ") and not r.error and r.exit_code is None
    assert time.monotonic() - t0 < 10
    r = bash(tb, "alice", is_input="true")
    assert r.output == "got=alice\n[exit code: 0]"
    # EOF to a reader, then C-c to a sleeper; booleans are accepted for is_input.
    assert STILL_RUNNING in bash(tb, "cat").output
    assert bash(tb, "line one", is_input=True).output.startswith("line one")
    assert bash(tb, "C-d", is_input="true").output.endswith("[exit code: 0]")
    assert STILL_RUNNING in bash(tb, "sleep 100").output
    r = bash(tb, "ls /", is_input="false")
    assert r.error and r.error_kind == "command_running" and "NOT run" in r.output
    r = bash(tb, "", is_input="true")  # wait a little more: still nothing new
    assert STILL_RUNNING in r.output
    r = bash(tb, "C-c", is_input="true")
    assert r.output.endswith("[exit code: 130]") and r.exit_code == 130
    r = bash(tb, "anything", is_input="true")
    assert r.error and r.error_kind == "no_running_command"


def test_timeout_interrupts_and_the_session_stays_usable(tb):
    bash(tb, "cd /var && export KEEP=yes")
    t0 = time.monotonic()
    r = bash(tb, "echo started; sleep 60", timeout=1)
    assert time.monotonic() - t0 < 10
    assert r.error and r.error_kind == "timeout" and "started" in r.output and "killed after 1 seconds" in r.output
    assert "keeps its working directory" in r.output
    assert bash(tb, "pwd; echo $KEEP").output == "/var\nyes\n[exit code: 0]"
    # A command deaf to C-c is killed through its process group; the shell survives.
    r = bash(tb, "python3 -c 'import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)'",
             timeout=1)
    assert r.error_kind == "timeout" and "restarted" not in r.output
    assert bash(tb, "echo $KEEP").output == "yes\n[exit code: 0]"
    # A busy loop in the shell itself is interrupted too.
    assert bash(tb, "while :; do :; done", timeout=1).error_kind == "timeout"
    assert bash(tb, "echo $KEEP").output == "yes\n[exit code: 0]"


def test_exit_restarts_the_shell_and_says_so(tb):
    bash(tb, "cd /etc && export GONE=1")
    r = bash(tb, "exit 3")
    assert "a new shell was started" in r.output and "/tmp again" in r.output
    assert bash(tb, "pwd; echo \"[$GONE]\"").output == "/tmp\n[]\n[exit code: 0]"


def test_output_is_capped_and_the_exit_code_line_stays(sb):
    box = ToolBox(sb, workdir="/tmp", max_observation=2000)
    try:
        r = bash(box, "seq 1 200000")
        assert r.truncated and not r.error and len(r.output) <= 2000
        assert r.output.startswith("1\n2\n3\n") and r.output.endswith("200000\n[exit code: 0]")
        # Megabytes of binary output are capped while they stream; the session keeps going.
        r = bash(box, "head -c 20000000 /dev/urandom")
        assert r.truncated and r.output.endswith("[exit code: 0]")
        assert bash(box, "echo still here").output == "still here\n[exit code: 0]"
    finally:
        box.close()


def test_long_multiline_command_arrives_intact(tb):
    body = "".join(f"line {i}: quotes ' \" `tick` $HOME \\ tab\t é ✓\n" for i in range(3000))
    cmd = "cat > /tmp/big.txt <<'SWELEGO_EOF'\n" + body + "SWELEGO_EOF\nsha256sum /tmp/big.txt | cut -c1-64"
    assert len(cmd) > 100_000
    r = bash(tb, cmd)
    assert r.output == hashlib.sha256(body.encode()).hexdigest() + "\n[exit code: 0]"


def test_background_jobs_do_not_block_and_end_with_the_session(sb):
    box = ToolBox(sb, workdir="/tmp")
    find = "grep -l swelego-daemon-marke[r] /proc/[0-9]*/cmdline 2>/dev/null | wc -l"
    try:
        r = bash(box, "nohup sh -c 'sleep 300 # swelego-daemon-marker' >/dev/null 2>&1 &")
        assert r.exit_code == 0
        t0 = time.monotonic()
        assert bash(box, "echo next").output.endswith("next\n[exit code: 0]")
        assert time.monotonic() - t0 < 5
        assert sb.exec(find).output.strip() != "0"
    finally:
        box.close()
    assert sb.exec(find).output.strip() == "0"


def test_session_runs_in_the_hardened_container(tb):
    r = bash(tb, "grep CapEff /proc/self/status; python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 2)'")
    assert "0000000000000000" in r.output and r.exit_code != 0


def test_fresh_shell_mode_keeps_the_old_semantics(sb):
    box = ToolBox(sb, workdir="/tmp", persistent=False)
    bash(box, "cd /etc && export GONE=1")
    assert bash(box, "pwd; echo \"[$GONE]\"").output == "/tmp\n[]\n[exit code: 0]"
    r = bash(box, "x", is_input="true")
    assert r.error and "fresh shell" in r.output


def test_oracle_waits_for_a_quiet_command(sb, toy_task):
    box = ToolBox(sb, workdir="/tmp", no_output_timeout=0.5)
    try:
        out = bash(box, "sleep 1.5; echo done").output
        assert STILL_RUNNING in out
        oracle = OraclePolicy(toy_task)
        waits = 0
        while STILL_RUNNING in out:
            msg = oracle.next_message([{"role": "tool", "tool_call_id": "c", "content": out}], TOOL_SCHEMAS)
            call = msg["tool_calls"][0]["function"]
            assert json.loads(call["arguments"]) == {"command": "", "is_input": "true"}
            out = box.execute(call["name"], call["arguments"]).output
            waits += 1
        assert out.endswith("done\n[exit code: 0]") and 1 <= waits <= 4
        assert oracle._step == 0  # waiting does not advance its script
    finally:
        box.close()
