"""Trajectory formats: text tool-call parsing, OpenHands and LLaMA-Factory sharegpt export,
SWE-Lego and SWE-Gym/OpenHands import, round trips, and the export/import commands."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from data_gen.cli import data
from swelego.agent.loop import DEFAULT_SYSTEM_PROMPT, MALFORMED, NUDGE, USER_TEMPLATE
from swelego.agent.textcalls import (
    ParsedCalls,
    describe_tools,
    openhands_system_suffix,
    parse_text_tool_calls,
    parse_tool_descriptions,
    render_openhands_call,
    split_system_prompt,
)
from swelego.agent.tools import TOOL_SCHEMAS
from swelego.trajectories.formats import (
    error_turns_from_steps,
    from_openhands,
    from_swe_lego,
    infer_step,
    to_openhands_messages,
    to_sharegpt,
)
from swelego.trajectories.record import Step, Trajectory

# -- a realistic trajectory in the shape run_episode records ---------------------------------

STATS_VIEW = (
    "Contents of /testbed/toycalc/stats.py (cat -n):\n"
    "     1\tdef median(xs):\n"
    "     2\t    xs = sorted(xs)\n"
    "     3\t    n = len(xs)\n"
    "     4\t    return xs[n // 2]\n"
)
OLD = "    n = len(xs)\n    return xs[n // 2]\n"
NEW = ("    n = len(xs)\n    if n % 2 == 0:\n        return (xs[n // 2 - 1] + xs[n // 2]) / 2\n"
       "    return xs[n // 2]\n")


def _call(cid: str, name: str, **args) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def make_trajectory(finished: bool = True) -> Trajectory:
    """A toy-task episode: exploration, a failing test run, a non-unique edit (an error), the
    fix with multi-line strings, two calls in one message, a turn without a call, finish."""
    msgs: list[dict] = [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": USER_TEMPLATE.format(problem_statement="median() is wrong for even lengths")},
        {"role": "assistant", "content": "Let me look at the repository first.",
         "tool_calls": [_call("c1", "str_replace_editor", command="view", path="/testbed")]},
        {"role": "tool", "tool_call_id": "c1", "content":
            "Files and directories up to 2 levels deep in /testbed (hidden items excluded):\n/testbed/\n"
            "/testbed/tests/\n/testbed/tests/test_stats.py\n/testbed/toycalc/\n/testbed/toycalc/stats.py"},
        {"role": "assistant", "content": None,
         "tool_calls": [_call("c2", "str_replace_editor", command="view", path="/testbed/toycalc/stats.py",
                              view_range=[1, -1])]},
        {"role": "tool", "tool_call_id": "c2", "content": STATS_VIEW},
        {"role": "assistant", "content": "Run the tests to see the failure.",
         "tool_calls": [_call("c3", "execute_bash", command="python -m pytest -q tests 2>&1 | tail -3",
                              timeout=60)]},
        {"role": "tool", "tool_call_id": "c3", "content":
            "FAILED tests/test_stats.py::test_even - assert 2 == 2.5\n1 failed, 3 passed in 0.05s\n[exit code: 1]"},
        {"role": "assistant", "content": None,
         "tool_calls": [_call("c4", "str_replace_editor", command="str_replace",
                              path="/testbed/toycalc/stats.py", old_str="xs", new_str="ys")]},
        {"role": "tool", "tool_call_id": "c4", "content":
            "ERROR: `old_str` occurs 4 times in /testbed/toycalc/stats.py (starting at lines 1, 2, 3, 4); "
            "include more surrounding context to make it unique"},
        {"role": "assistant", "content": "Handle the even case.",
         "tool_calls": [_call("c5", "str_replace_editor", command="str_replace",
                              path="/testbed/toycalc/stats.py", old_str=OLD, new_str=NEW)]},
        {"role": "tool", "tool_call_id": "c5", "content":
            "The file /testbed/toycalc/stats.py has been edited. Lines 1-6 now read (cat -n):\n"
            "     1\tdef median(xs):\n     2\t    xs = sorted(xs)\n     3\t    n = len(xs)\n"
            "     4\t    if n % 2 == 0:\n     5\t        return (xs[n // 2 - 1] + xs[n // 2]) / 2\n"
            "     6\t    return xs[n // 2]\n"
            "Check that the change is what you intended; use undo_edit to revert it."},
        {"role": "assistant", "content": "Note it, then rerun.",
         "tool_calls": [_call("c6", "think", thought="Even lengths average the middle pair.\n\nOdd: unchanged."),
                        _call("c7", "execute_bash", command="python -m pytest -q tests")]},
        {"role": "tool", "tool_call_id": "c6", "content": "Your thought has been recorded."},
        {"role": "tool", "tool_call_id": "c7", "content": "....\n4 passed in 0.04s\n[exit code: 0]"},
        {"role": "assistant", "content": "All tests pass now."},
        {"role": "user", "content": NUDGE},
    ]
    steps = [Step("str_replace_editor", message_index=2), Step("str_replace_editor", message_index=4),
             Step("execute_bash", exit_code=1, message_index=6),
             Step("str_replace_editor", error=True, error_kind="not_unique", message_index=8),
             Step("str_replace_editor", message_index=10), Step("think", message_index=12),
             Step("execute_bash", exit_code=0, message_index=12)]
    if finished:
        msgs += [
            {"role": "assistant", "content": None,
             "tool_calls": [_call("c8", "finish", message="Fixed median() for even-length input.")]},
            {"role": "tool", "tool_call_id": "c8", "content": "Fixed median() for even-length input."},
        ]
        steps.append(Step("finish", message_index=17))
    return Trajectory(instance_id="toy__toycalc-1", messages=msgs, tools=list(TOOL_SCHEMAS), steps=steps,
                      patch="diff --git a/toycalc/stats.py b/toycalc/stats.py\n", resolved=finished,
                      semi_resolved=False, policy="oracle", turns=8 if finished else 7,
                      exit_reason="finish" if finished else "max_turns")


def canon(messages: list[dict]) -> list[dict]:
    """Messages with call ids replaced by their order and arguments parsed (ids are not kept
    by text formats); "" and None both mean an assistant turn without text."""
    ids: dict[str, int] = {}
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [(ids.setdefault(c["id"], len(ids)), c["function"]["name"],
                                json.loads(c["function"]["arguments"])) for c in m["tool_calls"]]
        if m["role"] == "tool":
            m["tool_call_id"] = ids[m["tool_call_id"]]
        if m["role"] == "assistant" and not m.get("content"):
            m["content"] = None
        out.append(m)
    return out


def step_view(steps: list[Step]) -> list[tuple]:
    return [(s.tool, s.error, s.exit_code, s.message_index) for s in steps]


# -- parsing text calls -------------------------------------------------------------------------


def test_openhands_call_with_multiline_values_and_typed_arguments():
    text = (
        "The even case is missing.\n"
        "<function=str_replace_editor>\n"
        "<parameter=command>insert</parameter>\n"
        "<parameter=path>/testbed/toycalc/stats.py</parameter>\n"
        "<parameter=insert_line>3</parameter>\n"
        "<parameter=new_str>\n"
        "    if n % 2 == 0:\n"
        "\n"
        "        return (xs[n // 2 - 1] + xs[n // 2]) / 2\n"
        "</parameter>\n"
        "</function>"
    )
    p = parse_text_tool_calls(text, id_prefix="t")
    assert isinstance(p, ParsedCalls) and p.errors == []
    assert p.content == "The even case is missing."
    [call] = p.tool_calls
    assert call["id"] == "t_0" and call["type"] == "function"
    assert call["function"]["name"] == "str_replace_editor"
    args = json.loads(call["function"]["arguments"])
    # indentation and the inner blank line survive; only the layout newlines go
    assert args == {"command": "insert", "path": "/testbed/toycalc/stats.py", "insert_line": 3,
                    "new_str": "    if n % 2 == 0:\n\n        return (xs[n // 2 - 1] + xs[n // 2]) / 2"}


@pytest.mark.parametrize("ending", ["", "\n", "\n</function", "\n</"])
def test_call_cut_by_the_stop_word_still_parses(ending):
    text = ("Run it.\n<function=execute_bash>\n<parameter=command>\ncd /testbed && pytest -q\n</parameter>\n"
            "<parameter=timeout>120</parameter>" + ending)
    p = parse_text_tool_calls(text)
    assert p.errors == [] and p.content == "Run it."
    assert json.loads(p.tool_calls[0]["function"]["arguments"]) == {"command": "cd /testbed && pytest -q",
                                                                    "timeout": 120}


def test_values_may_contain_call_tags():
    # e.g. editing a file that itself mentions the call format: a value runs to its own </parameter>
    body = 'FORMAT = "<function=NAME> ... </function>"\nTAG = "<tool_call>"\n'
    text = render_openhands_call("str_replace_editor", {"command": "create", "path": "/testbed/p.py",
                                                        "file_text": body})
    p = parse_text_tool_calls(text + "\nDone.")
    assert p.errors == [] and p.content == "Done."
    assert json.loads(p.tool_calls[0]["function"]["arguments"])["file_text"] == body


def test_qwen_tool_calls_object_string_and_invalid_json():
    text = (
        "Two things.\n"
        '<tool_call>\n{"name": "think", "arguments": {"thought": "check the tests"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "execute_bash", "arguments": "{\\"command\\": \\"ls\\"}"}\n</tool_call>\n'
        '<tool_call>\n{"name": "execute_bash", "arguments": {"command": "ls" </tool_call>\n'
        "done"
    )
    p = parse_text_tool_calls(text)
    assert [c["function"]["name"] for c in p.tool_calls] == ["think", "execute_bash"]
    assert json.loads(p.tool_calls[1]["function"]["arguments"]) == {"command": "ls"}
    assert len(p.errors) == 1 and "call 3" in p.errors[0] and "invalid JSON" in p.errors[0]
    assert p.content == "Two things.\n\n\n\ndone"  # the text between the calls, as written
    bad_args = parse_text_tool_calls('<tool_call>{"name": "think", "arguments": "{not json"}</tool_call>')
    assert bad_args.tool_calls == [] and "not valid JSON" in bad_args.errors[0]
    no_name = parse_text_tool_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert no_name.tool_calls == [] and '"name"' in no_name.errors[0]


def test_qwen3_coder_xml_inside_tool_call_and_unclosed_tool_call():
    text = ("<tool_call>\n<function=str_replace_editor>\n<parameter=command>\nview\n</parameter>\n"
            "<parameter=path>\n/testbed\n</parameter>\n<parameter=view_range>\n[1, 5]\n</parameter>\n"
            "</function>\n</tool_call>\n<tool_call>\n{\"name\": \"finish\", \"arguments\": {\"message\": \"ok\"}}")
    p = parse_text_tool_calls(text)
    assert p.errors == []
    assert [json.loads(c["function"]["arguments"]) for c in p.tool_calls] == [
        {"command": "view", "path": "/testbed", "view_range": [1, 5]}, {"message": "ok"}]


def test_json_tool_call_whose_value_mentions_function_tags():
    args = {"command": "create", "path": "/testbed/fmt.py", "file_text": 'X = "<function=think>"\n'}
    p = parse_text_tool_calls("<tool_call>\n" + json.dumps({"name": "str_replace_editor", "arguments": args})
                              + "\n</tool_call>")
    assert p.errors == [] and json.loads(p.tool_calls[0]["function"]["arguments"]) == args


def test_calls_keep_their_order_across_formats():
    text = ('<tool_call>{"name": "think", "arguments": {"thought": "a"}}</tool_call>\n'
            "<function=think>\n<parameter=thought>b</parameter>\n</function>\n"
            '<tool_call>{"name": "think", "arguments": {"thought": "c"}}</tool_call>')
    p = parse_text_tool_calls(text)
    assert [json.loads(c["function"]["arguments"])["thought"] for c in p.tool_calls] == ["a", "b", "c"]
    assert len({c["id"] for c in p.tool_calls}) == 3


@pytest.mark.parametrize("text, needle", [
    ("<function=think>\n<parameter=thought>never closed\n</function>", "'thought' is not closed"),
    ("<function=think>\n<parameter=thought>a\n<parameter=x>b</parameter>\n</function>", "'thought' is not closed"),
    ("<function=think>\n<parameter=thought>a</parameter>\n<parameter=thought>b</parameter>\n</function>",
     "given twice"),
    ("<function=>\n<parameter=thought>a</parameter>\n</function>", "function name"),
    ("<function=think>\n<parameter=>a</parameter>\n</function>", "has no name"),
])
def test_malformed_openhands_calls_become_errors(text, needle):
    p = parse_text_tool_calls(text)
    assert p.tool_calls == []
    assert len(p.errors) == 1 and needle in p.errors[0], p.errors


def test_unknown_tool_names_are_calls_unless_names_are_given():
    text = "<function=search>\n<parameter=query>median</parameter>\n</function>"
    open_p = parse_text_tool_calls(text)
    assert [c["function"]["name"] for c in open_p.tool_calls] == ["search"] and open_p.errors == []
    strict = parse_text_tool_calls(text, ["execute_bash", "finish"])
    assert strict.tool_calls == []
    assert strict.errors == ["call 1 (<function=search>): unknown function 'search'; available: execute_bash, finish"]


def test_typing_follows_the_schema_and_leaves_misfits_as_text():
    text = ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/a</parameter>\n"
            "<parameter=view_range>first ten</parameter>\n<parameter=insert_line>x</parameter>\n</function>")
    args = json.loads(parse_text_tool_calls(text).tool_calls[0]["function"]["arguments"])
    assert args["view_range"] == "first ten" and args["insert_line"] == "x"
    untyped = parse_text_tool_calls(text.replace("first ten", "[3, 4]"), schemas=[])
    assert json.loads(untyped.tool_calls[0]["function"]["arguments"])["view_range"] == "[3, 4]"
    bash = parse_text_tool_calls("<function=execute_bash>\n<parameter=command>42</parameter>\n"
                                 "<parameter=timeout>2.5</parameter>\n</function>")
    assert json.loads(bash.tool_calls[0]["function"]["arguments"]) == {"command": "42", "timeout": 2.5}


def test_plain_text_has_no_calls():
    p = parse_text_tool_calls("  I am done; the tests pass.  \n")
    assert p == ParsedCalls(content="I am done; the tests pass.", tool_calls=[], errors=[])


@pytest.mark.parametrize("value", ["x", "", "  indented\n", "\nstarts with a newline", "a\n\n\nb\n\n",
                                   "ünïcode → ✓", "tab\tand 'quotes' \"too\""])
def test_render_then_parse_keeps_string_values(value):
    text = render_openhands_call("str_replace_editor",
                                 json.dumps({"command": "create", "path": "/t/f", "file_text": value}))
    args = json.loads(parse_text_tool_calls(text).tool_calls[0]["function"]["arguments"])
    assert args["file_text"] == value


def test_render_rejects_arguments_that_are_not_an_object():
    with pytest.raises(ValueError):
        render_openhands_call("think", "[1, 2]")


# -- rendering and tool descriptions -----------------------------------------------------------


def test_system_suffix_describes_tools_and_parses_back():
    suffix = openhands_system_suffix(TOOL_SCHEMAS)
    assert suffix.startswith("\nYou have access to the following functions:\n\n---- BEGIN FUNCTION #1: execute_bash ----")
    assert "---- END FUNCTION #4 ----" in suffix and "<function=FUNCTION_NAME>" in suffix
    assert "  (1) command (string, required): The bash command to run; with `is_input`" in suffix
    assert "Allowed values: [`view`, `create`, `str_replace`, `insert`, `undo_edit`]" in suffix
    base, tools = split_system_prompt(DEFAULT_SYSTEM_PROMPT + suffix)
    assert base == DEFAULT_SYSTEM_PROMPT and tools == TOOL_SCHEMAS


def test_foreign_tool_descriptions_parse_to_schemas():
    foreign = [{"type": "function", "function": {
        "name": "execute_bash", "description": "Run a command in a persistent shell.\n\n### Notes\n* one at a time",
        "parameters": {"type": "object", "required": ["command"], "properties": {
            "command": {"type": "string", "description": "The command."},
            "is_input": {"type": "string", "enum": ["true", "false"], "description": "Send to the running process."},
            "timeout": {"type": "number", "description": "Hard timeout in seconds."}}}}},
        {"type": "function", "function": {"name": "noop", "description": "Nothing."}}]
    parsed = parse_tool_descriptions(describe_tools(foreign))
    assert parsed[0] == {"type": "function", "function": {**foreign[0]["function"], "parameters": {
        "type": "object", "required": ["command"], "properties": foreign[0]["function"]["parameters"]["properties"]}}}
    assert parsed[1]["function"]["name"] == "noop" and parsed[1]["function"]["parameters"]["properties"] == {}


def test_openhands_messages_have_no_native_fields():
    traj = make_trajectory()
    msgs = to_openhands_messages(traj)
    assert len(msgs) == len(traj.messages)
    assert all(set(m) == {"role", "content"} and m["role"] in ("system", "user", "assistant") for m in msgs)
    assert msgs[0]["content"].startswith(DEFAULT_SYSTEM_PROMPT + "\nYou have access to the following functions:")
    assert msgs[3]["content"].startswith("EXECUTION RESULT of [str_replace_editor]:\nFiles and directories")
    assert msgs[7]["content"] == "EXECUTION RESULT of [execute_bash]:\n" + traj.messages[7]["content"]
    assert msgs[4]["content"] == ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
                                  "<parameter=path>/testbed/toycalc/stats.py</parameter>\n"
                                  "<parameter=view_range>[1, -1]</parameter>\n</function>")
    assert msgs[12]["content"].startswith("Note it, then rerun.\n\n<function=think>\n")
    assert msgs[12]["content"].count("<function=") == 2
    assert msgs[16] == {"role": "user", "content": NUDGE}


# -- sharegpt export ---------------------------------------------------------------------------


def _llamafactory_valid(messages: list[dict]) -> None:
    """The checks LLaMA-Factory's sharegpt converter applies (system first, then user at odd and
    assistant at even positions, an even count)."""
    assert messages[0]["role"] == "system"
    rest = messages[1:]
    assert len(rest) % 2 == 0
    for i, m in enumerate(rest):
        assert m["role"] == ("user" if i % 2 == 0 else "assistant"), (i, m["role"])
        assert isinstance(m["content"], str)
        assert ("turn_mask" in m) == (m["role"] == "assistant")


def test_sharegpt_export_masks_error_turns_from_steps():
    traj = make_trajectory()
    assert error_turns_from_steps(traj) == {8}
    row = to_sharegpt(traj, error_turns=error_turns_from_steps(traj))
    msgs = row["messages"]
    _llamafactory_valid(msgs)
    assert row["instance_id"] == "toy__toycalc-1" and row["resolved"] is True and row["policy"] == "oracle"
    assistant = [m for m in msgs if m["role"] == "assistant"]
    assert len(assistant) == 8
    assert [m["turn_mask"] for m in assistant] == [False, False, False, True, False, False, False, False]
    assert "old_str" in assistant[3]["content"] and "<parameter=old_str>xs</parameter>" in assistant[3]["content"]
    # the two results of the two-call turn share one user turn; finish's result is gone
    merged = next(m for m in msgs if m["content"].startswith("EXECUTION RESULT of [think]"))
    assert "\n\nEXECUTION RESULT of [execute_bash]:\n....\n4 passed" in merged["content"]
    assert msgs[-1]["content"].startswith("<function=finish>")


def test_sharegpt_default_labels_and_explicit_turns():
    traj = make_trajectory()
    row = to_sharegpt(traj)  # the error-label rules (swelego.trajectories.labels)
    masks = [m["turn_mask"] for m in row["messages"] if m["role"] == "assistant"]
    assert masks[3] is True and all(isinstance(x, bool) for x in masks)
    explicit = to_sharegpt(traj, error_turns={2, 12})
    assert [m["turn_mask"] for m in explicit["messages"] if m["role"] == "assistant"] == \
        [True, False, False, False, False, True, False, False]
    assert not any(m["turn_mask"] for m in to_sharegpt(traj, error_turns=())["messages"] if "turn_mask" in m)


def test_steps_without_message_index_pair_with_tool_messages_in_order():
    traj = make_trajectory()
    for s in traj.steps:
        s.message_index = None
    assert error_turns_from_steps(traj) == {8}


def test_sharegpt_needs_an_assistant_turn():
    traj = Trajectory(instance_id="x", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    with pytest.raises(ValueError, match="no assistant turn"):
        to_sharegpt(traj)


def test_sharegpt_file_loads_with_datasets_and_keeps_masks(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    rows = [to_sharegpt(make_trajectory(), error_turns={8}), to_sharegpt(make_trajectory(False), error_turns={2})]
    path = tmp_path / "swe_lego_style.json"
    path.write_text(json.dumps(rows))
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    masks = [[bool(m.get("turn_mask", False)) for m in r["messages"] if m["role"] == "assistant"] for r in ds]
    assert masks[0] == [False, False, False, True, False, False, False, False]
    assert masks[1] == [True, False, False, False, False, False, False]
    # user turns carry no flag (datasets 5 keeps the dicts as they are; older Arrow schemas fill
    # a null): either way LLaMA-Factory's message.get('turn_mask', False) reads them as unmasked
    assert not any(m.get("turn_mask") for r in ds for m in r["messages"] if m["role"] != "assistant")
    assert all(isinstance(m["turn_mask"], bool) for r in ds for m in r["messages"] if m["role"] == "assistant")


# -- round trips -------------------------------------------------------------------------------


def test_round_trip_through_openhands_text():
    traj = make_trajectory()
    back = from_openhands({"instance_id": traj.instance_id, "messages": to_openhands_messages(traj),
                           "resolved": True})
    assert canon(back.messages) == canon(traj.messages)
    assert back.tools == traj.tools
    assert step_view(back.steps) == step_view(traj.steps)
    assert back.exit_reason == "finish" and back.turns == 8 and back.resolved is True


@pytest.mark.parametrize("finished", [True, False])
def test_round_trip_through_sharegpt(finished):
    traj = make_trajectory(finished)
    row = json.loads(json.dumps(to_sharegpt(traj)))
    back = from_swe_lego(row)
    # sharegpt ends on the assistant turn; the finish result comes back from its message,
    # the last observation of an unfinished run does not
    expected = traj.messages if finished else traj.messages[:-1]
    assert canon(back.messages) == canon(expected)
    assert back.tools == traj.tools and back.patch == traj.patch
    assert back.resolved is traj.resolved and back.semi_resolved is False and back.policy == "oracle"
    assert step_view(back.steps) == step_view(traj.steps)
    assert back.exit_reason == ("finish" if finished else "max_turns")
    # and once more: the re-export is identical
    assert to_sharegpt(back, error_turns={8}) == to_sharegpt(traj, error_turns={8})


def test_malformed_turn_round_trips_as_a_failed_step():
    traj = make_trajectory()
    # what the loop records when a text call did not parse: the words, then its error turn
    traj.messages[15:17] = [
        {"role": "assistant", "content": "Rerun."},
        {"role": "user", "content": MALFORMED.format(errors="call 1 (<function=execute_bash>): parameter "
                                                            "'command' is not closed")},
    ]
    traj.steps.insert(7, Step("", error=True, error_kind="malformed_call", message_index=15))
    assert error_turns_from_steps(traj) == {8, 15}
    back = from_swe_lego(to_sharegpt(traj))
    assert canon(back.messages) == canon(traj.messages)
    assert step_view(back.steps) == step_view(traj.steps)


# -- importers ---------------------------------------------------------------------------------

SWE_LEGO_SYSTEM = (
    "You are OpenHands agent, a helpful AI assistant that can interact with a computer to solve tasks.\n\n"
    "<ROLE>\nSolve the task in the repository.\n</ROLE>\n"
    "You have access to the following functions:\n\n"
    "---- BEGIN FUNCTION #1: execute_bash ----\n"
    "Description: Execute a bash command in the terminal within a persistent shell session.\n\n"
    "### Command Execution\n* One command at a time.\n\n"
    "Parameters:\n"
    "  (1) command (string, required): The bash command to execute.\n"
    "  (2) is_input (string, optional): If True, the command is an input to the running process.\n"
    "Allowed values: [`true`, `false`]\n"
    "  (3) timeout (number, optional): Optional. Sets a hard timeout in seconds.\n"
    "---- END FUNCTION #1 ----\n\n"
    "---- BEGIN FUNCTION #2: think ----\n"
    "Description: Use the tool to think about something.\n"
    "Parameters:\n  (1) thought (string, required): The thought to log.\n"
    "---- END FUNCTION #2 ----\n\n"
    "---- BEGIN FUNCTION #3: finish ----\n"
    "Description: Signals the completion of the current task or conversation.\n"
    "Parameters:\n  (1) message (string, required): Final message to send to the user\n"
    "---- END FUNCTION #3 ----\n\n"
    "---- BEGIN FUNCTION #4: str_replace_editor ----\n"
    "Description: Custom editing tool for viewing, creating and editing files in plain-text format\n"
    "Parameters:\n"
    "  (1) command (string, required): The commands to run.\n"
    "Allowed values: [`view`, `create`, `str_replace`, `insert`, `undo_edit`]\n"
    "  (2) path (string, required): Absolute path to file or directory.\n"
    "  (3) file_text (string, optional): Required parameter of `create` command.\n"
    "  (4) old_str (string, optional): Required parameter of `str_replace` command.\n"
    "  (5) new_str (string, optional): Optional parameter of `str_replace` command.\n"
    "  (6) insert_line (integer, optional): Required parameter of `insert` command.\n"
    "  (7) view_range (array, optional): Optional parameter of `view` command.\n"
    "---- END FUNCTION #4 ----\n\n\n"
    "If you choose to call a function ONLY reply in the required format.\n"
)


def swe_lego_record() -> dict:
    """A record shaped like SWE-Lego-Real-Data's `resolved` split (sharegpt, text calls)."""
    return {
        "instance_id": "pydata__xarray-4075",
        "resolved": True,
        "messages": [
            {"role": "system", "content": SWE_LEGO_SYSTEM},
            {"role": "user", "content": "<uploaded_files>\n/testbed\n</uploaded_files>\n"
                                        "I've uploaded a python code repository in the directory /testbed. "
                                        "Consider the following issue description: ..."},
            {"role": "assistant", "content": "I'll start by exploring the repository.\n\n"
                                             "<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
                                             "<parameter=path>/testbed/xarray/core</parameter>\n"
                                             "<parameter=view_range>[1, 40]</parameter>\n</function>"},
            {"role": "user", "content": "EXECUTION RESULT of [str_replace_editor]:\nERROR:\nThe `view_range` "
                                        "parameter is not allowed when `path` points to a directory."},
            {"role": "assistant", "content": "<function=execute_bash>\n<parameter=command>\n"
                                             "cd /testbed && grep -n \"def _sum_of_weights\" -r xarray\n"
                                             "</parameter>\n<parameter=timeout>30</parameter>\n</function>"},
            {"role": "user", "content": "EXECUTION RESULT of [execute_bash]:\nxarray/core/weighted.py:137:    "
                                        "def _sum_of_weights(\n[The command completed with exit code 0.]\n"
                                        "[Current working directory: /testbed]"},
            {"role": "assistant", "content": "<function=execute_bash>\n<parameter=command>cd /testbed && python "
                                             "reproduce.py</parameter>\n</function>"},
            {"role": "user", "content": "EXECUTION RESULT of [execute_bash]:\nTraceback (most recent call last):\n"
                                        "  File \"/testbed/reproduce.py\", line 1, in <module>\nValueError: boom\n"
                                        "[The command completed with exit code 1.]"},
            {"role": "assistant", "content": "Fix the dtype.\n<function=str_replace_editor>\n"
                                             "<parameter=command>str_replace</parameter>\n"
                                             "<parameter=path>/testbed/xarray/core/weighted.py</parameter>\n"
                                             "<parameter=old_str>\n        mask = da.notnull()\n</parameter>\n"
                                             "<parameter=new_str>\n        mask = da.notnull() * 1\n</parameter>\n"
                                             "</function>"},
            {"role": "user", "content": "EXECUTION RESULT of [str_replace_editor]:\nThe file "
                                        "/testbed/xarray/core/weighted.py has been edited."},
            {"role": "assistant", "content": "The fix works.\n\n<function=finish>\n<parameter=message>\n"
                                             "Cast the boolean mask to int.\n</parameter>\n</function>"},
        ],
    }


