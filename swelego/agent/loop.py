"""The agent loop: a policy proposes assistant messages, the tools run them in a sandbox,
and the episode ends with a patch (the repository's diff against the task's base commit)
and, optionally, its grade."""

from __future__ import annotations

import shlex
import traceback
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from swelego.agent.tools import TOOL_SCHEMAS, ToolBox
from swelego.harness import patch_files, run_eval
from swelego.sandbox.gitsanitize import SanitizeResult, sanitize_repo
from swelego.schema import TaskInstance
from swelego.trajectories.record import Step, Trajectory, normalize_tool_calls

DEFAULT_SYSTEM_PROMPT = """\
You are a software engineer working in a Linux sandbox on a Python repository checked out \
at /testbed. You act only through tools:
- execute_bash: run a command in a persistent bash session that starts in /testbed (no \
network; the working directory, variables and activated environments carry over between calls).
- str_replace_editor: view files and directories, create files, replace exact text, insert \
lines, undo an edit. Paths are absolute.
- think: write down your reasoning without running anything.
- finish: end the task; the repository as it is then gets evaluated.
Work step by step: explore the code, reproduce the problem, make a minimal fix, check it, \
then call finish."""

USER_TEMPLATE = """\
<issue>
{problem_statement}
</issue>

The repository is at /testbed. Change the non-test source files so that the issue above is \
resolved. Do not modify or add tests; the existing and hidden tests will be run on your \
change. Call finish when you are done."""

NUDGE = (
    "Please continue, using the tools; call finish when done. "
    "(Your last message contained no tool call.)"
)
SKIPPED = "Not executed: finish was already called in this message."
MALFORMED = (
    "ERROR: your tool call could not be parsed, so nothing was run: {errors}\n"
    "Write the call again in the expected format."
)

class ContextFull(Exception):
    """Raised by a policy when the transcript no longer fits its model's context window; the
    episode then ends with exit reason "context" (not "error")."""


