"""A recorded agent episode: the chat transcript (OpenAI chat format), per-call tool
statistics, the resulting patch and its grade.

Tool-call arguments are always stored as strings (the JSON the model emitted), so a
trajectory can be fed back to a chat-completions API or a trainer unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

EXIT_REASONS = ("finish", "max_turns", "context", "error")


@dataclass
class Step:
    """Statistics of one tool call (the observation itself lives in `messages`).

    `message_index` is the index in `Trajectory.messages` of the assistant message that made
    the call. A message whose call could not be parsed gets one step with tool "" and
    error_kind "malformed_call"."""

    tool: str
    exit_code: int | None = None
    error: bool = False
    error_kind: str | None = None
    duration: float = 0.0
    truncated: bool = False
    message_index: int | None = None


def arguments_as_string(arguments: Any) -> str:
    """Tool-call arguments as a string: strings are kept verbatim, anything else is JSON-encoded."""
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, (bytes, bytearray)):
        return arguments.decode("utf-8", errors="replace")
    if arguments is None:
        return "{}"
    return json.dumps(arguments, ensure_ascii=False)


def flatten_content(content: Any) -> str:
    """Message content as text (OpenAI content-part lists are joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def normalize_tool_calls(message: dict) -> dict:
    """A copy of an assistant message whose tool calls all have id, type and string arguments."""
    msg = dict(message)
    calls = msg.get("tool_calls")
    if not calls:
        msg.pop("tool_calls", None)
        return msg
    out = []
    for i, call in enumerate(calls):
        call = dict(call) if isinstance(call, dict) else {}
        fn = call.get("function")
        fn = dict(fn) if isinstance(fn, dict) else {}
        name = fn.get("name")
        fn["name"] = name if isinstance(name, str) else ""
        fn["arguments"] = arguments_as_string(fn.get("arguments"))
        out.append({"id": str(call.get("id") or f"call_{i}"), "type": "function", "function": fn})
    msg["tool_calls"] = out
    return msg


REASONING_MODES = ("keep", "drop")


def reasoning_messages(messages: list[dict], mode: str = "keep", *, inline: bool = False) -> list[dict]:
    """`messages` with the thinking of assistant turns (`reasoning_content`, as reasoning
    endpoints and HFPolicy record it) kept or dropped, for training and export.

    keep: left in `reasoning_content` (Qwen3-style chat templates render it as
    ``<think>\n...\n</think>\n\n`` before the content), or with `inline` written into the
    content in that form (text formats, templates that do not read the field); drop: removed."""
    if mode not in REASONING_MODES:
        raise ValueError(f"reasoning must be one of {', '.join(REASONING_MODES)}, got {mode!r}")
    out = []
    for m in messages:
        if m.get("role") != "assistant" or "reasoning_content" not in m:
            out.append(m)
            continue
        msg = dict(m)
        thought = msg.pop("reasoning_content")
        if mode == "keep" and isinstance(thought, str) and thought.strip():
            if inline:
                msg["content"] = f"<think>\n{thought.strip()}\n</think>\n\n" + (msg.get("content") or "")
            else:
                msg["reasoning_content"] = thought
        out.append(msg)
    return out


@dataclass
class Trajectory:
    instance_id: str
    messages: list[dict] = field(default_factory=list)
    tools: list[dict] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    patch: str = ""
    resolved: bool | None = None
    semi_resolved: bool | None = None
    policy: str = ""
    model: str = ""
    sampling: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    usage: dict = field(default_factory=dict)  # token counts the endpoint reported
    turns: int = 0
    exit_reason: str = "error"
    error: str = ""  # what went wrong when exit_reason is "error"
    # Assistant messages (indices into `messages`) the source dataset excluded from the loss
    # (SWE-Lego's per-message `turn_mask: true`); None when the source carried no masks.
    imported_masks: list[int] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["messages"] = [normalize_tool_calls(m) if m.get("tool_calls") else dict(m) for m in self.messages]
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> Trajectory:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in d.items() if k in known}
        data["steps"] = [s if isinstance(s, Step) else Step(**s) for s in data.get("steps", [])]
        data["messages"] = [
            normalize_tool_calls(m) if m.get("tool_calls") else dict(m) for m in data.get("messages", [])
        ]
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Trajectory:
        return cls.from_dict(json.loads(text))
