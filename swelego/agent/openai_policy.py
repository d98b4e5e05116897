"""OpenAIPolicy: the agent's next move from any OpenAI-compatible chat endpoint (vLLM, SGLang,
hosted APIs).

Two ways of calling tools are supported, chosen with `tool_format`:

- ``native``: the request carries the tool schemas and the endpoint returns structured
  `tool_calls`. Servers that run a model without a tool-call parser hand back the raw text
  instead; calls written there in the OpenHands (`<function=...>`) or Qwen
  (`<tool_call>{...}</tool_call>`) form are parsed from the content, so one setting covers both.
- ``openhands``: the mock function-calling format that SWE-Lego's teacher and students used.
  No schemas go to the endpoint; the system prompt lists the tools, earlier calls are shown as
  text, tool results come back as "EXECUTION RESULT of [tool]:" user turns, and generation
  stops at ``</function``.

Either way the policy returns a message in the scaffold's own form (structured `tool_calls`,
arguments as JSON strings), so trajectories do not depend on the wire format; the thinking a
reasoning endpoint returns apart from the content (`reasoning_content`, or vLLM's newer
`reasoning`) is kept in the message as `reasoning_content` and never sent back. A call that
cannot be parsed is returned under `parse_errors`; the loop shows the model an error
observation and records the step as failed. Retries on 429, 5xx, connection errors and
timeouts happen in the OpenAI SDK with exponential backoff (`max_retries`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from swelego.llm import LLMClient, LLMConfig

TOOL_FORMATS = ("native", "openhands")


@dataclass
class SamplingParams:
    """Sampling settings sent with every request of an episode.

    temperature / top_p: nucleus sampling; max_tokens: completion cap per turn;
    seed: forwarded to endpoints that honour it (None: unseeded).
    """

    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 4096
    seed: int | None = None


class OpenAIPolicy:
    """A policy backed by a chat-completions endpoint; one instance per episode (it keeps
    the episode's token counts)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        sampling: SamplingParams | None = None,
        tool_format: str = "native",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 300.0,
        max_retries: int = 6,
    ):
        if tool_format not in TOOL_FORMATS:
            raise ValueError(f"unknown tool format {tool_format!r} (one of {', '.join(TOOL_FORMATS)})")
        self.model = model
        self.tool_format = tool_format
        self.params = sampling or SamplingParams()
        self.sampling = {k: v for k, v in asdict(self.params).items() if v is not None}
        self.sampling["tool_format"] = tool_format
        self.client = LLMClient(LLMConfig(
            base_url=base_url, model=model, api_key_env=api_key_env, temperature=self.params.temperature,
            max_tokens=self.params.max_tokens, timeout=timeout, max_retries=max_retries, seed=self.params.seed,
        ))
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        self.last_prompt_tokens = 0

    def _request(self, messages: list[dict], tools: list[dict]) -> tuple[list[dict], dict[str, Any]]:
        wire, schemas, stop = request_messages(messages, tools, self.tool_format)
        return wire, {"top_p": self.params.top_p, "tools": schemas, "stop": stop}

    def next_message(self, messages: list[dict], tools: list[dict]) -> dict:
        wire, extra = self._request(messages, tools)
        reply, usage = self.client.chat(wire, **extra)
        self.usage["requests"] += 1
        self.usage["prompt_tokens"] += usage["prompt_tokens"]
        self.usage["completion_tokens"] += usage["completion_tokens"]
        self.last_prompt_tokens = usage["prompt_tokens"]
        # Reasoning endpoints (vLLM/SGLang reasoning parsers, hosted APIs) return the thinking
        # apart from the content; newer vLLM names the field `reasoning`.
        reasoning = reply.get("reasoning_content") or reply.get("reasoning")
        return reply_message(reply.get("content") or "", tools, self.tool_format, calls=reply.get("tool_calls"),
                             reasoning=reasoning if isinstance(reasoning, str) else None)


def request_messages(messages: list[dict], tools: list[dict],
                     tool_format: str) -> tuple[list[dict], list[dict] | None, list[str] | None]:
    """(the transcript as the model is shown it, the tool schemas sent with it, stop strings).

    native: chat messages as the API accepts them, with the schemas; openhands: text calls and
    "EXECUTION RESULT" user turns, the tool descriptions in the system prompt, no schemas, and
    generation stopping at ``</function``. HFPolicy renders the same transcript locally."""
    if tool_format == "native":
        return [_wire_message(m) for m in messages], tools, None
    from swelego.agent.textcalls import openhands_system_suffix, openhands_transcript

    wire = openhands_transcript([dict(m) for m in messages])
    if wire and wire[0].get("role") == "system":
        wire[0] = {"role": "system", "content": (wire[0].get("content") or "") + openhands_system_suffix(tools)}
    return wire, None, ["</function"]


def reply_message(content: str, tools: list[dict], tool_format: str, *, calls: list[dict] | None = None,
                  reasoning: str | None = None) -> dict:
    """The scaffold's assistant message for a model reply: native `calls` as they came, else the
    calls written in `content` as text (OpenHands `<function=...>` or Qwen `<tool_call>` blocks,
    parsed by swelego.agent.textcalls), with malformed ones under `parse_errors`. `reasoning`
    (the model's thinking, when the server or the policy separated it) is kept as
    `reasoning_content`."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": c.get("id") or f"call_{i}", "type": "function", "function": dict(c.get("function") or {})}
            for i, c in enumerate(calls)
        ]
        return message
    if tool_format == "openhands" and "<function=" in content and "</function>" not in content:
        content += "</function>"  # generation stopped at the stop word
    from swelego.agent.textcalls import parse_text_tool_calls

    parsed = parse_text_tool_calls(content, [t["function"]["name"] for t in tools])
    if parsed.tool_calls or parsed.errors:
        # Keep the model's words; the calls live in `tool_calls` like native ones.
        message["content"] = parsed.content
        if parsed.tool_calls:
            message["tool_calls"] = parsed.tool_calls
        if parsed.errors:
            message["parse_errors"] = list(parsed.errors)
    return message


def _wire_message(m: dict) -> dict:
    """A transcript message as the chat API accepts it (scaffold-only keys dropped)."""
    keep = {"role", "content", "tool_calls", "tool_call_id", "name"}
    out = {k: v for k, v in m.items() if k in keep}
    if out.get("role") == "assistant" and out.get("content") is None and not out.get("tool_calls"):
        out["content"] = ""
    return out