def test_import_swe_lego_record():
    t = from_swe_lego(swe_lego_record())
    assert t.instance_id == "pydata__xarray-4075" and t.resolved is True and t.policy == "swe-lego"
    assert t.messages[0]["content"].endswith("</ROLE>") and "BEGIN FUNCTION" not in t.messages[0]["content"]
    assert [s["function"]["name"] for s in t.tools] == ["execute_bash", "think", "finish", "str_replace_editor"]
    bash = t.tools[0]["function"]["parameters"]
    assert bash["properties"]["is_input"]["enum"] == ["true", "false"] and bash["required"] == ["command"]
    roles = [m["role"] for m in t.messages]
    assert roles == ["system", "user"] + ["assistant", "tool"] * 5
    calls = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
             for m in t.messages if m["role"] == "assistant" for c in m["tool_calls"]]
    assert calls[0] == ("str_replace_editor", {"command": "view", "path": "/testbed/xarray/core",
                                               "view_range": [1, 40]})
    assert calls[1] == ("execute_bash", {"command": "cd /testbed && grep -n \"def _sum_of_weights\" -r xarray",
                                         "timeout": 30})
    assert calls[3][1]["old_str"] == "        mask = da.notnull()"
    assert calls[4] == ("finish", {"message": "Cast the boolean mask to int."})
    assert t.messages[2]["content"] == "I'll start by exploring the repository."
    assert t.messages[3]["content"].startswith("ERROR:\nThe `view_range`")
    # the final finish result is restored from its message (sharegpt ends on the assistant)
    assert t.messages[-1] == {"role": "tool", "tool_call_id": t.messages[-2]["tool_calls"][0]["id"],
                              "content": "Cast the boolean mask to int."}
    assert step_view(t.steps) == [("str_replace_editor", True, None, 2), ("execute_bash", False, 0, 4),
                                  ("execute_bash", False, 1, 6), ("str_replace_editor", False, None, 8),
                                  ("finish", False, None, 10)]
    assert t.exit_reason == "finish" and t.turns == 5
    # and it exports back to the same conversation, now with masks
    row = to_sharegpt(t)
    _llamafactory_valid(row["messages"])
    assert [m["turn_mask"] for m in row["messages"] if m["role"] == "assistant"][0] is True


