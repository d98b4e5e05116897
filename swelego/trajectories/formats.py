"""Interchange formats for trajectory datasets: export to LLaMA-Factory sharegpt records with
per-turn `turn_mask` (SWE-Lego's training format) and OpenHands text-call transcripts, and
import of the trajectory datasets others released (SWE-Lego, SWE-Gym / OpenHands) as our
`Trajectory`. The text tool-call grammar itself lives next to the policy that speaks it
(`swelego.agent.textcalls`); Harbor's ATIF is in `swelego.trajectories.atif`.

Facts this module relies on (read from the public sources, no code taken from them):

* OpenHands "mock" function calling: see `swelego.agent.textcalls`. A tool result becomes a
  *user* turn ``EXECUTION RESULT of [NAME]:\\n<output>``.
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
from collections.abc import Collection
from typing import Any

from swelego.agent.loop import MALFORMED
from swelego.agent.textcalls import (
    RESULT_PREFIX,
    openhands_transcript,
    parse_text_tool_calls,
    split_system_prompt,
)
from swelego.agent.tools import parse_tool_call_arguments
from swelego.trajectories.labels import label_trajectory
from swelego.trajectories.record import Step, Trajectory, flatten_content, normalize_tool_calls

_MALFORMED_PREFIX = MALFORMED.split("{errors}")[0]
_RESULT_HEAD = re.compile(r"^EXECUTION RESULT of \[([^\]\n]*)\]:\n?", re.MULTILINE)
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


# -- OpenHands text-call export --------------------------------------------------------------


def to_openhands_messages(traj: Trajectory) -> list[dict]:
    """The trajectory as an OpenHands text-call transcript (`textcalls.openhands_transcript` of
    its messages and tools)."""
    return openhands_transcript(traj.messages, traj.tools)


def to_openhands_record(traj: Trajectory) -> dict:
    """One record of the `openhands` export: the text-call transcript with the trajectory's
    tools, outcome, policy, model and patch."""
    return {"instance_id": traj.instance_id, "messages": to_openhands_messages(traj), "tools": traj.tools,
            "resolved": traj.resolved, "semi_resolved": traj.semi_resolved, "policy": traj.policy,
            "model": traj.model, "patch": traj.patch}


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
    return {lab.message_index for lab in label_trajectory(traj) if lab.error}


def to_sharegpt(traj: Trajectory, error_turns: Collection[int] | None = None) -> dict:
    """A LLaMA-Factory sharegpt record as SWE-Lego trained on: ``messages`` of role/content
    (OpenHands text calls), system first, then user/assistant strictly alternating and ending
    on an assistant turn. Every assistant message carries ``turn_mask`` (True = no loss, the
    turn stays in context); other messages leave it out (LLaMA-Factory reads
    ``message.get('turn_mask', False)``).

    error_turns: indices into `traj.messages` of the assistant messages to mask. None computes
    them with the error-label rules (`swelego.trajectories.labels.label_trajectory`). Consecutive tool results (several calls in one
    message) share one user turn; a trailing observation after the last assistant turn is dropped (importers
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
        content = flatten_content(msg.get("content"))
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
            content = flatten_content(msg.get("content"))
            out.append({"role": "tool", "tool_call_id": cid, "content": content})
            steps.append(_step(names.get(cid) or msg.get("name") or "", content, owner))
        else:
            out.append({"role": role or "user", "content": flatten_content(msg.get("content"))})
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
