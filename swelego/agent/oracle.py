"""OraclePolicy: solves a task from its gold patch through the agent's own tools.

The oracle looks around (the repository, then each file the gold patch touches), runs the
failing tests, applies the gold patch hunk by hunk with `str_replace_editor`, reruns the
tests and calls `finish`. Edits are built from what the tools showed it: the file views
let it widen a hunk's context until `old_str` is unique in the file. A test run that the
shell leaves running (silent for a while) is waited for with `is_input`, as a user would.

With `noise` > 0 a hunk is, with that probability, replaced by a corrupted edit (a changed
constant or operator, or no edit at all), so that a batch of oracle episodes mixes
resolved and unresolved outcomes.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from swelego.agent.tools import STILL_RUNNING
from swelego.schema import TaskInstance

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_VIEW_LINE = re.compile(r"^\s*(\d+)\t(.*)$")
_SWAPS = (("==", "!="), ("!=", "=="), ("<=", ">"), (">=", "<"), (" < ", " > "), (" > ", " < "),
          (" + ", " - "), (" - ", " + "), (" and ", " or "), (" or ", " and "), ("True", "False"),
          ("False", "True"))


@dataclass
class Line:
    kind: str  # " ", "-" or "+"
    text: str
    newline: bool = True


@dataclass
class Hunk:
    src_start: int
    src_len: int
    lines: list[Line] = field(default_factory=list)

    def old(self) -> list[Line]:
        return [ln for ln in self.lines if ln.kind in " -"]

    def new(self) -> list[Line]:
        return [ln for ln in self.lines if ln.kind in " +"]


@dataclass
class FilePatch:
    path: str
    is_new: bool = False
    is_deleted: bool = False
    hunks: list[Hunk] = field(default_factory=list)


def _strip_prefix(p: str) -> str:
    p = p.split("\t")[0].strip()
    return p[2:] if p[:2] in ("a/", "b/") else p


def parse_patch(patch: str) -> list[FilePatch]:
    """The files and hunks of a (git) unified diff."""
    files: list[FilePatch] = []
    cur: FilePatch | None = None
    hunk: Hunk | None = None
    remaining = [0, 0]  # old, new lines still expected in the current hunk
    for raw in patch.split("\n"):
        if hunk is not None and (remaining[0] > 0 or remaining[1] > 0):
            kind = raw[:1] if raw else " "
            if kind in " -+":
                hunk.lines.append(Line(kind, raw[1:]))
                if kind in " -":
                    remaining[0] -= 1
                if kind in " +":
                    remaining[1] -= 1
                continue
        if raw.startswith("\\") and hunk is not None and hunk.lines:
            hunk.lines[-1].newline = False
            continue
        if raw.startswith("diff --git "):
            parts = raw.split()
            cur = FilePatch(path=_strip_prefix(parts[-1]))
            files.append(cur)
            hunk = None
        elif cur is None:
            continue
        elif raw.startswith("new file mode"):
            cur.is_new = True
        elif raw.startswith("deleted file mode"):
            cur.is_deleted = True
        elif raw.startswith("+++ "):
            target = raw[4:]
            if target.strip() != "/dev/null":
                cur.path = _strip_prefix(target)
        elif raw.startswith("--- ") and raw[4:].strip() == "/dev/null":
            cur.is_new = True
        elif (m := _HUNK_RE.match(raw)) is not None:
            src_len = int(m.group(2)) if m.group(2) is not None else 1
            tgt_len = int(m.group(4)) if m.group(4) is not None else 1
            hunk = Hunk(src_start=int(m.group(1)), src_len=src_len)
            cur.hunks.append(hunk)
            remaining = [src_len, tgt_len]
    return files


def _text(lines: list[Line]) -> str:
    return "".join(ln.text + ("\n" if ln.newline else "") for ln in lines)


def _mutate(lines: list[Line], rng: random.Random) -> list[Line] | None:
    """A copy of `lines` with one constant or operator changed in an added line, or None."""
    for idx in reversed(range(len(lines))):
        ln = lines[idx]
        if ln.kind != "+" or ln.text.lstrip().startswith("#"):
            continue
        digits = [m.start() for m in re.finditer(r"\d", ln.text)]
        if digits:
            at = rng.choice(digits)
            changed = ln.text[:at] + str((int(ln.text[at]) + 1) % 10) + ln.text[at + 1 :]
        else:
            options = [(a, b) for a, b in _SWAPS if a in ln.text]
            if not options:
                continue
            a, b = rng.choice(options)
            changed = ln.text.replace(a, b, 1)
        out = [Line(x.kind, x.text, x.newline) for x in lines]
        out[idx] = Line("+", changed, ln.newline)
        return out
    return None


def _occurrences(text: str, sub: str) -> int:
    n, i = 0, text.find(sub)
    while i != -1:
        n += 1
        i = text.find(sub, i + 1)
    return n


class OraclePolicy:
    """A scripted policy that applies the task's gold patch (optionally corrupted) via the tools."""

    name = "oracle"
    model = "oracle"

    def __init__(self, task: TaskInstance, *, noise: float = 0.0, seed: int | None = None,
                 workdir: str = "/testbed", max_test_files: int = 5):
        self.task = task
        self.noise = noise
        self.seed = seed
        self.workdir = workdir.rstrip("/")
        self.max_test_files = max_test_files
        self.sampling = {"noise": noise, "seed": seed}
        self.files = parse_patch(task.patch)
        rng = random.Random(seed)
        # Per hunk (and per new file): the lines to apply, or None to skip it; decided up front.
        self.plan: list[tuple[FilePatch, Hunk | None, list[Line] | None]] = []
        self.corrupted = 0
        for fp in self.files:
            units = [None] if fp.is_new or fp.is_deleted else fp.hunks
            for h in units:
                lines = [ln for hk in fp.hunks for ln in hk.lines] if h is None else h.lines
                if noise > 0 and rng.random() < noise:
                    self.corrupted += 1
                    lines = None if fp.is_deleted else _mutate(lines, rng)
                self.plan.append((fp, h, lines))
        self._actions = self._script()
        self._step = 0
        self._waits = 0
        self._views: dict[str, str] = {}  # path -> tool_call_id of its view
        self._sim: dict[str, list[str] | None] = {}
        self._offset: dict[str, int] = {}

    # -- the script ---------------------------------------------------------------------------
    def _abs(self, rel: str) -> str:
        return f"{self.workdir}/{rel}"

    def _script(self) -> list:
        acts: list = [("Let me look at the layout of the repository first.", "str_replace_editor",
                       {"command": "view", "path": self.workdir}, "dir")]
        for fp in self.files:
            if not fp.is_new:
                acts.append((f"Now the source of {fp.path}.", "str_replace_editor",
                             {"command": "view", "path": self._abs(fp.path)}, fp.path))
        acts.append(lambda msgs: ("Let me run the relevant tests to see the current failures.",
                                  "execute_bash", {"command": self._test_command(msgs)}, None))
        for unit in self.plan:
            acts.append(lambda msgs, unit=unit: self._edit(msgs, *unit))
        acts.append(lambda msgs: ("Let me rerun the tests to check the change.", "execute_bash",
                                  {"command": self._test_command(msgs)}, None))
        acts.append(("The change is in place and checked.", "finish",
                     {"message": "Applied a fix for the issue described in the task."}, None))
        return acts

    def _observation(self, messages: list[dict], key: str) -> str | None:
        call_id = self._views.get(key)
        for m in messages:
            if m.get("role") == "tool" and m.get("tool_call_id") == call_id:
                return m.get("content") or ""
        return None

    def _test_command(self, messages: list[dict]) -> str:
        listing = self._observation(messages, "dir") or ""
        shown = set(listing.splitlines())

        def present(files: list[str]) -> list[str]:
            # The listing is two levels deep; deeper files are assumed to exist.
            return [f for f in files if self._abs(f) in shown or f.count("/") >= 2]

        def test_files(ids: list[str]) -> list[str]:
            return list(dict.fromkeys(t.split("::")[0] for t in ids if t.split("::")[0].endswith(".py")))

        files = present(test_files(self.task.FAIL_TO_PASS)) or present(test_files(self.task.PASS_TO_PASS))
        return "python -m pytest -q " + " ".join(files[: self.max_test_files]) if files else "python -m pytest -q"

    def _file_lines(self, messages: list[dict], path: str) -> list[str] | None:
        if path in self._sim:
            return self._sim[path]
        obs = self._observation(messages, path)
        lines = None
        if obs and "characters truncated" not in obs and not obs.startswith("ERROR"):
            lines = []
            for i, row in enumerate(obs.split("\n")[1:], start=1):
                m = _VIEW_LINE.match(row)
                if m is None or int(m.group(1)) != i:
                    lines = None
                    break
                lines.append(m.group(2))
        self._sim[path] = lines
        self._offset[path] = 0
        return lines

    def _edit(self, messages: list[dict], fp: FilePatch, hunk: Hunk | None, lines: list[Line] | None):
        path = self._abs(fp.path)
        if lines is None:
            return (f"I will leave {fp.path} as it is for now.", "think",
                    {"thought": f"The change to {fp.path} does not look necessary; moving on."}, None)
        if fp.is_deleted:
            return (f"{fp.path} is no longer needed.", "execute_bash", {"command": f"rm -f {path}"}, None)
        if fp.is_new:
            return (f"Creating {fp.path}.", "str_replace_editor",
                    {"command": "create", "path": path, "file_text": _text([x for x in lines if x.kind != "-"])},
                    None)
        old = [x for x in lines if x.kind in " -"]
        new = [x for x in lines if x.kind in " +"]
        cur = self._file_lines(messages, fp.path)
        say = f"Editing {fp.path} around line {hunk.src_start + self._offset.get(fp.path, 0)}."
        if cur is None:
            if not old:
                return (say, "str_replace_editor", {"command": "insert", "path": path,
                        "insert_line": hunk.src_start, "new_str": _text(new)}, None)
            return (say, "str_replace_editor",
                    {"command": "str_replace", "path": path, "old_str": _text(old), "new_str": _text(new)}, None)
        olds = [x.text for x in old]
        pos = hunk.src_start - 1 + self._offset[fp.path] + (1 if not old else 0)
        if cur[pos : pos + len(olds)] != olds:
            pos = next((i for i in range(len(cur) - len(olds) + 1) if cur[i : i + len(olds)] == olds), -1)
        if pos < 0:
            return (say, "str_replace_editor",
                    {"command": "str_replace", "path": path, "old_str": _text(old), "new_str": _text(new)}, None)
        text = "\n".join(cur) + "\n"
        before = after = 0
        while True:
            pre = "".join(x + "\n" for x in cur[pos - before : pos])
            post = "".join(x + "\n" for x in cur[pos + len(olds) : pos + len(olds) + after])
            old_str = pre + _text(old) + post
            if old_str and _occurrences(text, old_str) == 1:
                break
            grow_before = pos - before > 0 and (before <= after or pos + len(olds) + after >= len(cur))
            if grow_before:
                before += 1
            elif pos + len(olds) + after < len(cur):
                after += 1
            else:
                break
        new_str = pre + _text(new) + post
        self._sim[fp.path] = (cur[: pos - before] + cur[pos - before : pos] + [x.text for x in new]
                              + cur[pos + len(olds) : pos + len(olds) + after] + cur[pos + len(olds) + after :])
        self._offset[fp.path] += len(new) - len(old)
        return (say, "str_replace_editor",
                {"command": "str_replace", "path": path, "old_str": old_str, "new_str": new_str}, None)

    # -- the policy interface -----------------------------------------------------------------
    def next_message(self, messages: list[dict], tools: list[dict]) -> dict:
        last = messages[-1] if messages else {}
        if last.get("role") == "tool" and STILL_RUNNING in (last.get("content") or ""):
            # a quiet test run was left running by the shell: wait for it, as a user would
            self._waits += 1
            return {"role": "assistant", "content": "The tests are still running; waiting for them.",
                    "tool_calls": [{"id": f"call_wait_{self._waits:03d}", "type": "function", "function": {
                        "name": "execute_bash", "arguments": json.dumps({"command": "", "is_input": "true"})}}]}
        if self._step >= len(self._actions):
            content, tool, args, key = ("Done.", "finish", {"message": "Done."}, None)
        else:
            act = self._actions[self._step]
            content, tool, args, key = act(messages) if callable(act) else act
        call_id = f"call_{self._step:03d}"
        if key is not None:
            self._views[key] = call_id
        self._step += 1
        return {
            "role": "assistant",
            "content": content,
            "tool_calls": [{"id": call_id, "type": "function",
                            "function": {"name": tool, "arguments": json.dumps(args)}}],
        }
