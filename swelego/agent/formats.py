"""Trajectory formats other tools speak: text tool calls, OpenHands-style transcripts and
LLaMA-Factory sharegpt records, in both directions.

Models served without native function calling write their calls as text; SWE-Lego trained
and released its data in that form, so the same code parses a live model's reply, renders
our trajectories for training, and imports released datasets into `Trajectory`.

Facts this module relies on (read from the public sources, no code taken from them):

* OpenHands "mock" (non-native) function calling, `openhands/llm/fn_call_converter.py`:
  a call is ``<function=NAME>\\n<parameter=P>V</parameter>\\n...</function>``; a string value
  that spans lines is written between newlines; non-string values are written as text and
  typed back from the tool schema (integer, array); the stop word is ``</function`` so the
  closing tag may be missing; one call per message. A tool result becomes a *user* turn
  ``EXECUTION RESULT of [NAME]:\\n<output>``. The system prompt gains a line
  ``You have access to the following functions:`` followed by one block per tool,
  ``---- BEGIN FUNCTION #k: NAME ----`` / ``Description: ...`` / ``Parameters:`` /
  ``  (j) P (TYPE, required|optional): DESC`` (+ ``Allowed values: [`a`, `b`]`` for enums) /
  ``---- END FUNCTION #k ----``, then instructions on the call format.
  SWE-Lego's rendered prompt (`system_prompt_funccalloff_v0.j2`) has exactly this shape.
* SWE-Lego's released trajectories (HF `SWE-Lego/SWE-Lego-Real-Data`, `...-Synthetic-Data`):
  LLaMA-Factory `formatting: sharegpt`, `columns: {messages: messages}`, tags
  `role/content/user/assistant/system`; `messages` = system (prompt + tool descriptions),
  user (task), then alternating assistant (text calls) / user ("EXECUTION RESULT of [..]")
  turns ending with an assistant turn; no `tools` column; split `resolved`, other columns
  beyond `instance_id`/`messages` unseen. `data_process.py` replaces CRLF with LF.
* LLaMA-Factory as vendored by SWE-Lego (`data/converter.py`, `data/processor/supervised.py`):
  the sharegpt converter reads ``messages`` (role/content dicts, not ``conversations`` with
  from/value, given the tags above), strips a leading system message, requires user/observation
  at odd and assistant/function at even positions and an even count (ends on the assistant),
  and copies ``message.get('turn_mask', False)`` into every aligned message; with
  ``turn_mask: true`` in the yaml the processor reads the flag of the assistant turns only and
  gives a flagged turn's target ``IGNORE_INDEX`` labels (it stays in context). True = no loss.
* SWE-Gym trajectories (HF `SWE-Gym/OpenHands-Sampled-Trajectories`, split `train.raw`):
  ``{instance_id, run_id, resolved, messages, tools, test_result}``; messages carry native
  OpenAI ``tool_calls`` (arguments as JSON strings) and ``role: tool`` results whose content
  starts with ``OBSERVATION:\\n`` (``ERROR:`` after it for tool errors, bash output ending in
  ``[Command finished with exit code N]``). Other OpenHands exports (e.g. nebius
  SWE-rebench-openhands-trajectories) use ``trajectory`` for the message list, ``model_patch``
  and an integer ``resolved``. Text-format OpenHands transcripts (the mock format above) are
  handled by the same importer.

Round trips (ours -> OpenHands text or sharegpt -> ours) keep messages, tool names, arguments
(as parsed JSON), tools and step error flags. Not kept: call ids (text has none; importers
number them ``call_<turn>_<k>``), whitespace around the text of an assistant turn that makes
calls, the difference between ``""`` and None content, step durations, and in sharegpt the
observation after the last assistant turn (a lone final `finish` result is restored).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swelego.agent.loop import MALFORMED
from swelego.agent.tools import TOOL_SCHEMAS, parse_tool_call_arguments
from swelego.agent.trajectory import Step, Trajectory, arguments_as_string, normalize_tool_calls

TOOLS_HEADER = "You have access to the following functions:"
RESULT_PREFIX = "EXECUTION RESULT of [{name}]:\n"
STOP_WORDS = ("</function",)
_MALFORMED_PREFIX = MALFORMED.split("{errors}")[0]

_CALL_FORMAT = """\
To use a function, write the call in exactly this form, with nothing after it:

<function=FUNCTION_NAME>
<parameter=PARAMETER_NAME>value</parameter>
<parameter=OTHER_PARAMETER>
a value that
spans several lines
</parameter>
</function>

