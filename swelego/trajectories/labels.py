"""Step-level error labels: which assistant turns of a trajectory failed, and why.

A turn labelled as an error stays in the training context but gets no loss ("error
masking", SWE-Lego §2). The decision is a small, documented rule set. It reads the per-call
metadata our scaffold records (`Step.error_kind`, `exit_code`) when a trajectory has it and
falls back to reading the observations (imported data: our own tool messages, OpenHands /
SWE-Lego messages) when it does not.

Rules (names used in configs, labels and reports):

- ``unparseable_call``: a tool call whose arguments are not a JSON object, or an assistant
  message that writes call markup (``<tool_call>``, ``<function=``) that never became a call.
- ``unknown_tool``: a call to a tool that is not in the trajectory's tool list.
- ``invalid_arguments``: arguments the tool rejected (missing/unexpected/mistyped, relative path).
- ``editor_error``: the editor failed: ``old_str`` not found or not unique, missing path, bad
  ``view_range`` / ``insert_line``, creating an existing file, undo without history.
- ``shell_error``: ``command not found`` (exit 127), not executable (exit 126), shell syntax errors.
- ``timeout``: the command was killed at its time limit.
- ``own_edit_traceback``: a Python SyntaxError / IndentationError / NameError / ImportError whose
  innermost frame is in a file the agent itself changed earlier, and that was not already seen
  before that change (so the reported bug reproduced by a script is not blamed on the agent).
  A failing assertion or test is never an error.
- ``no_tool_call``: an assistant message with no tool call that is not the last one (the
  scaffold had to nudge the model).
- ``tool_error``: any other failure the scaffold flagged on the step (future error kinds).
- ``skipped_after_finish``: calls made after ``finish`` in the same message (off by default).

Where the masks come from (`turn_labels`, SFT's ``data.mask_source``): ``rules`` (the rules
above), ``imported`` (the masks the source dataset shipped, e.g. SWE-Lego's per-message
``turn_mask``, kept by the importers in `Trajectory.imported_masks`; reported as the pseudo-rule
``imported_mask``), or ``both`` (a turn is masked when either says so).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from swelego.agent.tools import parse_tool_call_arguments
from swelego.trajectories.record import Step, Trajectory

ALL_RULES = (
    "unparseable_call",
    "unknown_tool",
    "invalid_arguments",
    "editor_error",
    "shell_error",
    "timeout",
    "own_edit_traceback",
    "no_tool_call",
    "tool_error",
    "skipped_after_finish",
)
DEFAULT_RULES = tuple(r for r in ALL_RULES if r != "skipped_after_finish")

# Observation patterns used when a call has no step metadata. The first group covers the messages
# of swelego.agent.tools, the second OpenHands' CodeAct messages (the scaffold of SWE-Lego's data).
DEFAULT_PATTERNS: dict[str, list[str]] = {
    "unknown_tool": [
        r"^ERROR: unknown tool",
        r"FunctionCallNotExistsError",
        r"(?i)^(?:ERROR:\s*)?tool \S+ (?:is not|isn't) (?:registered|available|defined)",
    ],
    "unparseable_call": [
        r"^ERROR: could not parse the arguments",
        r"FunctionCallConversionError",
        r"(?i)^(?:ERROR:\s*)?failed to parse (?:the )?(?:tool|function) call",
    ],
    "invalid_arguments": [
        r"^ERROR: (?:unexpected argument|missing required argument|`\w+` must be|`\w+` is empty|"
        r"`\w+` needs argument|path .* is not absolute|`view_range` applies|`new_str` is identical|.* is a directory; this command needs a file)",
        r"FunctionCallValidationError",
        r"(?i)missing required (?:parameters?|arguments?) for function",
        r"(?i)parameter .{1,60} is not allowed for function",
        r"Invalid `path` parameter: .* (?:absolute path|starting with `/`)",
    ],
    "editor_error": [
        r"^ERROR: `old_str` (?:was not found|occurs \d+ times)",
        r"^ERROR: \S.* does not exist",
        r"^ERROR: invalid (?:view_range|insert_line)",
        r"^ERROR: \S.* already exists",
        r"^ERROR: no edit of \S.* to undo",
        r"(?i)No replacement was performed",
        r"Invalid `(?:path|view_range|insert_line)` parameter",
        r"(?i)File already exists at",
        r"(?i)No edit history found",
    ],
    "timeout": [
        r"^\[command timed out",
        r"(?im)^\[?The command timed out after",
        r"(?im)^Command timed out after",
    ],
    "shell_error": [
        r"(?m)^(?:/bin/(?:ba)?sh: |bash: |sh: )?(?:line \d+: )?[^\s:]+: command not found\s*$",
        r"(?m)^(?:/bin/(?:ba)?sh: |bash: |sh: )(?:line \d+: )?.*syntax error(?: near unexpected token|: unexpected end of file)",
        r"(?m)^(?:/bin/(?:ba)?sh: |bash: |sh: )(?:line \d+: )?.*unexpected EOF while looking for matching",
        r"(?m)^(?:/bin/(?:ba)?sh: |bash: |sh: )(?:line \d+: )?\S+: Permission denied\s*$",
    ],
}

# exit code at the end of an observation: ours, then OpenHands'
_EXIT_CODE = [re.compile(r"\[exit code: (-?\d+)\]\s*$"), re.compile(r"exit code (-?\d+)\.?\]\s*$")]  # ours, OpenHands
_CALL_MARKUP = re.compile(r"<tool_call>|<function=|</function>")
_FILE_REF = re.compile(r'File "([^"]+)", line \d+|^(?:E\s+)?([\w./-]+\.py):\d+: ', re.M)
_MSG_PATH = re.compile(r"\((/[^()\s]+\.py)\)")
_REDIRECT = re.compile(r"(?:>>?|\btee(?:\s+-a)?)\s*['\"]?([^\s'\";&|<>()]+)")
_INPLACE = re.compile(r"\b(?:sed|perl)\s+(?:-\S+\s+)*-\w*i")
_COPY = re.compile(r"\b(?:cp|mv)\s+(?:-\S+\s+)*\S+\s+([^\s;&|]+)")
_PY_TOKEN = re.compile(r"[\w./-]+\.py\b")

EDITING_COMMANDS = ("create", "str_replace", "insert")
BASH_TOOLS = ("execute_bash", "bash", "run_shell_command", "shell")
EDITOR_TOOLS = ("str_replace_editor", "edit_file", "editor")


@dataclass
class LabelRules:
    """The error rule set. Every field can be set from YAML (``data.rules`` in an SFT config)."""

    enabled: list[str] = field(
        default_factory=lambda: list(DEFAULT_RULES),
        metadata={"help": f"Rules that can mark a turn as an error; any of {', '.join(ALL_RULES)}."},
    )
    editor_error_kinds: list[str] = field(
        default_factory=lambda: ["not_found", "not_unique", "bad_range", "exists", "no_history"],
        metadata={"help": "Step error kinds of the editor tool that count as `editor_error`."},
    )
    traceback_errors: list[str] = field(
        default_factory=lambda: [
            "SyntaxError", "IndentationError", "TabError", "NameError", "ImportError", "ModuleNotFoundError",
        ],
        metadata={"help": "Python exception types that `own_edit_traceback` blames on the agent's edits."},
    )
    traceback_blame: str = field(
        default="edit",
        metadata={"help": "Which turn `own_edit_traceback` masks: `edit` = the turn that last changed the "
                  "failing file (the cause), `run` = the turn whose command showed the traceback."},
    )
    shell_exit_codes: list[int] = field(
        default_factory=lambda: [126, 127],
        metadata={"help": "Shell exit codes that count as `shell_error` (127 command not found, 126 not "
                  "executable)."},
    )
    workdir: str = field(default="/testbed", metadata={"help": "Directory relative paths are resolved in."})
    extra_patterns: dict[str, list[str]] = field(
        default_factory=dict,
        metadata={"help": "More observation regexes per rule (rule name -> list), added to the built-in ones; "
                  "used for calls without step metadata (and always for shell_error / timeout)."},
    )

    def __post_init__(self) -> None:
        unknown = [r for r in [*self.enabled, *self.extra_patterns] if r not in ALL_RULES]
        if unknown:
            raise ValueError(f"unknown label rule(s) {', '.join(unknown)}; choose from {', '.join(ALL_RULES)}")
        if self.traceback_blame not in ("edit", "run"):
            raise ValueError(f"traceback_blame must be 'edit' or 'run', got {self.traceback_blame!r}")
        merged = {k: list(v) for k, v in DEFAULT_PATTERNS.items()}
        for k, v in self.extra_patterns.items():
            merged.setdefault(k, []).extend(v)
        self._patterns = {k: [re.compile(p, re.M) for p in v] for k, v in merged.items()}
        self._tb = re.compile(
            r"(?m)^(?:E\s+)?(" + "|".join(map(re.escape, self.traceback_errors)) + r")\b(?::\s*(.*))?$"
        ) if self.traceback_errors else None

    def matches(self, rule: str, text: str) -> bool:
        return any(p.search(text) for p in self._patterns.get(rule, ()))


@dataclass
class TurnLabel:
    """The label of one assistant message: `error` turns keep their tokens but get no loss."""

    message_index: int  # index into traj.messages
    error: bool
    reason: str | None = None  # "<rule>: <detail>" of the first rule that fired
    rules: list[str] = field(default_factory=list)  # every enabled rule that fired on this turn

    @property
    def rule(self) -> str | None:
        return self.rules[0] if self.rules else None

    def to_dict(self) -> dict:
        return {"message_index": self.message_index, "error": self.error, "reason": self.reason,
                "rules": list(self.rules)}


@dataclass
class _Call:
    turn: int  # position among assistant messages
    name: str
    arguments: str
    step: Step | None
    observation: str


def _content(msg: dict) -> str:
    c = msg.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content blocks
        return "".join(b.get("text", "") for b in c if isinstance(b, dict))
    return ""


def _exit_code(step: Step | None, observation: str) -> int | None:
    if step is not None and step.exit_code is not None:
        return step.exit_code
    tail = observation[-200:]
    for pat in _EXIT_CODE:
        if m := pat.search(tail):
            return int(m.group(1))
    return None


def _norm(path: str, workdir: str) -> str:
    path = path.strip().strip("'\"")
    if path.startswith("/"):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(workdir, path))


def _same_file(a: str, b: str) -> bool:
    # Paths from tracebacks may be relative to a different directory than the agent's edits.
    return a == b or a.endswith("/" + b.lstrip("./")) or b.endswith("/" + a.lstrip("./"))


def _edited_paths(call: _Call, args: dict | None, workdir: str) -> list[str]:
    """Files a call writes (editor edits, shell redirections, sed -i, cp/mv targets)."""
    if args is None:
        return []
    if call.name in EDITOR_TOOLS:
        if args.get("command") in EDITING_COMMANDS and isinstance(args.get("path"), str):
            return [_norm(args["path"], workdir)]
        return []
    cmd = args.get("command") if call.name in BASH_TOOLS else None
    if not isinstance(cmd, str):
        return []
    out = [m.group(1) for m in _REDIRECT.finditer(cmd)]
    out += [m.group(1) for m in _COPY.finditer(cmd)]
    if _INPLACE.search(cmd):
        out += _PY_TOKEN.findall(cmd)
    return [_norm(p, workdir) for p in out if not p.startswith(("&", "/dev/")) and not p.isdigit()]


def _tracebacks(text: str, rules: LabelRules) -> list[tuple[str, str, list[str]]]:
    """(exception type, message, files of the innermost frame / message) for each listed error."""
    if rules._tb is None:
        return []
    out = []
    for m in rules._tb.finditer(text):
        before = text[: m.start()]
        refs = list(_FILE_REF.finditer(before[-6000:]))
        files = []
        if refs:
            last = refs[-1]
            files.append(last.group(1) or last.group(2))
        files += _MSG_PATH.findall(m.group(0))
        out.append((m.group(1), (m.group(2) or "").strip(), files))
    return out


def _collect_calls(traj: Trajectory) -> tuple[list[int], list[_Call], set[int]]:
    """Assistant message indices, every tool call with its step and observation, and the turns
    the scaffold recorded as unparseable (`malformed_call` steps).

    Steps are matched to calls through `Step.message_index` when every step has one, else by
    position when there is one step per call, else not at all (observations are read instead)."""
    msgs = traj.messages
    assistant = [i for i, m in enumerate(msgs) if m.get("role") == "assistant"]
    turn_of = {i: t for t, i in enumerate(assistant)}
    malformed: set[int] = set()
    steps_for: dict[int, list[Step]] = {}
    if traj.steps and all(s.message_index is not None for s in traj.steps):
        for s in traj.steps:
            if s.error_kind == "malformed_call" and not s.tool:
                if s.message_index in turn_of:
                    malformed.add(turn_of[s.message_index])
                continue
            steps_for.setdefault(s.message_index, []).append(s)
    else:
        n_calls = sum(len(msgs[i].get("tool_calls") or []) for i in assistant)
        if len(traj.steps) == n_calls and n_calls > 0:
            it = iter(traj.steps)
            for i in assistant:
                steps_for[i] = [next(it) for _ in msgs[i].get("tool_calls") or []]
    by_id: dict[str, str] = {}
    for m in msgs:
        if m.get("role") == "tool" and m.get("tool_call_id") is not None:
            by_id.setdefault(str(m["tool_call_id"]), _content(m))
    calls: list[_Call] = []
    for turn, i in enumerate(assistant):
        tcs = msgs[i].get("tool_calls") or []
        following: list[dict] = []  # observations after this message, up to the next assistant message
        for m in msgs[i + 1 :]:
            if m.get("role") == "assistant":
                break
            following.append(m)
        tool_msgs = [m for m in following if m.get("role") == "tool"]
        own_steps = steps_for.get(i, [])
        for j, tc in enumerate(tcs):
            fn = tc.get("function") or {}
            obs = by_id.get(str(tc.get("id")))
            if obs is None:
                if j < len(tool_msgs):
                    obs = _content(tool_msgs[j])
                elif len(tcs) == 1 and following:  # observation sent back as a user message
                    obs = _content(following[0])
                else:
                    obs = ""
            if obs.startswith("OBSERVATION:\n"):  # OpenHands' prefix
                obs = obs[len("OBSERVATION:\n"):]
            args = fn.get("arguments")
            calls.append(_Call(turn=turn, name=str(fn.get("name") or ""),
                               arguments=args if isinstance(args, str) else json.dumps(args),
                               step=own_steps[j] if j < len(own_steps) else None, observation=obs))
    return assistant, calls, malformed


def _observation_rules(obs: str, head: str, rules: LabelRules) -> list[tuple[str, str]]:
    out = []
    for rule in ("unknown_tool", "unparseable_call", "invalid_arguments", "editor_error", "timeout"):
        if rules.matches(rule, head if rule != "timeout" else obs[-600:] + "\n" + head):
            out.append((rule, "observation"))
    return out


def _call_rules(call: _Call, args: dict | None, parse_error: str | None, tool_names: set[str],
                rules: LabelRules) -> list[tuple[str, str]]:
    """(rule, detail) for each rule that fires on one call (traceback rule excluded)."""
    fired: list[tuple[str, str]] = []
    obs = call.observation
    step = call.step
    head = obs.lstrip()[:600]
    if tool_names and call.name not in tool_names:
        fired.append(("unknown_tool", f"no tool named {call.name!r}"))
    if parse_error is not None:
        fired.append(("unparseable_call", parse_error))
    if step is not None:
        kind = step.error_kind
        if step.error and kind:
            if kind == "unknown_tool":
                fired.append(("unknown_tool", f"no tool named {call.name!r}"))
            elif kind == "bad_arguments":
                fired.append(("unparseable_call" if parse_error else "invalid_arguments", kind))
            elif kind == "timeout":
                fired.append(("timeout", "killed at the time limit"))
            elif kind == "skipped":
                fired.append(("skipped_after_finish", "called after finish"))
            elif kind in rules.editor_error_kinds and call.name not in BASH_TOOLS:
                fired.append(("editor_error", kind))
            else:  # a generic kind (imported data: "tool_error"): the observation may say more
                fired.extend(_observation_rules(obs, head, rules) or [("tool_error", kind)])
        elif step.error:
            fired.extend(_observation_rules(obs, head, rules) or [("tool_error", "step flagged as an error")])
    else:
        fired.extend(_observation_rules(obs, head, rules))
    if call.name in BASH_TOOLS or (args is not None and "command" in args and call.name not in EDITOR_TOOLS):
        code = _exit_code(step, obs)
        if code in rules.shell_exit_codes:
            fired.append(("shell_error", f"exit code {code}"))
        elif rules.matches("shell_error", obs):
            fired.append(("shell_error", "shell reported an error"))
        if step is not None and rules.matches("timeout", obs[-600:]) and not any(r == "timeout" for r, _ in fired):
            fired.append(("timeout", "observation"))
    return fired


def label_trajectory(traj: Trajectory, rules: LabelRules | None = None) -> list[TurnLabel]:
    """One label per assistant message of `traj`, in order."""
    rules = rules or LabelRules()
    enabled = set(rules.enabled)
    assistant, calls, malformed = _collect_calls(traj)
    labels = [TurnLabel(message_index=i, error=False) for i in assistant]
    fired: list[list[tuple[str, str]]] = [[] for _ in assistant]
    tool_names = {t.get("function", {}).get("name") for t in traj.tools if isinstance(t, dict)} - {None}

    # Messages without calls: markup that never parsed, or a turn the scaffold had to nudge.
    with_calls = {c.turn for c in calls}
    for turn, i in enumerate(assistant):
        if turn in malformed:
            fired[turn].append(("unparseable_call", "the scaffold could not parse the call"))
            continue
        if turn in with_calls:
            continue
        text = _content(traj.messages[i])
        if _CALL_MARKUP.search(text):
            fired[turn].append(("unparseable_call", "call markup without a parsed tool call"))
        elif turn < len(assistant) - 1:
            fired[turn].append(("no_tool_call", "no tool call before the end of the episode"))

    changed: dict[str, int] = {}  # file -> turn of the last edit
    first_edit: dict[str, int] = {}
    seen_errors: list[tuple[int, str, str]] = []  # (turn, type, message) of listed exceptions seen so far
    for call in calls:
        parse_error = None
        try:
            args = parse_tool_call_arguments(call.arguments)
        except ValueError as e:
            args, parse_error = None, str(e)
        call_fired = _call_rules(call, args, parse_error, tool_names, rules)
        fired[call.turn].extend(call_fired)
        if not call_fired:  # a failed edit changes nothing; a command may write a file and then run it
            for p in _edited_paths(call, args, rules.workdir):
                changed[p] = call.turn
                first_edit.setdefault(p, call.turn)

        for etype, emsg, files in _tracebacks(call.observation, rules):
            hit = next(((p, changed[p]) for f in files for p in changed
                        if _same_file(p, _norm(f, rules.workdir)) or _same_file(p, f)), None)
            if hit is not None:
                path, edit_turn = hit
                already = any(t < first_edit[path] and et == etype and em == emsg for t, et, em in seen_errors)
                if not already:
                    blamed = edit_turn if rules.traceback_blame == "edit" else call.turn
                    fired[blamed].append(("own_edit_traceback", f"{etype} in {path} (seen in turn {call.turn})"))
            seen_errors.append((call.turn, etype, emsg))

    for turn, label in enumerate(labels):
        hits = [(r, d) for r, d in fired[turn] if r in enabled]
        seen: list[str] = []
        for r, _ in hits:
            if r not in seen:
                seen.append(r)
        label.rules = seen
        if hits:
            label.error = True
            label.reason = f"{hits[0][0]}: {hits[0][1]}"
    return labels


MASK_SOURCES = ("rules", "imported", "both")
IMPORTED_MASK = "imported_mask"  # the rule name imported masks are reported under


def turn_labels(traj: Trajectory, rules: LabelRules | None = None, source: str = "rules") -> list[TurnLabel]:
    """One label per assistant message, from the error rules, the trajectory's imported masks,
    or both (see the module docstring). A trajectory without imported masks gets none from
    ``imported`` (every turn trained) and only the rules' from ``both``."""
    if source not in MASK_SOURCES:
        raise ValueError(f"mask source must be one of {', '.join(MASK_SOURCES)}, not {source!r}")
    if source == "imported":
        labels = [TurnLabel(message_index=i, error=False)
                  for i, m in enumerate(traj.messages) if m.get("role") == "assistant"]
    else:
        labels = label_trajectory(traj, rules)
    if source == "rules" or not traj.imported_masks:
        return labels
    masked = set(traj.imported_masks)
    for lab in labels:
        if lab.message_index in masked:
            if not lab.error:
                lab.error, lab.reason = True, f"{IMPORTED_MASK}: the source dataset's turn_mask"
            lab.rules.append(IMPORTED_MASK)
    return labels


