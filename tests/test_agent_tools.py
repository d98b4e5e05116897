"""The agent's tools on a real sandbox of the toy repository."""

from __future__ import annotations

import json
import time

import pytest

from swelego.agent import TOOL_SCHEMAS, ToolBox, ToolResult, parse_tool_call_arguments
from swelego.sandbox import DockerSandbox, SandboxLimits

CALC = "/testbed/toycalc/__init__.py"


@pytest.fixture(scope="module")
def sb(toy_env, client):
    with DockerSandbox(toy_env.image, client=client, limits=SandboxLimits(exec_timeout=60)) as s:
        yield s


@pytest.fixture
def tb(sb):
    sb.reset("git")
    yield ToolBox(sb, command_timeout=30)
    sb.reset("git")


def edit(tb: ToolBox, **args) -> ToolResult:
    return tb.execute("str_replace_editor", json.dumps(args))


# -- schemas and argument parsing (no sandbox needed) ------------------------------------------


def test_schemas_are_openai_functions():
    names = [s["function"]["name"] for s in TOOL_SCHEMAS]
    assert names == ["execute_bash", "str_replace_editor", "think", "finish"]
    for s in TOOL_SCHEMAS:
        assert s["type"] == "function"
        params = s["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
        assert s["function"]["description"]
        json.dumps(s)
    editor = TOOL_SCHEMAS[1]["function"]["parameters"]["properties"]
    assert editor["command"]["enum"] == ["view", "create", "str_replace", "insert", "undo_edit"]


def test_parse_tool_call_arguments():
    assert parse_tool_call_arguments('{"a": 1}') == {"a": 1}
    assert parse_tool_call_arguments({"a": 1}) == {"a": 1}
    assert parse_tool_call_arguments("") == {} and parse_tool_call_arguments(None) == {}
    assert parse_tool_call_arguments(json.dumps('{"a": 1}')) == {"a": 1}
    for bad in ('{"a": ', "[1, 2]", "3"):
        with pytest.raises(ValueError):
            parse_tool_call_arguments(bad)


class _NoSandbox:
    def __getattr__(self, name):
        raise AssertionError(f"the sandbox must not be touched ({name})")


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        ("grep_files", {"pattern": "x"}, "unknown tool"),
        ("execute_bash", '{"command": "ls"', "not valid JSON"),
        ("execute_bash", {}, "missing required argument"),
        ("execute_bash", {"command": "ls", "cwd": "/"}, "unexpected argument"),
        ("execute_bash", {"command": ["ls"]}, "must be a string"),
        ("execute_bash", {"command": "ls", "timeout": "soon"}, "must be a number"),
        ("str_replace_editor", {"command": "delete", "path": CALC}, "must be one of"),
        ("str_replace_editor", {"command": "view", "path": "toycalc/__init__.py"}, CALC),
        ("str_replace_editor", {"command": "create", "path": "/testbed/x.py"}, "file_text"),
        ("str_replace_editor", {"command": "insert", "path": CALC, "insert_line": "two", "new_str": "x"},
         "must be an integer"),
        ("str_replace_editor", {"command": "view", "path": CALC, "view_range": [1]}, "two integers"),
        ("think", {"thought": 3}, "must be a string"),
    ],
)
def test_argument_errors_are_results(name, args, needle):
    kind = "unknown_tool" if name == "grep_files" else "bad_arguments"
    r = ToolBox(_NoSandbox()).execute(name, args)
    assert r.error and r.error_kind == kind and not r.finished
    assert needle in r.output, r.output


def test_think_and_finish_have_no_side_effects():
    tb = ToolBox(_NoSandbox())
    r = tb.execute("think", '{"thought": "median is wrong for even lengths"}')
    assert not r.error and not r.finished and r.output
    r = tb.execute("finish", {"message": "fixed median"})
    assert r.finished and not r.error and r.output == "fixed median"


# -- the editor ------------------------------------------------------------------------------


def test_view_directory(tb):
    r = edit(tb, command="view", path="/testbed")
    assert not r.error, r.output
    assert "/testbed/toycalc/__init__.py" in r.output
    assert "/testbed/tests/test_calc.py" in r.output
    assert "/testbed/pyproject.toml" in r.output
    assert ".git" not in r.output and "__pycache__" not in r.output


def test_view_file_and_ranges(tb, sb):
    lines = sb.read_file(CALC).decode().splitlines()
    r = edit(tb, command="view", path=CALC)
    assert not r.error
    for i, line in enumerate(lines, 1):
        assert f"{i:6}\t{line}" in r.output
    for rng in ([2, 3], "[2, 3]", "2,3"):
        r = edit(tb, command="view", path=CALC, view_range=rng)
        assert not r.error, r.output
        body = [x for x in r.output.splitlines() if "\t" in x]
        assert body == [f"{2:6}\t{lines[1]}", f"{3:6}\t{lines[2]}"]
    r = edit(tb, command="view", path=CALC, view_range=[5, -1])
    assert [x for x in r.output.splitlines() if "\t" in x][-1] == f"{len(lines):6}\t{lines[-1]}"
    for bad in ([0, 2], [3, 2], [1, 99], [99, -1]):
        r = edit(tb, command="view", path=CALC, view_range=bad)
        assert r.error and r.error_kind == "bad_range"
        assert f"{len(lines)} line" in r.output
    r = edit(tb, command="view", path="/testbed/nope.py")
    assert r.error and r.error_kind == "not_found"


