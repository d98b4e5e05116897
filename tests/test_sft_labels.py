"""Error labels: each rule fires on its case, a reproduced bug or failing test is never an error,
metadata-free and imported (SWE-Lego) transcripts get the same labels, and `swelego sft label`
reports per-rule counts."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sft.synthetic import synthetic_dataset
from swelego.agent.tools import TOOL_SCHEMAS
from swelego.trajectories.labels import LabelRules, LabelSummary, label_trajectory
from swelego.trajectories.record import Step, Trajectory

REPO = Path(__file__).resolve().parents[1]


class Episode:
    """Builds a trajectory call by call, with the step metadata our scaffold records."""

    def __init__(self, steps: bool = True):
        self.t = Trajectory(instance_id="hand__built-1", tools=list(TOOL_SCHEMAS),
                            messages=[{"role": "system", "content": "You fix bugs."},
                                      {"role": "user", "content": "Fix the bug in pkg/mod.py"}])
        self.with_steps = steps
        self.n = 0

    def call(self, name: str, args, output: str, *, exit_code=None, kind=None) -> int:
        idx = len(self.t.messages)
        cid = f"c{self.n}"
        self.n += 1
        arguments = args if isinstance(args, str) else json.dumps(args)
        self.t.messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}]})
        self.t.messages.append({"role": "tool", "tool_call_id": cid, "content": output})
        if self.with_steps:
            self.t.steps.append(Step(tool=name, exit_code=exit_code, error=kind is not None, error_kind=kind,
                                     message_index=idx))
        return idx

    def say(self, text: str) -> int:
        idx = len(self.t.messages)
        self.t.messages.append({"role": "assistant", "content": text})
        return idx

    def user(self, text: str) -> None:
        self.t.messages.append({"role": "user", "content": text})

    def bash(self, cmd: str, output: str, code: int | None = 0, kind=None) -> int:
        tail = f"\n[exit code: {code}]" if code is not None else ""
        return self.call("execute_bash", {"command": cmd}, output + tail, exit_code=code, kind=kind)

    def labels(self, rules: LabelRules | None = None) -> dict[int, str | None]:
        return {lab.message_index: lab.rule for lab in label_trajectory(self.t, rules)}


def errors(ep: Episode, rules: LabelRules | None = None) -> dict[int, str]:
    return {i: r for i, r in ep.labels(rules).items() if r}


@pytest.mark.parametrize("steps", [True, False], ids=["step-metadata", "observations-only"])
def test_each_editor_and_argument_rule_fires_on_its_case(steps):
    ep = Episode(steps=steps)
    ok = ep.call("str_replace_editor", {"command": "view", "path": "/testbed/pkg/mod.py"},
                 "Contents of /testbed/pkg/mod.py (cat -n):\n     1\tx = 1")
    miss = ep.call("str_replace_editor", {"command": "str_replace", "path": "/testbed/pkg/mod.py", "old_str": "y = 1",
                                          "new_str": "y = 2"},
                   "ERROR: `old_str` was not found verbatim in /testbed/pkg/mod.py; check whitespace", kind="not_found")
    twice = ep.call("str_replace_editor", {"command": "str_replace", "path": "/testbed/pkg/mod.py", "old_str": "x",
                                           "new_str": "z"},
                    "ERROR: `old_str` occurs 2 times in /testbed/pkg/mod.py (starting at lines 1, 4)", kind="not_unique")
    missing = ep.call("str_replace_editor", {"command": "view", "path": "/testbed/nope.py"},
                      "ERROR: /testbed/nope.py does not exist", kind="not_found")
    rng = ep.call("str_replace_editor", {"command": "view", "path": "/testbed/pkg/mod.py", "view_range": [50, 60]},
                  "ERROR: invalid view_range [50, 60]: the file has 1 line(s)", kind="bad_range")
    badjson = ep.call("execute_bash", '{"command": "ls', "ERROR: could not parse the arguments of execute_bash: "
                      "arguments are not valid JSON", kind="bad_arguments")
    badarg = ep.call("str_replace_editor", {"command": "view", "file": "/testbed"},
                     "ERROR: unexpected argument(s) for str_replace_editor: file; allowed: command, path",
                     kind="bad_arguments")
    unknown = ep.call("open_file", {"path": "/testbed/pkg/mod.py"},
                      "ERROR: unknown tool 'open_file'; available tools: execute_bash, str_replace_editor",
                      kind="unknown_tool")
    got = errors(ep)
    assert ok not in got
    assert got == {miss: "editor_error", twice: "editor_error", missing: "editor_error", rng: "editor_error",
                   badjson: "unparseable_call", badarg: "invalid_arguments", unknown: "unknown_tool"}


@pytest.mark.parametrize("steps", [True, False], ids=["step-metadata", "observations-only"])
def test_shell_errors_and_timeouts_fire(steps):
    ep = Episode(steps=steps)
    notfound = ep.bash("pytset -q", "bash: line 1: pytset: command not found", 127)
    notexec = ep.bash("./run.sh", "bash: line 1: ./run.sh: Permission denied", 126)
    syntax = ep.bash("for f in *; do echo $f", "bash: -c: line 2: syntax error: unexpected end of file", 2)
    slow = ep.call("execute_bash", {"command": "pytest"}, "[command timed out: killed after 120 seconds]",
                   kind="timeout")
    fine = ep.bash("ls", "pkg\nsetup.py", 0)
    got = errors(ep)
    assert got == {notfound: "shell_error", notexec: "shell_error", syntax: "shell_error", slow: "timeout"}
    assert fine not in got


def test_failing_tests_and_a_reproduced_bug_are_not_errors():
    ep = Episode()
    repro = ep.call("str_replace_editor", {"command": "create", "path": "/testbed/reproduce.py",
                                           "file_text": "from pkg.mod import f\nf([])\n"}, "Created /testbed/reproduce.py.")
    run = ep.bash("python reproduce.py",
                  'Traceback (most recent call last):\n  File "/testbed/reproduce.py", line 2, in <module>\n'
                  '    f([])\n  File "/testbed/pkg/mod.py", line 3, in f\n    raise ValueError("empty")\n'
                  "ValueError: empty", 1)
    tests = ep.bash("python -m pytest -q tests/test_mod.py",
                    "F.\n    def test_empty():\n>       assert f([]) == []\nE       AssertionError: assert None == []\n"
                    "tests/test_mod.py:4: AssertionError\n1 failed, 1 passed in 0.05s", 1)
    assert errors(ep) == {}
    assert {repro, run, tests} <= set(ep.labels())


def test_own_edit_traceback_masks_the_edit_that_broke_the_file():
    ep = Episode()
    edit = ep.call("str_replace_editor", {"command": "str_replace", "path": "/testbed/pkg/mod.py",
                                          "old_str": "return x", "new_str": "return xx"},
                   "The file /testbed/pkg/mod.py has been edited.")
    run = ep.bash("python -m pytest -q",
                  "==== ERRORS ====\ntests/test_mod.py:1: in <module>\n    from pkg.mod import f\n"
                  "pkg/mod.py:3: in f\n    return xx\nE   NameError: name 'xx' is not defined\n1 error", 2)
    assert errors(ep) == {edit: "own_edit_traceback"}
    assert errors(ep, LabelRules(traceback_blame="run")) == {run: "own_edit_traceback"}

    # a syntax error the agent wrote with a shell heredoc is blamed on that command
    ep2 = Episode()
    write = ep2.bash("cat > /testbed/pkg/util.py <<'EOF'\ndef g(:\n    pass\nEOF", "", 0)
    ep2.bash("python -c 'import pkg.util'",
             'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
             '  File "/testbed/pkg/util.py", line 1\n    def g(:\n          ^\nSyntaxError: invalid syntax', 1)
    assert errors(ep2) == {write: "own_edit_traceback"}

    # written and run by the same command
    ep3 = Episode()
    both = ep3.bash("cat > /testbed/check.py <<'EOF'\nprint(undefined_name)\nEOF\npython /testbed/check.py",
                    'Traceback (most recent call last):\n  File "/testbed/check.py", line 1, in <module>\n'
                    "    print(undefined_name)\nNameError: name 'undefined_name' is not defined", 1)
    assert errors(ep3) == {both: "own_edit_traceback"}


def test_a_reported_name_error_is_not_blamed_on_a_later_edit():
    ep = Episode()
    tb = ('Traceback (most recent call last):\n  File "/testbed/pkg/mod.py", line 9, in g\n    return helper(x)\n'
          "NameError: name 'helper' is not defined")
    ep.bash("python -c 'from pkg.mod import g; g(1)'", tb, 1)  # the bug, before any edit
    ep.call("str_replace_editor", {"command": "insert", "path": "/testbed/pkg/mod.py", "insert_line": 1,
                                   "new_str": "import os"}, "The file /testbed/pkg/mod.py has been edited.")
    ep.bash("python -c 'from pkg.mod import g; g(1)'", tb, 1)  # still failing the same way: not a new error
    assert errors(ep) == {}


def test_turns_without_a_call_and_unparsed_calls():
    ep = Episode()
    ep.bash("ls", "pkg", 0)
    chat = ep.say("I think the fix is simple.")
    ep.user("Please continue, using the tools; call finish when done.")
    markup = ep.say('<tool_call>\n{"name": "execute_bash", "arguments": {"command": "ls"\n</tool_call>')
    ep.user("ERROR: your tool call could not be parsed")
    malformed = ep.say("<function=execute_bash>\n<parameter=command>ls")
    ep.t.steps.append(Step(tool="", error=True, error_kind="malformed_call", message_index=malformed))
    ep.user("ERROR: your tool call could not be parsed")
    skipped_msg = ep.call("finish", {"message": "done"}, "done")
    last = ep.say("All done.")
    got = errors(ep)
    assert got == {chat: "no_tool_call", markup: "unparseable_call", malformed: "unparseable_call"}
    assert skipped_msg not in got and last not in got
    assert errors(ep, LabelRules(enabled=["editor_error"])) == {}


def test_calls_after_finish_are_masked_only_when_enabled():
    ep = Episode()
    idx = len(ep.t.messages)
    ep.t.messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "finish", "arguments": '{"message": "ok"}'}},
        {"id": "b", "type": "function", "function": {"name": "execute_bash", "arguments": '{"command": "ls"}'}}]})
    ep.t.messages += [{"role": "tool", "tool_call_id": "a", "content": "ok"},
                      {"role": "tool", "tool_call_id": "b",
                       "content": "Not executed: finish was already called in this message."}]
    ep.t.steps += [Step(tool="finish", message_index=idx),
                   Step(tool="execute_bash", error=True, error_kind="skipped", message_index=idx)]
    assert errors(ep) == {}
    on = LabelRules(enabled=[*LabelRules().enabled, "skipped_after_finish"])
    assert errors(ep, on) == {idx: "skipped_after_finish"}


def test_rules_config_is_checked():
    with pytest.raises(ValueError, match="unknown label rule"):
        LabelRules(enabled=["editor_error", "typo_rule"])
    with pytest.raises(ValueError, match="traceback_blame"):
        LabelRules(traceback_blame="both")
    # extra patterns extend a rule for calls without metadata
    ep = Episode(steps=False)
    odd = ep.call("str_replace_editor", {"command": "view", "path": "/x"}, "Oops: the editor is confused")
    assert errors(ep) == {}
    assert errors(ep, LabelRules(extra_patterns={"editor_error": [r"^Oops: the editor"]})) == {odd: "editor_error"}


def test_synthetic_episodes_get_exactly_their_planted_errors_with_or_without_steps():
    eps = synthetic_dataset(30, seed=5, mistakes=(0, 3))
    planted = 0
    for ep in eps:
        for t in (ep.trajectory, replace(ep.trajectory, steps=[])):
            got = {lab.message_index: lab.rule for lab in label_trajectory(t) if lab.error}
            assert got == ep.error_turns, t.instance_id
        planted += len(ep.error_turns)
    assert planted > 20


def _swe_lego_record() -> dict:
    """A record in SWE-Lego's released shape: text calls, observations as user turns."""
    call = "<function={name}>\n{params}</function>"

    def fn(name, **params):
        return call.format(name=name, params="".join(f"<parameter={k}>{v}</parameter>\n" for k, v in params.items()))

    result = "EXECUTION RESULT of [{}]:\n{}"
    return {"instance_id": "lego__repo-7", "messages": [
        {"role": "system", "content": "You are a helpful assistant that can interact with a computer."},
        {"role": "user", "content": "<issue>f() returns 1</issue>"},
        {"role": "assistant", "content": "Look first.\n" + fn("str_replace_editor", command="view", path="/testbed/a.py")},
        {"role": "user", "content": result.format("str_replace_editor", "Here's the result of running `cat -n`:\n"
                                                                        "     1\tdef f():\n     2\t    return 1")},
        {"role": "assistant", "content": fn("str_replace_editor", command="str_replace", path="/testbed/a.py",
                                            old_str="return 2", new_str="return 3")},
        {"role": "user", "content": result.format("str_replace_editor", "ERROR:\nNo replacement was performed, "
                                                  "old_str `return 2` did not appear verbatim in /testbed/a.py.")},
        {"role": "assistant", "content": fn("execute_bash", command="pytset")},
        {"role": "user", "content": result.format("execute_bash", "bash: pytset: command not found\n"
                                                                  "[The command completed with exit code 127.]")},
        {"role": "assistant", "content": fn("execute_bash", command="python -m pytest -q")},
        {"role": "user", "content": result.format("execute_bash", "E   AssertionError: assert 1 == 2\n1 failed\n"
                                                                  "[The command completed with exit code 1.]")},
        {"role": "assistant", "content": fn("finish", message="done")},
    ]}