Rules:
- A call starts with <function= and ends with </function>.
- Give every required parameter; leave out optional ones you do not need.
- Make one call per message. Any explanation goes before the call, never after it.
- When no function is needed, answer in plain text.
"""

_FN_OPEN = re.compile(r"<function\s*=\s*([^>\n]*)>")
_TC_OPEN = re.compile(r"<tool_call>")
_ANY_OPEN = re.compile(r"<function\s*=\s*[^>\n]*>|<tool_call>")
_PARAM_OPEN = re.compile(r"<parameter\s*=\s*([^>\n]*)>")
_RESULT_HEAD = re.compile(r"^EXECUTION RESULT of \[([^\]\n]*)\]:\n?", re.MULTILINE)
_FN_BLOCK = re.compile(r"^---- BEGIN FUNCTION #(\d+): (.+?) ----\n(.*?)^---- END FUNCTION #\1 ----$",
                       re.MULTILINE | re.DOTALL)
_PARAM_LINE = re.compile(r"^  \((\d+)\) (\S+) \(([A-Za-z]+), (required|optional)\): ?", re.MULTILINE)
_ENUM_LINE = re.compile(r"\nAllowed values: \[(.*)\]$")
# The exit-code line ends the observation, possibly followed by OpenHands' bracketed status
# lines ("[Current working directory: ...]", "[Python interpreter: ...]").
_STATUS_TAIL = r"(?:\n\[[^\n]*\])*\s*$"
_EXIT_CODE = (
    re.compile(r"\[exit code: (-?\d+)\]" + _STATUS_TAIL),  # ours
    re.compile(r"\[Command finished with exit code (-?\d+)\]" + _STATUS_TAIL),  # OpenHands <= 0.2x
    re.compile(r"\[The command completed with exit code (-?\d+)\.\]" + _STATUS_TAIL),  # OpenHands >= 0.3x
)
_TIMEOUT_MARKS = ("[command timed out", "[The command timed out", "[The command has no new output after")
_TRUNCATION_MARKS = ("characters truncated ...]", "<response clipped>")


# -- parsing text tool calls ----------------------------------------------------------------


@dataclass
class ParsedCalls:
    """What a model's text reply holds.

    content: the text outside the calls, stripped.
    tool_calls: OpenAI-format calls (id, type='function', function{name, arguments: JSON string}).
    errors: one line per malformed call, worded so the model can correct its next attempt.
    """

    content: str
    tool_calls: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _schema_index(schemas: Iterable[dict] | None) -> dict[str, dict]:
    """name -> JSON-schema `parameters` for OpenAI tool schemas (or bare function dicts)."""
    out: dict[str, dict] = {}
    for s in schemas if schemas is not None else TOOL_SCHEMAS:
        fn = s.get("function", s) if isinstance(s, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, dict) else {}
    return out


def _typed(value: str, spec: dict | None) -> Any:
    """A text parameter value typed by its JSON-schema type; left as text when it does not fit
    (the tool layer then reports the problem in its own words)."""
    typ = (spec or {}).get("type")
    s = value.strip()
    if typ == "integer" and re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    if typ == "number":
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s)
        try:
            return float(s)
        except ValueError:
            return value
    if typ == "boolean" and s.lower() in ("true", "false"):
        return s.lower() == "true"
    if typ in ("array", "object"):
        try:
            parsed = json.loads(s)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, list if typ == "array" else dict):
            return parsed
    return value


def _param_value(raw: str) -> str:
    """A value as written between the tags, minus the one newline on each side that the
    multi-line layout adds; everything else (indentation, inner blank lines) is kept."""
    if raw.startswith("\n"):
        raw = raw[1:]
    if raw.endswith("\n"):
        raw = raw[:-1]
    return raw


def _scan_function(text: str, m: re.Match, where: str, schemas: dict[str, dict]) -> tuple[dict, str | None, int]:
    """(arguments, error, end) for the <function=NAME> block whose opening tag `m` matched.

    Values run to their own </parameter>, so a value may contain other tags (a file that
    mentions <function=...>); the block ends at </function>, at the next call that opens
    outside a value, or at the end of the text (the stop word removed the closing tag)."""
    name = m.group(1).strip()
    props = (schemas.get(name) or {}).get("properties") or {}
    args: dict[str, Any] = {}
    pos = m.end()
    while True:
        param = _PARAM_OPEN.search(text, pos)
        close = text.find("</function>", pos)
        nxt = _ANY_OPEN.search(text, pos)
        first = min((x for x in (param.start() if param else -1, close, nxt.start() if nxt else -1) if x >= 0),
                    default=-1)
        if first == -1:
            return args, None, len(text)
        if first == close:
            return args, None, close + len("</function>")
        if nxt is not None and first == nxt.start():
            return args, None, first
        assert param is not None
        pname = param.group(1).strip()
        value_end = text.find("</parameter>", param.end())
        after = _PARAM_OPEN.search(text, param.end())
        rest = close + len("</function>") if close != -1 else len(text)
        if not pname:
            return args, f"{where}: a <parameter=...> tag has no name; write <parameter=NAME>VALUE</parameter>", rest
        if value_end == -1 or (after is not None and after.start() < value_end):
            return args, (f"{where}: parameter '{pname}' is not closed; end every value with </parameter> "
                          "before the next <parameter=...> or </function>"), rest
        if pname in args:
            return args, f"{where}: parameter '{pname}' is given twice; give each parameter once", rest
        args[pname] = _typed(_param_value(text[param.end():value_end]), props.get(pname))
        pos = value_end + len("</parameter>")


def _parse_tool_call_json(body: str, where: str) -> tuple[str | None, dict | None, str | None]:
    """(name, arguments, error) for the JSON inside a Qwen-style <tool_call> block."""
    hint = 'write <tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>'
    try:
        obj = json.loads(body.strip())
    except json.JSONDecodeError as e:
        return None, None, f"{where}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno}); {hint}"
    if not isinstance(obj, dict):
        return None, None, f"{where}: expected a JSON object, got {type(obj).__name__}; {hint}"
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, None, f"{where}: the object has no \"name\" string; {hint}"
    raw = obj.get("arguments", obj.get("parameters"))
    try:
        args = parse_tool_call_arguments(raw)
    except ValueError as e:
        return name.strip(), None, f"{where} ({name.strip()}): {e}; {hint}"
    return name.strip(), args, None


def parse_text_tool_calls(
    text: str,
    tool_names: Collection[str] | None = None,
    *,
    schemas: Sequence[dict] | None = None,
    id_prefix: str | None = None,
) -> ParsedCalls:
    """Tool calls written as text: OpenHands ``<function=NAME>`` blocks and Qwen ``<tool_call>``
    blocks (a JSON object, or Qwen3-Coder's ``<function=...>`` form inside the tags), in order.

    A ``<function=...>`` block may lack its closing tag (the ``</function`` stop word cuts it
    off); its parameters must still be closed. Values are kept verbatim except for one newline
    on each side; values of parameters the tool schema types as integer, number, boolean,
    array or object are converted when they parse as such (otherwise left as text for the
    tool layer to report). `schemas` are OpenAI tool schemas used for that typing; None means
    the built-in `TOOL_SCHEMAS`, an empty list turns typing off.

    Unknown tool names: with `tool_names` None every well-formed call is returned whatever its
    name, and the tool layer answers an unknown one with an error observation paired to the
    call. With `tool_names` given, a call to another name is *not* returned but described in
    `errors` (once, with the names available), so the model hears about it exactly once.

    Call ids are ``{id_prefix}_{k}``, or random ``call_<hex>`` ids when `id_prefix` is None.
    """
    schema_idx = _schema_index(schemas)
    known = set(tool_names) if tool_names is not None else None
    pieces: list[str] = []
    calls: list[tuple[str, dict]] = []
    errors: list[str] = []
    pos = 0
    n = 0

    def add(name: str, args: dict | None, err: str | None, where: str) -> None:
        if err:
            errors.append(err)
        elif known is not None and name not in known:
            errors.append(f"{where}: unknown function '{name}'; available: {', '.join(sorted(known))}")
        else:
            calls.append((name, args or {}))

    def function_block(segment: str, m: re.Match) -> int:
        """Parse the <function=...> block opened by `m` in `segment`; returns where it ends."""
        nonlocal n
        n += 1
        name = m.group(1).strip()
        where = f"call {n} (<function={name}>)" if name else f"call {n}"
        args, err, end = _scan_function(segment, m, where, schema_idx)
        if not err and (not name or re.search(r"\s", name)):
            err = f"{where}: write the function name right after '=', as in <function=NAME>"
        add(name, args, err, where)
        return end

    while True:
        m = _ANY_OPEN.search(text, pos)
        if not m:
            pieces.append(text[pos:])
            break
        pieces.append(text[pos:m.start()])
        if m.group(0) == "<tool_call>":
            close = text.find("</tool_call>", m.end())
            end = len(text) if close == -1 else close + len("</tool_call>")
            body = text[m.end(): len(text) if close == -1 else close]
            if not body.lstrip().startswith("{") and _FN_OPEN.search(body):
                # Qwen3-Coder: the XML-style call inside the tool_call tags
                i = 0
                while (fm := _FN_OPEN.search(body, i)) is not None:
                    i = function_block(body, fm)
            else:
                n += 1
                where = f"call {n} (<tool_call>)"
                name, args, err = _parse_tool_call_json(body, where)
                add(name or "", args, err, where)
            pos = end
        else:
            fm = _FN_OPEN.match(text, m.start())
            assert fm is not None
            pos = function_block(text, fm)

    tool_calls = []
    for k, (name, args) in enumerate(calls):
        cid = f"{id_prefix}_{k}" if id_prefix is not None else f"call_{uuid.uuid4().hex[:24]}"
        tool_calls.append({"id": cid, "type": "function",
                           "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})
    content = "".join(pieces).strip()
    return ParsedCalls(content=content, tool_calls=tool_calls, errors=errors)


# -- rendering -------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render_openhands_call(name: str, arguments_json: str | dict) -> str:
    """One call in the OpenHands text format. Multi-line string values go between newlines,
    other values are written as JSON (``[1, 20]``, ``true``). Raises ValueError when the
    arguments are not a JSON object."""
    args = parse_tool_call_arguments(arguments_json)
    lines = [f"<function={name}>"]
    for key, value in args.items():
        text = _value_text(value)
        if "\n" in text:
            lines.append(f"<parameter={key}>\n{text}\n</parameter>")
        else:
            lines.append(f"<parameter={key}>{text}</parameter>")
    lines.append("</function>")
    return "\n".join(lines)


def _tool_functions(tools: Iterable[dict]) -> list[dict]:
    out = []
    for t in tools:
        fn = t.get("function", t) if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.append(fn)
    return out


def describe_tools(tools: Sequence[dict]) -> str:
    """The tool descriptions as ``---- BEGIN FUNCTION #k: NAME ----`` blocks."""
    blocks = []
    for i, fn in enumerate(_tool_functions(tools), start=1):
        lines = [f"---- BEGIN FUNCTION #{i}: {fn['name']} ----", f"Description: {fn.get('description', '')}"]
        params = fn.get("parameters")
        props = (params or {}).get("properties") or {}
        if props:
            lines.append("Parameters:")
            required = set((params or {}).get("required") or [])
            for j, (pname, spec) in enumerate(props.items(), start=1):
                status = "required" if pname in required else "optional"
                desc = spec.get("description", "")
                if "enum" in spec:
                    desc += "\nAllowed values: [" + ", ".join(f"`{v}`" for v in spec["enum"]) + "]"
                lines.append(f"  ({j}) {pname} ({spec.get('type', 'string')}, {status}): {desc}")
        else:
            lines.append("No parameters are required for this function.")
        lines.append(f"---- END FUNCTION #{i} ----")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def openhands_system_suffix(tools: Sequence[dict]) -> str:
    """What the system prompt gains for text tool calling: the tool descriptions and the call
    format. Starts with a newline; append it to the system prompt as is."""
    return f"\n{TOOLS_HEADER}\n\n{describe_tools(tools)}\n\n\n{_CALL_FORMAT}"


def split_system_prompt(content: str) -> tuple[str, list[dict]]:
    """(the prompt without the tool section, the tools described in it as OpenAI schemas).

    A described tool with the same name and parameters as a built-in one gets the built-in
    schema (the text form drops item types and bounds)."""
    at = content.rfind("\n" + TOOLS_HEADER + "\n")
    if at != -1:
        base, section = content[:at], content[at + 1:]
    elif content.startswith(TOOLS_HEADER + "\n"):  # a system prompt that is only the tool section
        base, section = "", content
    else:
        return content, []
    return base, parse_tool_descriptions(section)


def parse_tool_descriptions(text: str) -> list[dict]:
    """OpenAI tool schemas from ``---- BEGIN FUNCTION #k ... ----`` blocks (best effort)."""
    builtin = {s["function"]["name"]: s for s in TOOL_SCHEMAS}
    tools = []
    for m in _FN_BLOCK.finditer(text):
        name, block = m.group(2).strip(), m.group(3)
        if block.startswith("Description: "):
            block = block[len("Description: "):]
        cut = block.rfind("\nParameters:\n")
        if cut == -1:
            desc = block.rstrip("\n").removesuffix("\nNo parameters are required for this function.")
            params_text = ""
        else:
            desc, params_text = block[:cut], block[cut + len("\nParameters:\n"):]
        props: dict[str, dict] = {}
        required: list[str] = []
        heads = list(_PARAM_LINE.finditer(params_text))
        for k, h in enumerate(heads):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(params_text)
            pdesc = params_text[h.end():end].rstrip("\n")
            spec: dict[str, Any] = {"type": h.group(3)}
            em = _ENUM_LINE.search(pdesc)
            if em:
                spec["enum"] = [v.strip().strip("`") for v in em.group(1).split(",") if v.strip()]
                pdesc = pdesc[: em.start()]
            spec["description"] = pdesc
            props[h.group(2)] = spec
            if h.group(4) == "required":
                required.append(h.group(2))
        schema = {"type": "function", "function": {
            "name": name, "description": desc.rstrip("\n"),
            "parameters": {"type": "object", "properties": props, "required": required}}}
        known = builtin.get(name)
        if known is not None:
            kp = known["function"]["parameters"]
            if list(kp["properties"]) == list(props) and list(kp.get("required", [])) == required and \
                    known["function"]["description"] == schema["function"]["description"]:
                schema = json.loads(json.dumps(known))
        tools.append(schema)
    return tools


def _call_text(call: dict) -> str:
    fn = call.get("function") or {}
    name = fn.get("name") or ""
    try:
        return render_openhands_call(name, fn.get("arguments"))
    except ValueError:
        # Arguments that are not a JSON object cannot be laid out as parameters; show them as
        # the model wrote them so the transcript still says what happened.
        return f"<function={name}>\n{arguments_as_string(fn.get('arguments'))}\n</function>"


def _assistant_text(msg: dict) -> str:
    content = msg.get("content")
    text = content if isinstance(content, str) else _flatten(content)
    calls = "\n".join(_call_text(c) for c in msg.get("tool_calls") or [])
    if not calls:
        return text
    return f"{text}\n\n{calls}" if text.strip() else calls


def _flatten(content: Any) -> str:
    """Message content as text (OpenAI content-part lists are joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def to_openhands_messages(traj: Trajectory) -> list[dict]:
    """The trajectory as an OpenHands text-call transcript: tool descriptions in the system
    prompt, calls as text in assistant content, each tool result a user turn
    ``EXECUTION RESULT of [NAME]:\\n...``. No native tool fields remain."""
    suffix = openhands_system_suffix(traj.tools) if traj.tools else ""
    out: list[dict] = []
    names: dict[str, str] = {}
    pending: list[str] = []  # names of the last assistant message's calls, for results without ids
    if suffix and not (traj.messages and traj.messages[0].get("role") == "system"):
        out.append({"role": "system", "content": suffix.lstrip("\n")})
    for msg in traj.messages:
        role = msg.get("role")
        if role == "system":
            out.append({"role": "system", "content": _flatten(msg.get("content")) + suffix})
        elif role == "assistant":
            calls = msg.get("tool_calls") or []
            for c in calls:
                names[str(c.get("id"))] = (c.get("function") or {}).get("name") or ""
            pending = [(c.get("function") or {}).get("name") or "" for c in calls]
            out.append({"role": "assistant", "content": _assistant_text(msg)})
        elif role == "tool":
            name = names.get(str(msg.get("tool_call_id"))) or msg.get("name") or (pending[0] if pending else "")
            if pending:
                pending.pop(0)
            out.append({"role": "user",
                        "content": RESULT_PREFIX.format(name=name) + _flatten(msg.get("content"))})
        else:
            out.append({"role": "user", "content": _flatten(msg.get("content"))})
    return out


# -- LLaMA-Factory sharegpt export -------------------------------------------------------------


def error_turns_from_steps(traj: Trajectory) -> set[int]:
    """Indices (into `traj.messages`) of assistant messages with a step flagged `error`.

    Steps name their assistant message (`message_index`); older records without it are
    paired with the tool messages in order."""
    if traj.steps and all(s.message_index is not None for s in traj.steps):
        return {s.message_index for s in traj.steps if s.error and s.message_index is not None}
    out: set[int] = set()
    owner: int | None = None
    k = 0
    for i, msg in enumerate(traj.messages):
        if msg.get("role") == "assistant":
            owner = i
        elif msg.get("role") == "tool":
            if k < len(traj.steps) and traj.steps[k].error and owner is not None:
                out.add(owner)
            k += 1
    return out


def _default_error_turns(traj: Trajectory) -> set[int]:
    from swelego.agent.labels import label_trajectory

    return {lab.message_index for lab in label_trajectory(traj) if lab.error}


def to_sharegpt(traj: Trajectory, error_turns: Collection[int] | None = None) -> dict:
    """A LLaMA-Factory sharegpt record as SWE-Lego trained on: ``messages`` of role/content
    (OpenHands text calls), system first, then user/assistant strictly alternating and ending
    on an assistant turn. Every assistant message carries ``turn_mask`` (True = no loss, the
    turn stays in context); other messages leave it out (LLaMA-Factory reads
    ``message.get('turn_mask', False)``).

    error_turns: indices into `traj.messages` of the assistant messages to mask. None computes
    them with the error-label rules (`swelego.agent.labels.label_trajectory`). Consecutive tool results (several calls in one message) share one
    user turn; a trailing observation after the last assistant turn is dropped (importers
    restore a final `finish` result from its message). Raises ValueError when the trajectory
    has no assistant turn.
    """
    masked = set(_default_error_turns(traj) if error_turns is None else error_turns)
    rendered = to_openhands_messages(traj)
    # to_openhands_messages keeps one output message per input message, plus a leading system
    # message when it had to add one; map each back to its source index for the mask.
    offset = len(rendered) - len(traj.messages)
    out: list[dict] = []
    for j, msg in enumerate(rendered):
        src = j - offset
        role = msg["role"]
        if role == "system":
            if out:
                raise ValueError("a system message after the first turn cannot be expressed in sharegpt")
            out.append({"role": "system", "content": msg["content"]})
            continue
        if out and out[-1]["role"] == role:
            # Several tool results in a row (or two assistant turns): one sharegpt turn.
            out[-1]["content"] += "\n\n" + msg["content"]
            if role == "assistant":
                out[-1]["turn_mask"] = out[-1]["turn_mask"] or src in masked
            continue
        if role == "assistant" and (not out or out[-1]["role"] == "system"):
            raise ValueError("the conversation starts with an assistant turn; sharegpt needs a user turn first")
        entry = {"role": role, "content": msg["content"]}
        if role == "assistant":
            entry["turn_mask"] = src in masked
        out.append(entry)
    while out and out[-1]["role"] != "assistant":
        if out[-1]["role"] == "system":
            break
        out.pop()
    if not out or out[-1]["role"] != "assistant":
        raise ValueError("the trajectory has no assistant turn")
    return {
        "instance_id": traj.instance_id,
        "messages": out,
        "resolved": traj.resolved,
        "semi_resolved": traj.semi_resolved,
        "policy": traj.policy,
        "model": traj.model,
        "patch": traj.patch,
    }


# -- importers -------------------------------------------------------------------------------


def infer_step(tool: str, observation: str) -> Step:
    """Step statistics read back from an observation's text: exit code, error (``ERROR:``
    prefixes, timeouts, skipped calls) and truncation markers, for ours and OpenHands'."""
    text = observation or ""
    body = text[len("OBSERVATION:\n"):] if text.startswith("OBSERVATION:\n") else text
    exit_code = None
    for rx in _EXIT_CODE:
        m = rx.search(body)
        if m:
            exit_code = int(m.group(1))
            break
    error, kind = False, None
    head = body.lstrip()
    if head.startswith("ERROR"):
        error, kind = True, "tool_error"
    elif any(mark in body for mark in _TIMEOUT_MARKS):
        error, kind = True, "timeout"
    elif head.startswith("Not executed: finish was already called"):
        error, kind = True, "skipped"
    truncated = any(mark in body for mark in _TRUNCATION_MARKS)
    return Step(tool=tool, exit_code=exit_code, error=error, error_kind=kind, truncated=truncated)