def swe_gym_native_record() -> dict:
    """A record shaped like SWE-Gym/OpenHands-Sampled-Trajectories `train.raw`."""
    none = {"function_call": None, "name": None, "tool_call_id": None, "tool_calls": None}
    return {
        "instance_id": "pandas-dev__pandas-48686_0",
        "run_id": "gpt-4o-2024-08-06_maxiter_50_N_v2.1-no-hint-train-t1-run_1",
        "resolved": False,
        "tools": [{"type": "function", "function": {"name": "execute_bash", "description": "Run bash.",
                   "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                                  "required": ["command"]}}}],
        "test_result": {"git_patch": "diff --git a/x b/x\n"},
        "messages": [
            {**none, "role": "system", "content": "You are a helpful assistant that can interact with a computer."},
            {**none, "role": "user", "content": "<uploaded_files>\n/workspace/pandas-dev__pandas__2.0\n"},
            {**none, "role": "assistant", "content": "", "tool_calls": [
                {"function": {"arguments": "{\"command\":\"view\",\"path\":\"/workspace/p\",\"view_range\":[0,20]}",
                              "name": "str_replace_editor"}, "id": "call_fHiv", "index": None, "type": "function"}]},
            {**none, "role": "tool", "name": "str_replace_editor", "tool_call_id": "call_fHiv",
             "content": "OBSERVATION:\nERROR:\nThe `view_range` parameter is not allowed when `path` points to a "
                        "directory."},
            {**none, "role": "assistant", "content": "Let me search instead.", "tool_calls": [
                {"function": {"arguments": "{\"command\":\"grep -rn to_datetime /workspace/p | head\"}",
                              "name": "execute_bash"}, "id": "call_Zr", "index": None, "type": "function"}]},
            {**none, "role": "tool", "name": "execute_bash", "tool_call_id": "call_Zr",
             "content": "OBSERVATION:\npandas/core/tools/datetimes.py:1\n[Python Interpreter: /opt/bin/python]\n"
                        "root@openhands-workspace:/workspace/p # \n[Command finished with exit code 0]"},
            {**none, "role": "assistant", "content": "I could not finish."},
        ],
    }


def test_import_swe_gym_native_record():
    t = from_openhands(swe_gym_native_record())
    assert t.instance_id == "pandas-dev__pandas-48686_0" and t.resolved is False and t.policy == "openhands"
    assert t.tools[0]["function"]["name"] == "execute_bash"
    # the null-filled keys of the parquet schema are gone; calls keep their ids and JSON strings
    assert t.messages[2] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_fHiv", "type": "function", "function": {
            "name": "str_replace_editor", "arguments": "{\"command\":\"view\",\"path\":\"/workspace/p\",\"view_range\":[0,20]}"}}]}
    assert t.messages[3] == {"role": "tool", "tool_call_id": "call_fHiv", "content": t.messages[3]["content"]}
    assert step_view(t.steps) == [("str_replace_editor", True, None, 2), ("execute_bash", False, 0, 4)]
    assert t.exit_reason == "max_turns" and t.turns == 3
    row = to_sharegpt(t)
    _llamafactory_valid(row["messages"])