def test_imported_swe_lego_records_get_labels():
    formats = pytest.importorskip("swelego.trajectories.formats")
    traj = formats.from_swe_lego(_swe_lego_record())
    labels = label_trajectory(traj)
    assert len(labels) == 5
    assert [lab.rule for lab in labels] == [None, "editor_error", "shell_error", None, None]


def test_label_command_counts_rules_and_skips_bad_records(tmp_path):
    eps = synthetic_dataset(12, seed=9, mistakes=(1, 2))
    src = tmp_path / "trajs.jsonl"
    lines = [ep.trajectory.to_json() for ep in eps]
    lines.insert(3, "{not json")
    lines.append(json.dumps(_swe_lego_record()))
    src.write_text("\n".join(lines) + "\n")
    res = subprocess.run([sys.executable, "-m", "swelego.cli", "sft", "label", str(src), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "trajs.jsonl:4" in res.stderr and "not valid JSON" in res.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = LabelSummary()
    for ep in eps:
        expected.add(label_trajectory(ep.trajectory))
    assert summary["unreadable_records"] == 1
    assert summary["trajectories"] == len(eps) + 1
    assert summary["masked_turns"] == expected.masked + 2  # the SWE-Lego record adds two
    assert summary["masked_by_rule"]["editor_error"] >= 1 and summary["masked_by_rule"]["shell_error"] >= 1
    assert "all rules" in res.stdout and f"{summary['masked_turns']} masked" in res.stdout
    rows = [json.loads(x) for x in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == len(eps) + 1
    first = rows[0]["labels"]
    assert [x["message_index"] for x in first] == [
        i for i, m in enumerate(eps[0].trajectory.messages) if m["role"] == "assistant"]