def _split_results(content: str, expected: list[str]) -> list[tuple[str, str]] | None:
    """(tool name, output) pairs of a user turn made of ``EXECUTION RESULT of [..]`` blocks, or
    None when it does not start with one. With several expected results the turn is cut at
    the headers naming the expected tools in order (an output that happens to contain such a
    line elsewhere stays whole when the counts already match)."""
    first = _RESULT_HEAD.match(content)
    if not first:
        return None
    heads = [first]
    if len(expected) > 1:
        want = expected[1:]
        for h in _RESULT_HEAD.finditer(content, first.end()):
            if want and h.group(1) == want[0]:
                heads.append(h)
                want.pop(0)
    out = []
    for k, h in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(content)
        text = content[h.end():end]
        if k + 1 < len(heads):
            text = text.removesuffix("\n\n")
        out.append((h.group(1), text))
    return out


def _finish_message(call: dict) -> str | None:
    fn = call.get("function") or {}
    if fn.get("name") != "finish":
        return None
    try:
        args = parse_tool_call_arguments(fn.get("arguments"))
    except ValueError:
        return None
    msg = args.get("message")
    return msg if isinstance(msg, str) else None


def _messages_from_text(messages: list[dict], tools: list[dict]) -> tuple[list[dict], list[Step], list[dict]]:
    """Our messages from a text-call transcript: (messages, steps, tools)."""
    out: list[dict] = []
    steps: list[Step] = []
    pending: list[dict] = []  # calls of the last assistant turn still waiting for a result
    owner: int | None = None  # index in `out` of the last assistant message
    unparsed = False  # the last assistant turn tried to call a tool and failed
    turn = 0
    for msg in messages:
        role = msg.get("role")
        content = _flatten(msg.get("content"))
        if role == "system":
            base, described = split_system_prompt(content)
            if described and not tools:
                tools = described
            if base or not described:
                out.append({"role": "system", "content": base})
        elif role == "assistant":
            parsed = parse_text_tool_calls(content, schemas=tools or None, id_prefix=f"call_{turn}")
            turn += 1
            owner = len(out)
            unparsed = bool(parsed.errors)
            if parsed.errors or not parsed.tool_calls:
                # A turn whose calls do not parse is kept verbatim, without calls (what the
                # scaffold did with it shows in the next user turn).
                out.append({"role": "assistant", "content": content})
                pending = []
                if parsed.errors:
                    steps.append(Step(tool="", error=True, error_kind="malformed_call", message_index=owner))
            else:
                out.append({"role": "assistant", "content": parsed.content or None,
                            "tool_calls": parsed.tool_calls})
                pending = list(parsed.tool_calls)
        elif role == "tool":
            call = pending.pop(0) if pending else None
            cid = msg.get("tool_call_id") or (call["id"] if call else "")
            name = (call["function"]["name"] if call else "") or msg.get("name") or ""
            out.append({"role": "tool", "tool_call_id": cid, "content": content})
            steps.append(_step(name, content, owner))
        else:
            results = _split_results(content, [c["function"]["name"] for c in pending]) if pending else None
            if results is None:
                if (not unparsed and owner == len(out) - 1 and out[owner].get("role") == "assistant"
                        and content.startswith(_MALFORMED_PREFIX)):
                    # our loop's answer to a call it could not parse (the text is already gone)
                    steps.append(Step(tool="", error=True, error_kind="malformed_call", message_index=owner))
                out.append({"role": "user", "content": content})
                continue
            for name, text in results:
                if not pending:  # more results than calls: keep the rest as the user saw it
                    out.append({"role": "user", "content": RESULT_PREFIX.format(name=name) + text})
                    continue
                call = pending.pop(0)
                out.append({"role": "tool", "tool_call_id": call["id"], "content": text})
                steps.append(_step(call["function"]["name"], text, owner))
    # sharegpt ends on the assistant turn: our finish tool answers with its message, restore it.
    if pending and len(pending) == 1 and (fin := _finish_message(pending[0])) is not None:
        out.append({"role": "tool", "tool_call_id": pending[0]["id"], "content": fin})
        steps.append(Step(tool="finish", message_index=owner))
    return out, steps, tools