@dataclass
class LabelSummary:
    """Counts over many trajectories: per rule, and the masked share of assistant turns."""

    trajectories: int = 0
    turns: int = 0
    masked: int = 0
    all_masked: int = 0  # trajectories with no trainable assistant turn left
    primary: dict[str, int] = field(default_factory=dict)  # turns masked, by the first rule that fired
    fired: dict[str, int] = field(default_factory=dict)  # turns on which each rule fired

    def add(self, labels: Iterable[TurnLabel]) -> None:
        labels = list(labels)
        self.trajectories += 1
        self.turns += len(labels)
        n = sum(lab.error for lab in labels)
        self.masked += n
        if labels and n == len(labels):
            self.all_masked += 1
        for lab in labels:
            if lab.rule:
                self.primary[lab.rule] = self.primary.get(lab.rule, 0) + 1
            for r in lab.rules:
                self.fired[r] = self.fired.get(r, 0) + 1

    @property
    def masked_share(self) -> float:
        return self.masked / self.turns if self.turns else 0.0

    def to_dict(self) -> dict:
        return {"trajectories": self.trajectories, "assistant_turns": self.turns, "masked_turns": self.masked,
                "masked_share": round(self.masked_share, 6), "all_masked_trajectories": self.all_masked,
                "masked_by_rule": dict(sorted(self.primary.items())),
                "fired_by_rule": dict(sorted(self.fired.items()))}
