"""The agent's four tools (bash, a file editor, think, finish), run inside a sandbox.

The interface follows the function-calling conventions common to SWE agent scaffolds, so
that a model trained on those transcripts sees familiar names, arguments and observations:
`execute_bash`, `str_replace_editor` (view / create / str_replace / insert / undo_edit),
`think` and `finish`. Every argument problem becomes an error *result* the model can read
and react to; only failures of the sandbox itself (the engine going away) raise.

Files are read and written as bytes through the sandbox; text is decoded with
`surrogateescape`, so edits keep every byte they do not touch, trailing newlines included.
"""

from __future__ import annotations

import inspect
import json
import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

_STR = "string"
# Seconds without new output after which a call returns and leaves its command running.
NO_OUTPUT_TIMEOUT = 30.0
STILL_RUNNING = "[the command is still running"

TOOL_SCHEMAS: list[dict] = [
    {
        "type": "function",
        "function": {
            "name": "execute_bash",
            "description": (
                "Run a bash command in a persistent shell session that starts in the repository "
                "root (/testbed), and return its combined stdout/stderr followed by a line with the "
                "exit code. The session keeps its state between calls: the working directory, "
                "exported variables and activated environments persist. Run one command at a time "
                "(chain with `&&` or `;`); there is no network. A command that prints nothing new "
                f"for {NO_OUTPUT_TIMEOUT:g} seconds is left running and you are told so: call again "
                "with `is_input` \"true\" and an empty `command` to wait for more output, with text "
                "to type into the command (e.g. an answer to a prompt), or with `C-c` to interrupt "
                "it. With `timeout` set, the call waits up to that many seconds instead; a command "
                "still running when the time is up is interrupted. Long outputs are shortened in "
                "the middle; redirect to a file and inspect it with head/tail/grep when you need "
                "all of it."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {
                        "type": "string",
                        "description": "The bash command to run; with `is_input` \"true\", the text to "
                        "send to the running command (\"\" sends nothing, C-c / C-d / C-z send the key).",
                    },
                    "is_input": {
                        "type": "string",
                        "enum": ["true", "false"],
                        "description": "\"true\": `command` is input for the command still running. "
                        "Default \"false\": `command` is a new bash command.",
                    },
                    "timeout": {
                        "type": "number",
                        "description": "Optional hard limit in seconds (capped by the environment); the "
                        "command is interrupted when it passes.",
                    },
                },
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "str_replace_editor",
            "description": (
                "View, create and edit files. Paths must be absolute (e.g. /testbed/pkg/mod.py).\n"
                "* view: a file is shown with line numbers (like `cat -n`), optionally only "
                "`view_range` [start, end] (end -1 = to the end); a directory is listed two levels "
                "deep, hidden entries omitted.\n"
                "* create: write `file_text` to a new file; fails if the path exists.\n"
                "* str_replace: replace `old_str`, which must match exactly one place in the file "
                "(whitespace included), with `new_str` (empty if omitted). Include enough "
                "surrounding lines in `old_str` to make it unique.\n"
                "* insert: insert `new_str` after line `insert_line` (0 = before the first line).\n"
                "* undo_edit: revert the last edit this tool made to the file."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {
                        "type": "string",
                        "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
                        "description": "The operation to perform.",
                    },
                    "path": {"type": "string", "description": "Absolute path of a file or directory."},
                    "file_text": {"type": "string", "description": "Content of the new file (create)."},
                    "old_str": {"type": "string", "description": "Exact text to replace (str_replace)."},
                    "new_str": {
                        "type": "string",
                        "description": "Replacement text (str_replace) or text to insert (insert).",
                    },
                    "insert_line": {
                        "type": "integer",
                        "description": "Line after which `new_str` is inserted; 0 inserts at the top (insert).",
                    },
                    "view_range": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 2,
                        "maxItems": 2,
                        "description": "[start, end] line numbers to show, 1-based and inclusive; "
                        "end -1 shows to the end of the file (view).",
                    },
                },
                "required": ["command", "path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "think",
            "description": (
                "Write down reasoning: a hypothesis, a plan, or what the last output means. "
                "Nothing is executed and nothing changes; use it to organise your work."
            ),
            "parameters": {
                "type": "object",
                "properties": {"thought": {"type": "string", "description": "Your reasoning."}},
                "required": ["thought"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "finish",
            "description": (
                "End the task once the change is made and checked (or when no further progress is "
                "possible). The current state of the repository is what gets evaluated."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "message": {"type": "string", "description": "A short summary of what was done."}
                },
                "required": ["message"],
            },
        },
    },
]

_SCHEMA_BY_NAME = {s["function"]["name"]: s["function"]["parameters"] for s in TOOL_SCHEMAS}
_EDITOR_NEEDS = {
    "view": (),
    "create": ("file_text",),
    "str_replace": ("old_str",),
    "insert": ("insert_line", "new_str"),
    "undo_edit": (),
}
_SNIPPET_CONTEXT = 4
_IO_TIMEOUT = 60.0


@dataclass
class ToolResult:
    """What one tool call produced. `output` is the observation shown to the model."""

    output: str
    error: bool = False
    error_kind: str | None = None
    exit_code: int | None = None
    duration: float = 0.0
    truncated: bool = False
    finished: bool = False


class ToolError(Exception):
    """An argument or usage problem, reported to the model as an error result."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


# -- arguments ---------------------------------------------------------------------------------


def parse_tool_call_arguments(raw: Any) -> dict:
    """The arguments of a tool call as a dict.

    Accepts a dict, a JSON object string (as in OpenAI tool calls; a doubly encoded one too),
    or None / an empty string for no arguments. Raises ValueError with a readable message.
    """
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        raise ValueError(f"arguments must be a JSON object, got {type(raw).__name__}")
    if not raw.strip():
        return {}
    value: Any = raw
    for _ in range(2):  # some models encode the object twice
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"arguments are not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        if not isinstance(value, str):
            break
    if not isinstance(value, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
    return value


def _as_int(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ToolError("bad_arguments", f"`{name}` must be an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        return int(v)
    raise ToolError("bad_arguments", f"`{name}` must be an integer, got {v!r}")


def _as_number(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ToolError("bad_arguments", f"`{name}` must be a number, got {v!r}")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            pass
    raise ToolError("bad_arguments", f"`{name}` must be a number, got {v!r}")


def _as_int_pair(name: str, v: Any) -> list[int]:
    if isinstance(v, str):
        s = v.strip()
        try:
            v = json.loads(s)
        except json.JSONDecodeError:
            parts = [p for p in re.split(r"[\s,]+", s.strip("[]()")) if p]
            v = parts
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ToolError("bad_arguments", f"`{name}` must be a list of two integers [start, end], got {v!r}")
    return [_as_int(name, x) for x in v]


def _coerce(tool: str, args: dict) -> dict:
    schema = _SCHEMA_BY_NAME[tool]
    props = schema["properties"]
    extra = sorted(set(args) - set(props))
    if extra:
        raise ToolError(
            "bad_arguments",
            f"unexpected argument(s) for {tool}: {', '.join(extra)}; allowed: {', '.join(props)}",
        )
    # An explicit null for an optional argument means "not given".
    args = {k: v for k, v in args.items() if v is not None}
    missing = [k for k in schema["required"] if k not in args]
    if missing:
        raise ToolError("bad_arguments", f"missing required argument(s) for {tool}: {', '.join(missing)}")
    out = {}
    for key, value in args.items():
        spec = props[key]
        typ = spec["type"]
        if typ == "string":
            if spec.get("enum") == ["true", "false"] and isinstance(value, (bool, str)):
                value = ("true" if value else "false") if isinstance(value, bool) else value.strip().lower()
            if not isinstance(value, str):
                raise ToolError("bad_arguments", f"`{key}` must be a string, got {type(value).__name__}")
            if "enum" in spec and value not in spec["enum"]:
                raise ToolError(
                    "bad_arguments", f"`{key}` must be one of {', '.join(spec['enum'])}; got {value!r}"
                )
        elif typ == "integer":
            value = _as_int(key, value)
        elif typ == "number":
            value = _as_number(key, value)
        elif typ == "array":
            value = _as_int_pair(key, value)
        out[key] = value
    return out


# -- text helpers ----------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _printable(text: str) -> str:
    """Text safe to show: undecodable bytes become U+FFFD."""
    return _encode(text).decode("utf-8", errors="replace")


def _lines(text: str) -> list[str]:
    """The file's lines without their newlines; a trailing newline does not start a line."""
    if not text:
        return []
    parts = text.split("\n")
    if text.endswith("\n"):
        parts.pop()
    return parts


def _numbered(lines: list[str], first: int) -> str:
    return "\n".join(f"{i:6}\t{line}" for i, line in enumerate(lines, start=first))


def _with_newline(text: str) -> str:
    return text + "\n" if text and not text.endswith("\n") else text


_RESET_STATE = "the working directory is {} again, and exported variables and activated environments are reset"


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    if limit <= 0 or len(text) <= limit:
        return text, False
    marker = "\n[... {} characters truncated ...]\n"
    keep = max(limit - len(marker.format(len(text))), 2)
    head = keep // 2
    tail = keep - head
    removed = len(text) - head - tail
    return text[:head] + marker.format(removed) + text[len(text) - tail :], True


# -- the toolbox -----------------------------------------------------------------------------


class ToolBox:
    """Executes tool calls against one sandbox and keeps the editor's undo history.

    `execute_bash` runs in one persistent shell per ToolBox (an episode), opened on first use
    through the sandbox's `open_shell` (see swelego.sandbox.session); `persistent=False`, or a
    sandbox without `open_shell`, runs each command in a fresh `sandbox.exec` shell instead.
    Call `close()` at the end of the episode."""

    def __init__(self, sandbox, *, workdir: str = "/testbed", command_timeout: float = 120.0,
                 max_observation: int = 16000, no_output_timeout: float = NO_OUTPUT_TIMEOUT,
                 persistent: bool = True):
        self.sandbox = sandbox
        self.workdir = workdir
        self.command_timeout = command_timeout
        self.max_observation = max_observation
        self.no_output_timeout = no_output_timeout
        self.persistent = persistent
        self._shell = None
        # path -> stack of (previous bytes or None if the file did not exist, previous mode)
        self._history: dict[str, list[tuple[bytes | None, int]]] = {}
        self._write_takes_mode: bool | None = None  # whether sandbox.write_file accepts mode=

    @property
    def schemas(self) -> list[dict]:
        return TOOL_SCHEMAS

    def reset_history(self) -> None:
        """Forget undo history and end the shell (call after resetting the sandbox)."""
        self._history.clear()
        self.close()

    def close(self) -> None:
        """End the episode's shell and whatever it still runs; the next call opens a new one."""
        if self._shell is not None:
            self._shell.close()
            self._shell = None

    def execute(self, name: str, arguments: str | dict | None) -> ToolResult:
        t0 = time.monotonic()
        try:
            if name not in _SCHEMA_BY_NAME:
                raise ToolError(
                    "unknown_tool", f"unknown tool {name!r}; available tools: {', '.join(_SCHEMA_BY_NAME)}"
                )
            try:
                raw = parse_tool_call_arguments(arguments)
            except ValueError as e:
                raise ToolError("bad_arguments", f"could not parse the arguments of {name}: {e}") from None
            args = _coerce(name, raw)
            result = getattr(self, f"_tool_{name}")(**args)
        except ToolError as e:
            result = ToolResult(output=f"ERROR: {e.message}", error=True, error_kind=e.kind)
        text, cut = _truncate(result.output, self.max_observation)
        result.output = text
        result.truncated = result.truncated or cut
        result.duration = time.monotonic() - t0
        return result

    # -- think / finish ------------------------------------------------------------------------
    def _tool_think(self, thought: str) -> ToolResult:
        return ToolResult(output="Your thought has been recorded.")

    def _tool_finish(self, message: str) -> ToolResult:
        return ToolResult(output=message, finished=True)

    # -- bash ----------------------------------------------------------------------------------
    def _tool_execute_bash(self, command: str, is_input: str = "false", timeout: float | None = None) -> ToolResult:
        limit = self.command_timeout
        if timeout is not None:
            if timeout <= 0:
                raise ToolError("bad_arguments", f"`timeout` must be positive, got {timeout:g}")
            limit = min(timeout, self.command_timeout)
        if not self.persistent or not hasattr(self.sandbox, "open_shell"):
            if is_input == "true":
                raise ToolError("bad_arguments", "`is_input` needs a running command, and this environment runs "
                                "each command in a fresh shell; run the command again instead")
            if not command.strip():
                raise ToolError("bad_arguments", "`command` is empty")
            r = self.sandbox.exec(command, timeout=limit, workdir=self.workdir)
            return self._bash_result(r.output, limit, exit_code=r.exit_code, timed_out=r.timed_out,
                                     truncated=bool(getattr(r, "truncated_bytes", 0)))
        # With an explicit timeout the call blocks for it; otherwise it returns once the
        # command has been silent for `no_output_timeout` seconds and leaves it running.
        idle = None if timeout is not None else self.no_output_timeout
        shell, before = self._open_shell()
        if shell.running and (late := shell.poll()) is not None:
            before += _with_newline(late.output) + f"[the previous command finished: exit code {late.exit_code}]\n"
        if is_input == "true":
            if not shell.running:
                raise ToolError("no_running_command", "no command is running, so there is nothing to send input "
                                "to; run it as a bash command (`is_input` \"false\")")
            r = shell.send(command, timeout=limit, idle_timeout=idle)
        elif shell.running and command.strip():
            raise ToolError("command_running", "your command was NOT run: the previous command is still running. "
                            "Call execute_bash with `is_input` \"true\" to interact with it: an empty command waits for "
                            "more output, text is typed into it, C-c interrupts it; then run your command.")
        elif shell.running:
            r = shell.send("", timeout=limit, idle_timeout=idle)
        elif not command.strip():
            raise ToolError("bad_arguments", "`command` is empty")
        else:
            r = shell.run(command, timeout=limit, idle_timeout=idle)
        return self._bash_result(before + r.output, limit, exit_code=r.exit_code, timed_out=r.timed_out,
                                 truncated=bool(r.truncated_bytes), running=r.running, restarted=r.restarted)

    def _open_shell(self):
        """The episode's shell, started if needed, and a note for the model when an earlier
        shell had died (its state is gone)."""
        if self._shell is None:
            self._shell = self.sandbox.open_shell(workdir=self.workdir)
        note = ""
        if self._shell.pid is not None and not self._shell.alive:
            note = f"[the shell had ended, so a new one was started: {_RESET_STATE.format(self.workdir)}]\n"
        return self._shell.start(), note

    def _bash_result(self, out: str, limit: float, *, exit_code: int | None, timed_out: bool, truncated: bool,
                     running: bool = False, restarted: str = "") -> ToolResult:
        out = _with_newline(out)
        if timed_out:
            if restarted:
                out += (f"[command timed out: killed after {limit:g} seconds; it did not stop when interrupted, so "
                        f"the shell was restarted: {_RESET_STATE.format(self.workdir)}]")
            else:
                out += (f"[command timed out: killed after {limit:g} seconds (interrupted with C-c; the shell "
                        "keeps its working directory and variables); run long commands in the background or "
                        "with a larger timeout]")
            return ToolResult(output=out, error=True, error_kind="timeout", truncated=truncated)
        if running:
            out += (f"{STILL_RUNNING}: no new output for {self.no_output_timeout:g} seconds. Call execute_bash "
                    "with `is_input` \"true\": an empty command waits for more output, text is typed into it, "
                    "C-c interrupts it.]")
            return ToolResult(output=out, truncated=truncated)
        if restarted:
            out += f"[{restarted}, so a new shell was started: {_RESET_STATE.format(self.workdir)}]"
            return ToolResult(output=out, truncated=truncated)
        out += f"[exit code: {exit_code}]"
        return ToolResult(output=out, exit_code=exit_code, truncated=truncated)

    # -- editor --------------------------------------------------------------------------------
    def _tool_str_replace_editor(self, command: str, path: str, **kw) -> ToolResult:
        path = path.strip()
        if not path.startswith("/"):
            suggestion = posixpath.normpath(posixpath.join(self.workdir, path))
            raise ToolError(
                "bad_arguments", f"path {path!r} is not absolute; use an absolute path such as {suggestion}"
            )
        path = posixpath.normpath(path)
        missing = [k for k in _EDITOR_NEEDS[command] if k not in kw]
        if missing:
            raise ToolError("bad_arguments", f"`{command}` needs argument(s): {', '.join(missing)}")
        return getattr(self, f"_edit_{command}")(path, **kw)

    def _stat(self, path: str) -> tuple[str, int, str]:
        """(kind, mode, resolved path); kind is file, dir, other or missing."""
        q = shlex.quote(path)
        script = (
            f'if [ -e {q} ] || [ -L {q} ]; then r=$(readlink -f -- {q} || printf %s {q}); '
            'if [ -d "$r" ]; then k=dir; elif [ -f "$r" ]; then k=file; else k=other; fi; '
            'm=$(stat -c %a -- "$r" 2>/dev/null || echo 644); printf "%s %s %s" "$k" "$m" "$r"; '
            "else printf missing; fi"
        )
        r = self.sandbox.exec(script, timeout=_IO_TIMEOUT, workdir="/")
        text = r.output.strip("\n")
        if text == "missing" or not text:
            return "missing", 0o644, path
        kind, mode, resolved = text.split(" ", 2)
        try:
            mode_int = int(mode, 8)
        except ValueError:
            mode_int = 0o644
        return kind, mode_int, resolved or path

    def _existing_file(self, path: str) -> tuple[str, int]:
        kind, mode, resolved = self._stat(path)
        if kind == "missing":
            raise ToolError("not_found", f"{path} does not exist")
        if kind == "dir":
            raise ToolError("bad_arguments", f"{path} is a directory; this command needs a file")
        if kind != "file":
            raise ToolError("bad_arguments", f"{path} is not a regular file")
        return resolved, mode

    def _read(self, path: str) -> bytes:
        try:
            return self.sandbox.read_file(path)
        except FileNotFoundError:
            raise ToolError("not_found", f"{path} does not exist") from None
        except IsADirectoryError:
            raise ToolError("bad_arguments", f"{path} is not a regular file") from None

    def _write(self, path: str, data: bytes, mode: int) -> None:
        if self._write_takes_mode is None:
            try:
                self._write_takes_mode = "mode" in inspect.signature(self.sandbox.write_file).parameters
            except (TypeError, ValueError):
                self._write_takes_mode = False
        if self._write_takes_mode:
            self.sandbox.write_file(path, data, mode=mode)
        else:
            self.sandbox.write_file(path, data)

    def _save(self, path: str, old: bytes | None, mode: int, new: bytes) -> None:
        self._history.setdefault(path, []).append((old, mode))
        self._write(path, new, mode)

    def _snippet(self, path: str, text: str, first: int, last: int, verb: str) -> str:
        lines = _lines(text)
        start = max(1, first - _SNIPPET_CONTEXT)
        end = min(len(lines), last + _SNIPPET_CONTEXT)
        shown = _numbered([_printable(x) for x in lines[start - 1 : end]], start)
        return (
            f"The file {path} has been {verb}. Lines {start}-{end} now read (cat -n):\n{shown}\n"
            "Check that the change is what you intended; use undo_edit to revert it."
        )

    def _edit_view(self, path: str, view_range: list[int] | None = None, **_ignored) -> ToolResult:
        kind, _mode, resolved = self._stat(path)
        if kind == "missing":
            raise ToolError("not_found", f"{path} does not exist")
        if kind == "dir":
            if view_range is not None:
                raise ToolError("bad_arguments", "`view_range` applies to files, not directories")
            q = shlex.quote(resolved.rstrip("/") or "/")
            r = self.sandbox.exec(
                f"find {q} -mindepth 1 -maxdepth 2 \\( -name '.*' -o -name __pycache__ \\) -prune "
                "-o -type d -printf '%p/\\n' -o -print | LC_ALL=C sort",
                timeout=_IO_TIMEOUT,
                workdir="/",
            )
            listing = r.output.rstrip("\n")
            if resolved != path:
                listing = listing.replace(resolved.rstrip("/"), path.rstrip("/"))
            return ToolResult(
                output=f"Files and directories up to 2 levels deep in {path} (hidden items excluded):\n"
                f"{path.rstrip('/')}/\n{listing}"
            )
        if kind != "file":
            raise ToolError("bad_arguments", f"{path} is not a regular file or directory")
        lines = _lines(_decode(self._read(resolved)))
        n = len(lines)
        start, end = 1, n
        if view_range is not None:
            start, end = view_range
            bounds = f"the file has {n} line(s); use 1 <= start <= {n} and start <= end <= {n}, or end = -1"
            if n == 0:
                raise ToolError("bad_range", f"invalid view_range {view_range}: {path} is empty")
            if not 1 <= start <= n:
                raise ToolError("bad_range", f"invalid view_range {view_range}: {bounds}")
            if end == -1:
                end = n
            elif not start <= end <= n:
                raise ToolError("bad_range", f"invalid view_range {view_range}: {bounds}")
        body = _numbered([_printable(x) for x in lines[start - 1 : end]], start)
        header = f"Contents of {path} (cat -n)" + (f", lines {start}-{end} of {n}" if view_range else "")
        return ToolResult(output=f"{header}:\n{body}" if body else f"{header}: the file is empty")

    def _edit_create(self, path: str, file_text: str, **_ignored) -> ToolResult:
        kind, _mode, _resolved = self._stat(path)
        if kind != "missing":
            raise ToolError(
                "exists", f"{path} already exists; use str_replace or insert to change it, or pick a new path"
            )
        self._save(path, None, 0o644, _encode(file_text))
        return ToolResult(output=f"Created {path} ({len(_lines(file_text))} line(s)).")

    def _edit_str_replace(self, path: str, old_str: str, new_str: str = "", **_ignored) -> ToolResult:
        if old_str == "":
            raise ToolError("bad_arguments", "`old_str` is empty; give the exact text to replace")
        if old_str == new_str:
            raise ToolError("bad_arguments", "`new_str` is identical to `old_str`; nothing would change")
        resolved, mode = self._existing_file(path)
        data = self._read(resolved)
        text = _decode(data)
        hits = []
        i = text.find(old_str)
        while i != -1:
            hits.append(i)
            i = text.find(old_str, i + 1)
        if not hits:
            raise ToolError(
                "not_found",
                f"`old_str` was not found verbatim in {path}; check whitespace and indentation "
                "(view the file to copy the exact text)",
            )
        if len(hits) > 1:
            where = ", ".join(str(text.count("\n", 0, h) + 1) for h in hits)
            raise ToolError(
                "not_unique",
                f"`old_str` occurs {len(hits)} times in {path} (starting at lines {where}); "
                "include more surrounding context to make it unique",
            )
        at = hits[0]
        new_text = text[:at] + new_str + text[at + len(old_str) :]
        self._save(resolved, data, mode, _encode(new_text))
        first = text.count("\n", 0, at) + 1
        last = first + new_str.count("\n")
        return ToolResult(output=self._snippet(path, new_text, first, last, "edited"))

    def _edit_insert(self, path: str, insert_line: int, new_str: str, **_ignored) -> ToolResult:
        resolved, mode = self._existing_file(path)
        data = self._read(resolved)
        text = _decode(data)
        n = len(_lines(text))
        if not 0 <= insert_line <= n:
            raise ToolError(
                "bad_range", f"invalid insert_line {insert_line}: {path} has {n} line(s); use 0 to {n}"
            )
        if insert_line == 0:
            pos = 0
        else:
            pos = -1
            for _ in range(insert_line):
                pos = text.find("\n", pos + 1)
                if pos == -1:
                    break
            pos = len(text) if pos == -1 else pos + 1
        block = new_str if new_str.endswith("\n") else new_str + "\n"
        head, tail = text[:pos], text[pos:]
        if head and not head.endswith("\n"):  # appending after a last line without a newline
            head += "\n"
            block = block[:-1] if not tail else block
        new_text = head + block + tail
        self._save(resolved, data, mode, _encode(new_text))
        added = len(_lines(block)) or 1
        return ToolResult(output=self._snippet(path, new_text, insert_line + 1, insert_line + added, "edited"))

    def _edit_undo_edit(self, path: str, **_ignored) -> ToolResult:
        kind, _mode, resolved = self._stat(path)
        key = resolved if resolved in self._history else path
        stack = self._history.get(key)
        if not stack:
            raise ToolError("no_history", f"no edit of {path} to undo")
        old, mode = stack.pop()
        if old is None:
            self.sandbox.exec(f"rm -f -- {shlex.quote(key)}", timeout=_IO_TIMEOUT, workdir="/")
            return ToolResult(output=f"Undid the creation of {path}; the file was removed.")
        self._write(key, old, mode)
        text = _decode(old)
        body = _numbered([_printable(x) for x in _lines(text)], 1)
        return ToolResult(output=f"Reverted the last edit of {path}. It now reads (cat -n):\n{body}")