def test_str_replace(tb, sb):
    before = sb.read_file(CALC)
    r = edit(tb, command="str_replace", path=CALC, old_str="    return s[len(s) // 2]\n",
             new_str="    n = len(s)\n    return s[n // 2]\n")
    assert not r.error, r.output
    assert f"{8:6}\t    return s[n // 2]" in r.output and f"{7:6}\t    n = len(s)" in r.output
    assert sb.exec("cat toycalc/__init__.py").output == before.decode().replace(
        "    return s[len(s) // 2]\n", "    n = len(s)\n    return s[n // 2]\n")
    diff = sb.exec("git diff").output
    assert "-    return s[len(s) // 2]" in diff and "+    n = len(s)" in diff
    assert sb.exec("git diff --summary").output.strip() == ""  # the file mode is unchanged

    after = sb.read_file(CALC)
    r = edit(tb, command="str_replace", path=CALC, old_str="(xs):")
    assert r.error and r.error_kind == "not_unique"
    assert "lines 1, 5" in r.output
    r = edit(tb, command="str_replace", path=CALC, old_str="def mode(xs):", new_str="")
    assert r.error and r.error_kind == "not_found"
    assert sb.read_file(CALC) == after


def test_insert_and_undo(tb, sb):
    original = sb.read_file(CALC)
    n = len(original.decode().splitlines())
    r = edit(tb, command="insert", path=CALC, insert_line=0, new_str='"""Toy statistics."""')
    assert not r.error, r.output
    assert f"{1:6}\t\"\"\"Toy statistics.\"\"\"" in r.output
    first = sb.read_file(CALC)
    assert first == b'"""Toy statistics."""\n' + original
    r = edit(tb, command="insert", path=CALC, insert_line=str(n + 1), new_str="\n\ndef mode(xs):\n    pass\n")
    assert not r.error, r.output
    assert sb.read_file(CALC) == first + b"\n\ndef mode(xs):\n    pass\n"
    r = edit(tb, command="insert", path=CALC, insert_line=n + 99, new_str="x")
    assert r.error and r.error_kind == "bad_range"

    r = edit(tb, command="undo_edit", path=CALC)
    assert not r.error and sb.read_file(CALC) == first
    r = edit(tb, command="undo_edit", path=CALC)
    assert not r.error and sb.read_file(CALC) == original
    assert sb.exec("git status --porcelain").output == ""
    r = edit(tb, command="undo_edit", path=CALC)
    assert r.error and r.error_kind == "no_history"


def test_edits_keep_missing_trailing_newline(tb, sb):
    sb.write_file("/testbed/raw.txt", b"a\nb")
    r = edit(tb, command="insert", path="/testbed/raw.txt", insert_line=2, new_str="c")
    assert not r.error and sb.read_file("/testbed/raw.txt") == b"a\nb\nc"
    r = edit(tb, command="str_replace", path="/testbed/raw.txt", old_str="b", new_str="B\xe9")
    assert not r.error and sb.read_file("/testbed/raw.txt") == "a\nB\xe9\nc".encode()
    edit(tb, command="undo_edit", path="/testbed/raw.txt")
    edit(tb, command="undo_edit", path="/testbed/raw.txt")
    assert sb.read_file("/testbed/raw.txt") == b"a\nb"


def test_create(tb, sb):
    path = "/testbed/toycalc/extra/deep/util.py"
    r = edit(tb, command="create", path=path, file_text="X = 1\n")
    assert not r.error, r.output
    assert sb.exec(f"cat {path}").output == "X = 1\n"
    r = edit(tb, command="create", path=path, file_text="X = 2\n")
    assert r.error and r.error_kind == "exists"
    assert sb.read_file(path) == b"X = 1\n"
    r = edit(tb, command="undo_edit", path=path)
    assert not r.error and sb.exec(f"test -e {path}").exit_code == 1


# -- bash ------------------------------------------------------------------------------------


def test_bash_runs_tests(tb):
    r = tb.execute("execute_bash", '{"command": "python -m pytest -q tests"}')
    assert not r.error and r.exit_code == 0, r.output
    assert "passed" in r.output
    assert r.output.rstrip().endswith("[exit code: 0]")


def test_bash_nonzero_exit_is_not_an_error(tb):
    r = tb.execute("execute_bash", {"command": "false"})
    assert not r.error and r.error_kind is None and r.exit_code == 1
    assert r.output.endswith("[exit code: 1]")
    r = tb.execute("execute_bash", {"command": "pwd && echo hi >&2"})
    assert r.output == "/testbed\nhi\n[exit code: 0]"


def test_bash_timeout(tb):
    t0 = time.monotonic()
    r = tb.execute("execute_bash", {"command": "echo started; sleep 30", "timeout": "1"})
    assert time.monotonic() - t0 < 10
    assert r.error and r.error_kind == "timeout"
    assert "started" in r.output and "killed after 1 seconds" in r.output


def test_bash_output_is_truncated(sb):
    tb = ToolBox(sb, max_observation=2000)
    r = tb.execute("execute_bash", {"command": "seq 1 100000"})
    assert r.truncated and not r.error and len(r.output) <= 2000
    assert r.output.startswith("1\n2\n3\n") and r.output.endswith("100000\n[exit code: 0]")
    assert "characters truncated" in r.output