def _step(tool: str, observation: str, owner: int | None) -> Step:
    step = infer_step(tool, observation)
    step.message_index = owner
    return step


def _messages_native(messages: list[dict]) -> tuple[list[dict], list[Step]]:
    out: list[dict] = []
    steps: list[Step] = []
    names: dict[str, str] = {}
    owner: int | None = None
    for msg in messages:
        role = msg.get("role")
        if role == "assistant":
            m = {"role": "assistant", "content": msg.get("content")}
            if msg.get("tool_calls"):
                m["tool_calls"] = msg["tool_calls"]
            m = normalize_tool_calls(m)
            for c in m.get("tool_calls") or []:
                names[c["id"]] = c["function"]["name"]
            owner = len(out)
            out.append(m)
        elif role == "tool":
            cid = str(msg.get("tool_call_id") or "")
            content = _flatten(msg.get("content"))
            out.append({"role": "tool", "tool_call_id": cid, "content": content})
            steps.append(_step(names.get(cid) or msg.get("name") or "", content, owner))
        else:
            out.append({"role": role or "user", "content": _flatten(msg.get("content"))})
    return out, steps


def _tools_column(value: Any) -> list[dict]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []


def _as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "resolved")
    return bool(value)


def _finish(traj: Trajectory, steps: list[Step], record: dict) -> Trajectory:
    traj.steps = steps
    traj.turns = sum(1 for m in traj.messages if m.get("role") == "assistant")
    finished = any(c["function"]["name"] == "finish"
                   for m in traj.messages if m.get("role") == "assistant" for c in m.get("tool_calls") or [])
    # Imported runs carry no exit reason: one that never called finish ran out of turns or budget.
    traj.exit_reason = "finish" if finished else "max_turns"
    traj.resolved = _as_bool(record.get("resolved"))
    traj.semi_resolved = _as_bool(record.get("semi_resolved"))
    traj.patch = next((record[k] for k in ("patch", "git_patch", "model_patch", "generated_patch")
                       if isinstance(record.get(k), str)), "")
    traj.model = next((record[k] for k in ("model", "model_name") if isinstance(record.get(k), str)), "")
    return traj