def test_import_openhands_text_and_other_exports():
    # a mock-format transcript (as SWE-Gym's SFT data and OpenHands' converter write it)
    text = from_openhands({"instance_id": "a__b-1", "messages": swe_lego_record()["messages"]})
    assert [s.tool for s in text.steps] == ["str_replace_editor", "execute_bash", "execute_bash",
                                            "str_replace_editor", "finish"]
    # nebius-style export: `trajectory`, integer `resolved`, `model_patch`, arguments as objects
    neb = from_openhands({
        "instance_id": "PyPSA__linopy-79", "resolved": 1, "model_patch": "diff --git a/l b/l\n",
        "trajectory": [
            {"role": "system", "content": "sys"}, {"role": "user", "content": "fix it"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "execute_bash",
                                                              "arguments": {"command": "ls", "timeout": 5}}}]},
            {"role": "tool", "tool_call_id": "t1", "name": "execute_bash",
             "content": "README.md\n[The command completed with exit code 0.]"}]})
    assert neb.resolved is True and neb.patch == "diff --git a/l b/l\n"
    assert json.loads(neb.messages[2]["tool_calls"][0]["function"]["arguments"]) == {"command": "ls", "timeout": 5}
    assert step_view(neb.steps) == [("execute_bash", False, 0, 2)]


