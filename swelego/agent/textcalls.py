"""Tool calls written as text, as the live policy needs them every turn: parsing a model's
reply (OpenHands ``<function=NAME>`` blocks, Qwen ``<tool_call>`` blocks), and rendering a
transcript and the tool descriptions in OpenHands' text form for a model served without
native function calling (`OpenAIPolicy` / `HFPolicy` with ``tool_format: openhands``).
Dataset export and import in these forms live in `swelego.trajectories.formats`.

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
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swelego.agent.tools import TOOL_SCHEMAS, parse_tool_call_arguments
from swelego.trajectories.record import arguments_as_string, flatten_content

TOOLS_HEADER = "You have access to the following functions:"
RESULT_PREFIX = "EXECUTION RESULT of [{name}]:\n"
STOP_WORDS = ("</function",)

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
_FN_BLOCK = re.compile(r"^---- BEGIN FUNCTION #(\d+): (.+?) ----\n(.*?)^---- END FUNCTION #\1 ----$",
                       re.MULTILINE | re.DOTALL)
_PARAM_LINE = re.compile(r"^  \((\d+)\) (\S+) \(([A-Za-z]+), (required|optional)\): ?", re.MULTILINE)
_ENUM_LINE = re.compile(r"\nAllowed values: \[(.*)\]$")


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


# long: one scan over the text, in order; a quarter of it is the docstring stating the grammar.
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
    text = content if isinstance(content, str) else flatten_content(content)
    calls = "\n".join(_call_text(c) for c in msg.get("tool_calls") or [])
    if not calls:
        return text
    return f"{text}\n\n{calls}" if text.strip() else calls


def openhands_transcript(messages: list[dict], tools: Sequence[dict] = ()) -> list[dict]:
    """The transcript as an OpenHands text-call transcript: tool descriptions in the system
    prompt, calls as text in assistant content, each tool result a user turn
    ``EXECUTION RESULT of [NAME]:\\n...``. No native tool fields remain."""
    suffix = openhands_system_suffix(tools) if tools else ""
    out: list[dict] = []
    names: dict[str, str] = {}
    pending: list[str] = []  # names of the last assistant message's calls, for results without ids
    if suffix and not (messages and messages[0].get("role") == "system"):
        out.append({"role": "system", "content": suffix.lstrip("\n")})
    for msg in messages:
        role = msg.get("role")
        if role == "system":
            out.append({"role": "system", "content": flatten_content(msg.get("content")) + suffix})
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
                        "content": RESULT_PREFIX.format(name=name) + flatten_content(msg.get("content"))})
        else:
            out.append({"role": "user", "content": flatten_content(msg.get("content"))})
    return out