def _record_messages(record: dict) -> list[dict]:
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    for key in ("messages", "trajectory", "conversations"):
        msgs = record.get(key)
        if isinstance(msgs, str):
            try:
                msgs = json.loads(msgs)
            except json.JSONDecodeError:
                raise ValueError(f"`{key}` is a string but not JSON") from None
        if isinstance(msgs, list) and msgs:
            if key == "conversations":  # sharegpt's from/value spelling
                role_of = {"human": "user", "gpt": "assistant", "observation": "user", "system": "system"}
                msgs = [{"role": role_of.get(m.get("from"), m.get("from")), "content": m.get("value"),
                         **({"turn_mask": m["turn_mask"]} if "turn_mask" in m else {})}
                        for m in msgs if isinstance(m, dict)]
            if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in msgs):
                raise ValueError(f"`{key}` has entries without a role")
            return msgs
    raise ValueError("no `messages` list in the record")


def _instance_id(record: dict) -> str:
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    iid = record.get("instance_id")
    if not isinstance(iid, str) or not iid:
        raise ValueError("the record has no `instance_id`")
    return iid


def imported_masks(source: list[dict], messages: list[dict]) -> list[int] | None:
    """The assistant messages of `messages` (our converted transcript) whose source message had
    ``turn_mask`` true, as indices into `messages`; None when no source message has the key.

    Both importers turn each source assistant message into exactly one of ours, in order, so the
    k-th flag belongs to the k-th assistant message. LLaMA-Factory reads a missing key as false."""
    src = [m for m in source if m.get("role") == "assistant"]
    if not any("turn_mask" in m for m in source):
        return None
    ours = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if len(src) != len(ours):
        raise ValueError(f"turn_mask: {len(src)} assistant turns in the record became {len(ours)}")
    return [i for i, m in zip(ours, src, strict=True) if _as_bool(m.get("turn_mask"))]