@pytest.mark.parametrize("record, needle", [
    ({"messages": [{"role": "user", "content": "x"}]}, "instance_id"),
    ({"instance_id": "a"}, "messages"),
    ({"instance_id": "a", "messages": [{"content": "x"}]}, "without a role"),
    (["not", "a", "dict"], "JSON object"),
])
def test_bad_records_raise_value_errors(record, needle):
    with pytest.raises(ValueError, match=needle):
        from_swe_lego(record)


def test_infer_step_reads_observation_markers():
    assert infer_step("execute_bash", "x\n[exit code: 2]") == Step("execute_bash", exit_code=2)
    assert infer_step("execute_bash", "[command timed out: killed after 5 seconds; ...]").error_kind == "timeout"
    assert infer_step("str_replace_editor", "ERROR: `old_str` was not found").error is True
    assert infer_step("execute_bash", "a\n[... 900 characters truncated ...]\nb\n[exit code: 0]").truncated
    assert infer_step("finish", "Not executed: finish was already called in this message.").error_kind == "skipped"
    assert infer_step("execute_bash", "grep ERROR log\n[exit code: 0]").error is False


# -- the commands ------------------------------------------------------------------------------


def _write_jsonl(path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def test_export_then_import_through_the_commands(tmp_path):
    runs = tmp_path / "rollout"
    runs.mkdir()
    _write_jsonl(runs / "trajectories.jsonl",
                 [make_trajectory().to_dict(), "{broken json", {"instance_id": "x"}, make_trajectory(False).to_dict()])
    runner = CliRunner()
    out = tmp_path / "sft" / "swe_lego_style.json"
    r = runner.invoke(data, ["export", str(runs), "--format", "sharegpt", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "trajectories.jsonl:2: not valid JSON" in r.stderr
    assert "trajectories.jsonl:3: not a trajectory" in r.stderr
    assert "2 record(s) converted" in r.stderr and "2 failed" in r.stderr
    assert "masked" in r.stderr
    rows = json.loads(out.read_text())  # one JSON array, as LLaMA-Factory reads .json files
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not the temp file's 0600
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind
    assert [r_["instance_id"] for r_ in rows] == ["toy__toycalc-1", "toy__toycalc-1"]
    for row in rows:
        _llamafactory_valid(row["messages"])

    back = tmp_path / "back.jsonl"
    r = runner.invoke(data, ["import", str(out), "--format", "swe-lego", "--out", str(back)])
    assert r.exit_code == 0, r.output
    assert "2 record(s) converted" in r.stderr and "0 failed" in r.stderr
    trajs = [Trajectory.from_json(line) for line in back.read_text().splitlines()]
    assert canon(trajs[0].messages) == canon(make_trajectory().messages)
    assert canon(trajs[1].messages) == canon(make_trajectory(False).messages[:-1])
    # the record's own masks come back, and export can write them again instead of our rules'
    shipped = [[i for i, m in enumerate(row["messages"]) if m.get("turn_mask")] for row in rows]
    assert [len(t.imported_masks) for t in trajs] == [len(x) for x in shipped] and any(shipped)
    for t in trajs:
        t.imported_masks = [i for i, m in enumerate(t.messages) if m["role"] == "assistant"][:1]
    _write_jsonl(back, [t.to_dict() for t in trajs])
    again = tmp_path / "again.jsonl"
    r = runner.invoke(data, ["export", str(back), "--format", "sharegpt", "--mask-source", "imported",
                             "--out", str(again)])
    assert r.exit_code == 0, r.output
    for line in again.read_text().splitlines():
        masks = [m["turn_mask"] for m in json.loads(line)["messages"] if m["role"] == "assistant"]
        assert masks[0] and not any(masks[1:])


def test_export_openhands_to_stdout(tmp_path):
    (tmp_path / "t.jsonl").write_text(make_trajectory().to_json() + "\n")
    r = CliRunner().invoke(data, ["export", str(tmp_path / "t.jsonl"), "--format", "openhands"])
    assert r.exit_code == 0, r.output
    [line] = r.stdout.splitlines()
    rec = json.loads(line)
    assert rec["instance_id"] == "toy__toycalc-1" and rec["tools"] == TOOL_SCHEMAS
    assert all(set(m) == {"role", "content"} for m in rec["messages"])
    assert canon(from_openhands(rec).messages) == canon(make_trajectory().messages)


def test_import_reports_bad_records_and_continues(tmp_path):
    src = tmp_path / "swe_gym.jsonl"
    _write_jsonl(src, [swe_gym_native_record(), "not json", {"instance_id": "no-messages"},
                       {"instance_id": "x", "trajectory": "[oops"}])
    out = tmp_path / "ours.jsonl"
    r = CliRunner().invoke(data, ["import", str(src), "--format", "openhands", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("✗") == 3 and "swe_gym.jsonl:3: no `messages` list" in r.stderr
    assert "1 record(s) converted" in r.stderr and "3 failed" in r.stderr and "1 flagged as errors" in r.stderr
    [line] = out.read_text().splitlines()
    assert Trajectory.from_json(line).instance_id == "pandas-dev__pandas-48686_0"


def test_import_with_nothing_convertible_fails(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text(json.dumps([{"messages": []}]))
    r = CliRunner().invoke(data, ["import", str(src), "--format", "swe-lego"])
    assert r.exit_code == 1 and "0 record(s) converted" in r.stderr and r.stdout == ""


def test_import_reads_parquet_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = [swe_lego_record(), {**swe_lego_record(), "instance_id": "pydata__xarray-9999", "resolved": False}]
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "resolved-00000-of-00001.parquet")
    out = tmp_path / "ours.json"
    r = CliRunner().invoke(data, ["import", str(tmp_path / "resolved-00000-of-00001.parquet"),
                                  "--format", "swe-lego", "--out", str(out)])
    assert r.exit_code == 0, r.output
    trajs = [Trajectory.from_dict(d) for d in json.loads(out.read_text())]
    assert [(t.instance_id, t.resolved) for t in trajs] == [("pydata__xarray-4075", True),
                                                            ("pydata__xarray-9999", False)]
    assert canon(trajs[0].messages) == canon(from_swe_lego(swe_lego_record()).messages)


# -- a real episode ----------------------------------------------------------------------------


@pytest.mark.docker
def test_real_oracle_episode_round_trips(toy_task, client):
    """An oracle episode recorded in a real sandbox survives both text formats unchanged."""
    from swelego.agent import OraclePolicy, run_episode
    from swelego.sandbox import DockerSandbox

    with DockerSandbox(toy_task.image, client=client) as sb:
        traj = run_episode(toy_task, sb, OraclePolicy(toy_task), policy_name="oracle", grade=False)
    assert traj.exit_reason == "finish" and traj.steps
    calls = [c for m in traj.messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert {"str_replace_editor", "execute_bash", "finish"} <= {c["function"]["name"] for c in calls}

    via_text = from_openhands({"instance_id": traj.instance_id, "messages": to_openhands_messages(traj)})
    assert canon(via_text.messages) == canon(traj.messages)
    assert step_view(via_text.steps) == step_view(traj.steps)

    row = json.loads(json.dumps(to_sharegpt(traj)))
    _llamafactory_valid(row["messages"])
    via_sharegpt = from_swe_lego(row)
    assert canon(via_sharegpt.messages) == canon(traj.messages)
    assert via_sharegpt.tools == traj.tools == TOOL_SCHEMAS
    assert [s.error for s in via_sharegpt.steps] == [s.error for s in traj.steps]


# -- Harbor ATIF -------------------------------------------------------------------------------


def _atif_valid(doc: dict) -> None:
    """The rules of the ATIF RFC (v1.7) a document must meet: required fields and their types,
    step ids 1..n, sources, agent-only fields, results paired with the step's own calls."""
    from swelego.trajectories.atif import SCHEMA_VERSION

    assert doc["schema_version"] == SCHEMA_VERSION and doc["schema_version"].startswith("ATIF-v1.")
    assert isinstance(doc["session_id"], str) and doc["session_id"]
    assert isinstance(doc["agent"]["name"], str) and isinstance(doc["agent"]["version"], str)
    for t in doc["agent"].get("tool_definitions", []):
        assert t["type"] == "function" and isinstance(t["function"]["name"], str)
    assert [s["step_id"] for s in doc["steps"]] == list(range(1, len(doc["steps"]) + 1))
    for s in doc["steps"]:
        assert s["source"] in ("system", "user", "agent") and isinstance(s["message"], str)
        if s["source"] != "agent":
            assert not {"tool_calls", "reasoning_content", "model_name", "metrics"} & set(s), s
            continue
        ids = []
        for c in s.get("tool_calls", []):
            assert isinstance(c["tool_call_id"], str) and isinstance(c["function_name"], str)
            assert isinstance(c["arguments"], dict)
            ids.append(c["tool_call_id"])
        for r in s.get("observation", {"results": []})["results"]:
            assert r.get("source_call_id") in ids and isinstance(r["content"], str)
        assert isinstance(s.get("llm_call_count", 0), int)
    fm = doc.get("final_metrics", {})
    assert fm.get("total_steps", len(doc["steps"])) == len(doc["steps"])
    for k in ("total_prompt_tokens", "total_completion_tokens", "total_cached_tokens"):
        assert isinstance(fm.get(k, 0), int)
    assert json.loads(json.dumps(doc)) == doc


def _calls_and_results(traj: Trajectory) -> tuple[list, list]:
    calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
             for m in traj.messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [(m["tool_call_id"], m["content"]) for m in traj.messages if m["role"] == "tool"]
    return calls, results


def _atif_calls_and_results(doc: dict) -> tuple[list, list]:
    steps = [s for s in doc["steps"] if s["source"] == "agent"]
    calls = [(c["tool_call_id"], c["function_name"], c["arguments"]) for s in steps for c in s.get("tool_calls", [])]
    results = [(r["source_call_id"], r["content"]) for s in steps for r in s.get("observation", {}).get("results", [])]
    return calls, results


def test_atif_export_keeps_calls_results_stats_masks_and_usage():
    from swelego.trajectories.atif import to_atif

    traj = make_trajectory()
    traj.policy, traj.model = "openai", "qwen3-coder"
    traj.usage = {"prompt_tokens": 12000, "completion_tokens": 900, "requests": 9}
    traj.sampling = {"temperature": 0.7, "sample": 2}
    traj.messages[4] = {**traj.messages[4], "reasoning_content": "The stats module is next."}
    doc = to_atif(traj, error_turns={8})
    _atif_valid(doc)
    assert doc["session_id"] == "toy__toycalc-1:2"
    assert doc["agent"]["model_name"] == "qwen3-coder" and doc["agent"]["tool_definitions"] == TOOL_SCHEMAS
    assert doc["agent"]["extra"] == {"policy": "openai"}
    assert _atif_calls_and_results(doc) == _calls_and_results(traj)
    sources = [s["source"] for s in doc["steps"]]
    # system, task, then one agent step per assistant message; the nudge is a user step
    assert sources == ["system", "user"] + ["agent"] * 7 + ["user", "agent"]
    agent = [s for s in doc["steps"] if s["source"] == "agent"]
    assert agent[1]["reasoning_content"] == "The stats module is next." and "reasoning_content" not in agent[0]
    assert [s["extra"]["turn_mask"] for s in agent] == [False, False, False, True, False, False, False, False]
    assert all(s["llm_call_count"] == 1 and s["model_name"] == "qwen3-coder" for s in agent)
    bad_edit = agent[3]["observation"]["results"][0]["extra"]
    assert bad_edit == {"tool": "str_replace_editor", "error": True, "error_kind": "not_unique"}
    assert agent[2]["observation"]["results"][0]["extra"]["exit_code"] == 1
    assert [len(s.get("observation", {}).get("results", [])) for s in agent] == [1, 1, 1, 1, 1, 2, 0, 1]
    assert doc["final_metrics"] == {"total_steps": 11, "total_prompt_tokens": 12000, "total_completion_tokens": 900,
                                    "extra": {"llm_requests": 9}}
    assert doc["extra"]["instance_id"] == "toy__toycalc-1" and doc["extra"]["resolved"] is True
    assert doc["extra"]["patch"] == traj.patch and doc["extra"]["exit_reason"] == "finish"


def test_atif_arguments_that_are_not_an_object_and_a_malformed_turn():
    from swelego.trajectories.atif import to_atif

    traj = Trajectory(instance_id="x__y-1", policy="openai", messages=[
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "<function=execute_bash>", "parse_errors": ["call 1: not closed"]},
        {"role": "user", "content": MALFORMED.format(errors="call 1: not closed")},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "k", "type": "function", "function": {"name": "execute_bash", "arguments": "ls -la"}}]},
        {"role": "tool", "tool_call_id": "k", "content": "ERROR: arguments are not valid JSON"},
    ], steps=[Step("", error=True, error_kind="malformed_call", message_index=1),
              Step("execute_bash", error=True, error_kind="bad_arguments", message_index=3)])
    doc = to_atif(traj)
    _atif_valid(doc)
    steps = doc["steps"]
    assert steps[1]["extra"] == {"turn_mask": False, "malformed_call": True} and "tool_calls" not in steps[1]
    [call] = steps[3]["tool_calls"]
    assert call["arguments"] == {} and call["extra"] == {"raw_arguments": "ls -la"}
    assert steps[3]["observation"]["results"][0]["extra"]["error_kind"] == "bad_arguments"
    assert "model_name" not in doc["agent"] and "final_metrics" in doc


def test_atif_export_command_and_build_stage_agree(tmp_path):
    from swelego.trajectories.atif import to_atif
    from swelego.trajectories.export import ExportConfig, export
    from swelego.trajectories.labels import label_trajectory

    trajs = [make_trajectory(), make_trajectory(False)]
    src = tmp_path / "trajectories.jsonl"
    _write_jsonl(src, [t.to_dict() for t in trajs] + ["{torn"])
    out = tmp_path / "atif.json"
    r = CliRunner().invoke(data, ["export", str(src), "--format", "atif", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 record(s) converted" in r.stderr and "1 failed" in r.stderr and "trajectories.jsonl:3" in r.stderr
    docs = json.loads(out.read_text())
    expected = [to_atif(t, {lab.message_index for lab in label_trajectory(t) if lab.error}) for t in trajs]
    assert docs == expected
    for doc in docs:
        _atif_valid(doc)
    # the build's export stage calls the same function into a folder: atif.jsonl, one document a line
    from swelego.records import iter_records

    summary = export(iter_records(src), ["atif"], tmp_path / "sft", cfg=ExportConfig(formats=["atif"]),
                     log=lambda line: None)
    assert summary == {"records": 3, "failed": {"atif": 1}, "atif": 2}
    lines = (tmp_path / "sft" / "atif.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert json.loads((tmp_path / "sft" / "export.json").read_text()) == summary


@pytest.mark.docker
def test_real_oracle_episode_exports_as_atif(toy_task, client, tmp_path):
    """An oracle episode recorded in a real sandbox (and graded) becomes a valid ATIF document
    that holds every call, argument and observation of the rollout."""
    from swelego.agent import OraclePolicy, run_episode
    from swelego.sandbox import DockerSandbox
    from swelego.trajectories.atif import to_atif

    with DockerSandbox(toy_task.image, client=client) as sb:
        traj = run_episode(toy_task, sb, OraclePolicy(toy_task), policy_name="oracle")
    assert traj.exit_reason == "finish" and traj.resolved is True
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trajectories.jsonl").write_text(traj.to_json() + "\n")
    out = tmp_path / "atif.jsonl"
    r = CliRunner().invoke(data, ["export", str(tmp_path / "run"), "--format", "atif", "--out", str(out)])
    assert r.exit_code == 0, r.output
    [line] = out.read_text().splitlines()
    doc = json.loads(line)
    _atif_valid(doc)
    assert doc == to_atif(Trajectory.from_json(traj.to_json()), ())  # the oracle's turns carry no error
    assert _atif_calls_and_results(doc) == _calls_and_results(traj)
    assert doc["extra"]["resolved"] is True and doc["extra"]["patch"] == traj.patch and traj.patch.strip()
    agent = [s for s in doc["steps"] if s["source"] == "agent"]
    assert len(agent) == traj.turns and all(s["llm_call_count"] == 0 for s in agent)  # no LLM behind it
    assert "model_name" not in doc["agent"] and doc["agent"]["tool_definitions"] == traj.tools
    stats = [r["extra"] for s in agent for r in s.get("observation", {}).get("results", [])]
    assert [(x["tool"], x["error"]) for x in stats] == [(s.tool, s.error) for s in traj.steps]
    assert any("exit_code" in x for x in stats) and doc["final_metrics"]["total_steps"] == len(doc["steps"])