@runtime_checkable
class Policy(Protocol):
    def next_message(self, messages: list[dict], tools: list[dict]) -> dict:
        """The next assistant message (may carry `tool_calls`) given the transcript so far."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sanitize_git(sandbox, base_commit: str | None = None, workdir: str = "/testbed") -> SanitizeResult:
    """Leave in the repository only `base_commit` (HEAD's commit when None) and its history:
    no other ref, reflog or object (see swelego.sandbox.gitsanitize)."""
    return sanitize_repo(sandbox, base_commit, workdir=workdir)


def compute_patch(sandbox, base_commit: str, workdir: str = "/testbed") -> str:
    """The working tree's diff against `base_commit`, new files included (binary-safe)."""
    out = "/tmp/swelego_agent.patch"
    cmd = (
        f"git add -A && git -c core.fileMode=false diff --cached --binary {shlex.quote(base_commit)} "
        f"> {out}; rc=$?; git reset -q; exit $rc"
    )
    r = sandbox.exec(cmd, timeout=300, workdir=workdir)
    if r.exit_code != 0:
        raise RuntimeError(f"could not compute the patch: {r.output.strip()[-300:]}")
    return sandbox.read_file(out).decode("utf-8", errors="replace")


def _as_message(reply) -> tuple[dict, list[str]]:
    """The policy's reply as a transcript message, and the parse errors it reported."""
    if not isinstance(reply, dict):
        raise TypeError(f"policy returned {type(reply).__name__}, expected a message dict")
    msg = normalize_tool_calls(reply)
    errors = [str(e) for e in msg.pop("parse_errors", None) or []]
    msg.pop("logprobs", None)
    msg["role"] = "assistant"
    msg.setdefault("content", None)
    return msg, errors


def _context_tokens(policy, messages: list[dict]) -> int:
    """The prompt size of the last request: as the endpoint reported it, else estimated
    (four characters a token)."""
    reported = getattr(policy, "last_prompt_tokens", 0) or 0
    return reported or sum(len(str(m.get("content") or "")) + len(str(m.get("tool_calls") or "")) for m in messages) // 4


def run_episode(
    task: TaskInstance,
    sandbox,
    policy: Policy,
    *,
    max_turns: int = 100,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    grade: bool = True,
    policy_name: str = "",
    model: str = "",
    sampling: dict | None = None,
    toolbox: ToolBox | None = None,
    max_context_tokens: int | None = None,
) -> Trajectory:
    """Run one episode of `policy` on `task` in a started sandbox of the task's image.

    The episode ends when the policy calls finish, after `max_turns` assistant messages, or
    (exit reason "context") once the prompt exceeds `max_context_tokens`."""
    tools = toolbox or ToolBox(sandbox)
    schemas = list(TOOL_SCHEMAS)
    traj = Trajectory(
        instance_id=task.instance_id,
        tools=schemas,
        policy=policy_name or getattr(policy, "name", "") or type(policy).__name__,
        model=model or getattr(policy, "model", ""),
        sampling=dict(sampling if sampling is not None else getattr(policy, "sampling", {}) or {}),
        started_at=_now(),
    )
    traj.messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": USER_TEMPLATE.format(problem_statement=task.problem_statement.strip())},
    ]
    sanitize_git(sandbox, task.base_commit)
    exit_reason = "max_turns"
    try:
        while traj.turns < max_turns:
            traj.turns += 1
            msg, parse_errors = _as_message(policy.next_message(traj.messages, schemas))
            traj.messages.append(msg)
            at = len(traj.messages) - 1
            calls = msg.get("tool_calls") or []
            if parse_errors and not calls:
                traj.messages.append({"role": "user", "content": MALFORMED.format(errors="; ".join(parse_errors))})
                traj.steps.append(Step(tool="", error=True, error_kind="malformed_call", message_index=at))
                continue
            if not calls:
                traj.messages.append({"role": "user", "content": NUDGE})
                continue
            if _run_calls(tools, traj, calls, at):
                exit_reason = "finish"
                break
            if max_context_tokens and _context_tokens(policy, traj.messages) > max_context_tokens:
                exit_reason = "context"
                break
    except ContextFull:
        traj.turns -= 1  # the turn that did not fit produced no message
        exit_reason = "context"
    except Exception as e:  # a policy or sandbox failure ends the episode, recorded
        exit_reason = "error"
        traj.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
    finally:
        tools.close()  # the episode's shell and what it still runs (background jobs too)
    traj.exit_reason = exit_reason
    traj.usage = dict(getattr(policy, "usage", None) or {})
    _patch_and_grade(traj, task, sandbox, grade)
    traj.finished_at = _now()
    return traj


def _run_calls(tools: ToolBox, traj: Trajectory, calls: list[dict], at: int) -> bool:
    """Execute one assistant message's tool calls in order (calls after a finish are skipped,
    and say so); True when the episode finished."""
    finished = False
    for call in calls:
        fn = call["function"]
        if finished:
            traj.messages.append({"role": "tool", "tool_call_id": call["id"], "content": SKIPPED})
            traj.steps.append(Step(tool=fn["name"], error=True, error_kind="skipped", message_index=at))
            continue
        res = tools.execute(fn["name"], fn["arguments"])
        traj.messages.append({"role": "tool", "tool_call_id": call["id"], "content": res.output})
        traj.steps.append(Step(tool=fn["name"], exit_code=res.exit_code, error=res.error,
                               error_kind=res.error_kind, duration=res.duration,
                               truncated=res.truncated, message_index=at))
        finished = finished or res.finished
    return finished


def _patch_and_grade(traj: Trajectory, task: TaskInstance, sandbox, grade: bool) -> None:
    patched = True
    try:
        traj.patch = compute_patch(sandbox, task.base_commit)
    except Exception as e:
        patched = False
        traj.exit_reason = "error"
        traj.error = (traj.error + "\n" if traj.error else "") + f"patch: {type(e).__name__}: {e}"
    if grade and patched:
        # Only the patch is graded, in a fresh container: what the agent did outside the
        # repository (site-packages, daemons left running, .git/config) must not reach the grade.
        sandbox.reset("fresh")
        g = run_eval(sandbox, task, traj.patch)
        traj.resolved = bool(g.resolved)
        traj.semi_resolved = (not traj.resolved) and bool(traj.patch.strip()) and (
            set(patch_files(traj.patch)) == set(patch_files(task.patch))
        )