def from_swe_lego(record: dict) -> Trajectory:
    """A SWE-Lego released (or `to_sharegpt`-exported) record as our Trajectory: text calls
    become `tool_calls`, "EXECUTION RESULT of [..]" user turns become tool messages, the tool
    descriptions in the system prompt become `tools`, steps are inferred from the observations.
    Per-message ``turn_mask`` flags (the record's own error masks) are kept in
    `Trajectory.imported_masks`, for SFT's ``data.mask_source: imported | both``. Raises
    ValueError for a record without `instance_id` or messages."""
    iid = _instance_id(record)
    msgs = _record_messages(record)
    messages, steps, tools = _messages_from_text(msgs, _tools_column(record.get("tools")))
    traj = Trajectory(instance_id=iid, messages=messages, tools=tools,
                      policy=record.get("policy") or "swe-lego", imported_masks=imported_masks(msgs, messages))
    return _finish(traj, steps, record)


def from_openhands(record: dict) -> Trajectory:
    """An OpenHands / SWE-Gym trajectory record as our Trajectory. Native records
    (``tool_calls`` + ``role: tool``) keep their calls and results; text records (the mock
    format) are parsed as in `from_swe_lego`. Raises ValueError for unusable records."""
    iid = _instance_id(record)
    msgs = _record_messages(record)
    tools = _tools_column(record.get("tools"))
    native = any(m.get("tool_calls") or m.get("role") == "tool" for m in msgs)
    if native:
        messages, steps = _messages_native(msgs)
    else:
        messages, steps, tools = _messages_from_text(msgs, tools)
    traj = Trajectory(instance_id=iid, messages=messages, tools=tools,
                      policy=record.get("policy") or "openhands", imported_masks=imported_masks(msgs, messages))
    return _finish(traj, steps, record)
