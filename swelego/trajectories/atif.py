"""Harbor's Agent Trajectory Interchange Format (ATIF, RFC 0001 of the Harbor project), as an
export of our trajectories: one ATIF document per trajectory.

What the spec asks, and what we put there (facts from the RFC, no code taken from it):

* root: ``schema_version`` ("ATIF-v1.7"), ``session_id`` (the run: instance id and sample
  index), ``agent``, ``steps``, optional ``notes``, ``final_metrics`` and ``extra``. Our
  task-level facts (instance id, resolved / semi_resolved, patch, exit reason, error, start and
  end times, sampling) go in ``extra``: the core schema has no place for a graded outcome.
* ``agent``: ``name`` ("swelego") and ``version`` (the package's) are required; ``model_name``
  is the trajectory's model (omitted for the oracle, which has none); ``tool_definitions``
  (v1.5) are the OpenAI tool schemas the policy was given; ``extra.policy`` names the policy.
* ``steps``: ordinal ``step_id`` from 1, ``source`` system / user / agent and a ``message``
  string (required, may be empty). One agent step per assistant message: its text, its
  ``reasoning_content`` when the endpoint returned one, its ``tool_calls`` as
  ``{tool_call_id, function_name, arguments}`` with arguments a JSON object (arguments the
  model wrote that are not an object become ``{}`` with the text kept in the call's ``extra``,
  v1.7), and an ``observation`` whose ``results`` are the tool messages answering those calls,
  ``{source_call_id, content}``, with our per-call statistics (exit code, error flag and kind,
  truncation, seconds) in each result's ``extra``. ``llm_call_count`` (v1.7) is 1 for a model
  policy and 0 for the oracle (deterministic dispatch, as the spec defines 0). The step's
  ``extra.turn_mask`` is the same per-turn error mask the sharegpt export writes.
* ``final_metrics``: ``total_prompt_tokens`` / ``total_completion_tokens`` from the usage the
  endpoint reported (we record totals only, so steps carry no ``metrics``), ``total_steps``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from swelego import __version__
from swelego.trajectories.record import Trajectory, flatten_content

SCHEMA_VERSION = "ATIF-v1.7"
AGENT_NAME = "swelego"
DETERMINISTIC_POLICIES = ("oracle",)


def _arguments(raw: Any) -> tuple[dict, str | None]:
    """(arguments as a JSON object, the raw text when it was not one)."""
    if isinstance(raw, dict):
        return raw, None
    text = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        parsed = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}, text
    return (parsed, None) if isinstance(parsed, dict) else ({}, text)


def _result_extra(step) -> dict:
    out: dict[str, Any] = {"tool": step.tool, "error": step.error}
    if step.exit_code is not None:
        out["exit_code"] = step.exit_code
    if step.error_kind:
        out["error_kind"] = step.error_kind
    if step.truncated:
        out["truncated"] = True
    if step.duration:
        out["duration_s"] = round(step.duration, 3)
    return out


def session_id(traj: Trajectory) -> str:
    sample = (traj.sampling or {}).get("sample")
    return traj.instance_id if sample is None else f"{traj.instance_id}:{sample}"


def _tool_calls(msg: dict) -> list[dict]:
    calls = []
    for c in msg.get("tool_calls") or []:
        fn = c.get("function") or {}
        args, raw = _arguments(fn.get("arguments"))
        call: dict[str, Any] = {"tool_call_id": str(c.get("id") or ""), "function_name": fn.get("name") or "",
                                "arguments": args}
        if raw is not None:
            call["extra"] = {"raw_arguments": raw}
        calls.append(call)
    return calls


def _agent_step(msg: dict, model: str, llm_calls: int, masked: bool, malformed: bool) -> dict:
    step: dict[str, Any] = {"source": "agent", "message": flatten_content(msg.get("content"))}
    if model:
        step["model_name"] = model
    if isinstance(msg.get("reasoning_content"), str) and msg["reasoning_content"].strip():
        step["reasoning_content"] = msg["reasoning_content"]
    if calls := _tool_calls(msg):
        step["tool_calls"] = calls
    step["llm_call_count"] = llm_calls
    step["extra"] = {"turn_mask": masked, **({"malformed_call": True} if malformed else {})}
    return step


def _final_metrics(usage: dict, steps: int) -> dict:
    final: dict[str, Any] = {"total_steps": steps}
    for ours, theirs in (("prompt_tokens", "total_prompt_tokens"), ("completion_tokens", "total_completion_tokens"),
                         ("cached_tokens", "total_cached_tokens")):
        if isinstance(usage.get(ours), int):
            final[theirs] = usage[ours]
    if isinstance(usage.get("requests"), int):
        final["extra"] = {"llm_requests": usage["requests"]}
    return final


def to_atif(traj: Trajectory, error_turns: Collection[int] = ()) -> dict:
    """The trajectory as one ATIF document (a dict ready for `json.dumps`). `error_turns`:
    indices into `traj.messages` of the assistant messages flagged as errors (``turn_mask``)."""
    masked = set(error_turns)
    deterministic = traj.policy in DETERMINISTIC_POLICIES
    model = "" if deterministic else traj.model
    stats: dict[int, list] = {}  # our per-call statistics by assistant message, in result order
    for s in traj.steps:
        if s.message_index is not None:
            stats.setdefault(s.message_index, []).append(s)
    steps: list[dict] = []
    agent_step: dict | None = None
    pending: list = []  # the current agent step's call statistics not yet paired with a result
    for i, msg in enumerate(traj.messages):
        role = msg.get("role")
        if role == "tool" and agent_step is not None:
            result: dict[str, Any] = {"source_call_id": str(msg.get("tool_call_id") or ""),
                                      "content": flatten_content(msg.get("content"))}
            if pending:
                result["extra"] = _result_extra(pending.pop(0))
            agent_step.setdefault("observation", {"results": []})["results"].append(result)
            continue
        if role == "assistant":
            pending = [s for s in stats.get(i, []) if s.tool or s.error_kind != "malformed_call"]
            agent_step = {"step_id": len(steps) + 1,
                          **_agent_step(msg, model, 0 if deterministic else 1, i in masked,
                                        malformed=len(pending) < len(stats.get(i, [])))}
            steps.append(agent_step)
            continue
        # system prompt, task, nudges; a tool message before any assistant turn is kept as text
        step = {"step_id": len(steps) + 1, "source": "system" if role == "system" else "user",
                "message": flatten_content(msg.get("content"))}
        if role not in ("system", "user"):
            step["extra"] = {"role": role}
        steps.append(step)
        agent_step, pending = None, []
    agent: dict[str, Any] = {"name": AGENT_NAME, "version": __version__}
    if model:
        agent["model_name"] = model
    if traj.tools:
        agent["tool_definitions"] = traj.tools
    agent["extra"] = {"policy": traj.policy}
    return {
        "schema_version": SCHEMA_VERSION,
        "session_id": session_id(traj),
        "agent": agent,
        "steps": steps,
        "final_metrics": _final_metrics(traj.usage or {}, len(steps)),
        "extra": {"instance_id": traj.instance_id, "resolved": traj.resolved, "semi_resolved": traj.semi_resolved,
                  "exit_reason": traj.exit_reason, "error": traj.error, "turns": traj.turns,
                  "started_at": traj.started_at, "finished_at": traj.finished_at, "sampling": traj.sampling,
                  "patch": traj.patch},
    }
