"""Deterministic, realistic-looking trajectories for tests, benchmarks and CPU smoke runs.

Each episode explores a small repository, reproduces a bug (a traceback that is *not* an agent
error), edits a file, sometimes makes a known mistake (an editor miss, a command that does not
exist, a syntax error in its own edit, a timeout), runs the tests and calls finish. The
transcript is in the scaffold's format (OpenAI tool calls, `role: tool` results, one `Step`
per call with `message_index`), and the mistakes are listed so tests can check the labels.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from swelego.agent.tools import TOOL_SCHEMAS
from swelego.trajectories.record import Step, Trajectory

SYSTEM = ("You are a software engineer working in a Linux sandbox on a Python repository checked out at /testbed. "
          "You act only through tools. Explore, reproduce, fix minimally, check, then call finish.")

_WORDS = ("parse", "render", "merge", "split", "config", "token", "cache", "window", "frame", "record", "index",
          "buffer", "stream", "group", "order", "filter", "value", "range", "plain", "strict")


@dataclass
class SyntheticEpisode:
    trajectory: Trajectory
    error_turns: dict[int, str]  # message index of each deliberately failed assistant turn -> expected rule


def compact_tools() -> list[dict]:
    """The scaffold's tool schemas without descriptions: the same calls in a third of the tokens
    (keeps CPU training tests short)."""
    out = []
    for s in TOOL_SCHEMAS:
        fn = s["function"]
        params = {k: {kk: vv for kk, vv in v.items() if kk != "description"}
                  for k, v in fn["parameters"]["properties"].items()}
        out.append({"type": "function", "function": {"name": fn["name"], "parameters": {
            "type": "object", "properties": params, "required": fn["parameters"]["required"]}}})
    return out


class _Builder:
    def __init__(self, instance_id: str, rng: random.Random, tools: list[dict] | None = None):
        self.rng = rng
        self.traj = Trajectory(instance_id=instance_id, tools=list(tools if tools is not None else TOOL_SCHEMAS),
                               policy="synthetic", exit_reason="finish")
        self.errors: dict[int, str] = {}
        self.n = 0

    def call(self, name: str, args: dict, output: str, *, content: str | None = None, exit_code: int | None = None,
             error_kind: str | None = None, expect: str | None = None) -> int:
        cid = f"call_{self.n}"
        self.n += 1
        idx = len(self.traj.messages)
        self.traj.messages.append({"role": "assistant", "content": content, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
        self.traj.messages.append({"role": "tool", "tool_call_id": cid, "content": output})
        self.traj.steps.append(Step(tool=name, exit_code=exit_code, error=error_kind is not None,
                                    error_kind=error_kind, duration=0.1, message_index=idx))
        if expect:
            self.errors[idx] = expect
        return idx


def synthetic_episode(seed: int, turns: int = 8, mistakes: int = 1, tools: list[dict] | None = None) -> SyntheticEpisode:
    """One episode with about `turns` assistant turns, `mistakes` of them failing on purpose."""
    rng = random.Random(seed)
    w1, w2 = rng.sample(_WORDS, 2)
    pkg, mod, fn = f"pkg{seed % 7}", f"{w1}_{w2}", f"{w2}_{w1}"
    path = f"/testbed/{pkg}/{mod}.py"
    b = _Builder(f"synthetic__{pkg}-{seed}", rng, tools)
    b.traj.messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"<issue>\n`{fn}` returns the wrong value for an empty input: it should "
                                    f"return [] but raises ValueError.\n</issue>\nFix the non-test code in /testbed."},
    ]
    body = "\n".join(f"{i:6}\t    x_{i} = {w1}(x_{i - 1})  # {rng.choice(_WORDS)}" for i in range(1, 12))
    b.call("str_replace_editor", {"command": "view", "path": f"/testbed/{pkg}"},
           f"Files and directories up to 2 levels deep in /testbed/{pkg}:\n/testbed/{pkg}/\n{path}\n"
           f"/testbed/{pkg}/__init__.py", content=f"Let me look at the {pkg} package first.")
    b.call("str_replace_editor", {"command": "view", "path": path},
           f"Contents of {path} (cat -n):\n     1\tdef {fn}(items):\n     2\t    if not items:\n"
           f"     3\t        raise ValueError('empty')\n{body}")
    b.call("str_replace_editor", {"command": "create", "path": "/testbed/reproduce.py",
                                  "file_text": f"from {pkg}.{mod} import {fn}\nprint({fn}([]))\n"},
           "Created /testbed/reproduce.py (2 line(s)).")
    b.call("execute_bash", {"command": "python reproduce.py"},
           f'Traceback (most recent call last):\n  File "/testbed/reproduce.py", line 2, in <module>\n'
           f'    print({fn}([]))\n  File "{path}", line 3, in {fn}\n    raise ValueError(\'empty\')\n'
           f"ValueError: empty\n[exit code: 1]", exit_code=1,
           content="The bug reproduces (this traceback is the reported bug, not a mistake).")
    kinds = ["editor_miss", "command_not_found", "syntax_edit", "timeout", "bad_args", "view_range"]
    planned = [kinds[(seed + k) % len(kinds)] for k in range(mistakes)]
    filler = max(0, turns - 7 - sum(2 if k == "syntax_edit" else 1 for k in planned))
    for k in range(filler):
        b.call("execute_bash", {"command": f"grep -rn '{rng.choice(_WORDS)}' /testbed/{pkg} | head -{5 + k}"},
               "\n".join(f"{path}:{i}:    x_{i} = {w1}(x_{i - 1})" for i in range(1, 4 + k % 3)) + "\n[exit code: 0]",
               exit_code=0, content=f"Searching for related uses ({k + 1}).")
    for kind in planned:
        if kind == "editor_miss":
            b.call("str_replace_editor", {"command": "str_replace", "path": path, "old_str": "raise ValueError(\"empty\")",
                                          "new_str": "return []"},
                   f"ERROR: `old_str` was not found verbatim in {path}; check whitespace and indentation",
                   error_kind="not_found", expect="editor_error")
        elif kind == "command_not_found":
            b.call("execute_bash", {"command": "pytset -q tests"}, "bash: line 1: pytset: command not found\n"
                   "[exit code: 127]", exit_code=127, expect="shell_error")
        elif kind == "syntax_edit":
            bad = b.call("str_replace_editor", {"command": "insert", "path": path, "insert_line": 1,
                                                "new_str": "    if items is None return []"},
                         f"The file {path} has been edited. Lines 1-5 now read (cat -n):\n     1\tdef {fn}(items):\n"
                         "     2\t    if items is None return []", expect="own_edit_traceback")
            b.call("execute_bash", {"command": "python reproduce.py"},
                   f'Traceback (most recent call last):\n  File "/testbed/reproduce.py", line 1, in <module>\n'
                   f'    from {pkg}.{mod} import {fn}\n  File "{path}", line 2\n    if items is None return []\n'
                   "                     ^^^^^^\nSyntaxError: invalid syntax\n[exit code: 1]", exit_code=1)
            b.call("str_replace_editor", {"command": "undo_edit", "path": path},
                   f"Reverted the last edit of {path}.")
            del bad
        elif kind == "timeout":
            b.call("execute_bash", {"command": "python -m pytest -q tests --count 1000"},
                   "[command timed out: killed after 120 seconds; run long commands in the background or with a "
                   "larger timeout]", error_kind="timeout", expect="timeout")
        elif kind == "bad_args":
            b.call("str_replace_editor", {"command": "view", "file": path},
                   "ERROR: unexpected argument(s) for str_replace_editor: file; allowed: command, path",
                   error_kind="bad_arguments", expect="invalid_arguments")
        elif kind == "view_range":
            b.call("str_replace_editor", {"command": "view", "path": path, "view_range": [400, 420]},
                   "ERROR: invalid view_range [400, 420]: the file has 14 line(s)", error_kind="bad_range",
                   expect="editor_error")
    b.call("str_replace_editor", {"command": "str_replace", "path": path, "old_str": "        raise ValueError('empty')",
                                  "new_str": "        return []"},
           f"The file {path} has been edited. Lines 1-7 now read (cat -n):\n     1\tdef {fn}(items):\n"
           "     2\t    if not items:\n     3\t        return []", content="Return an empty list instead.")
    b.call("execute_bash", {"command": "python reproduce.py && python -m pytest -q tests"},
           "[]\n" + "." * rng.randint(5, 30) + f"\n{rng.randint(5, 30)} passed in 0.{rng.randint(10, 99)}s\n[exit code: 0]",
           exit_code=0)
    b.call("finish", {"message": f"`{fn}` now returns [] for empty input."}, f"`{fn}` now returns [] for empty input.")
    b.traj.turns = sum(1 for m in b.traj.messages if m["role"] == "assistant")
    b.traj.resolved = True
    return SyntheticEpisode(trajectory=b.traj, error_turns=b.errors)


def synthetic_dataset(n: int, seed: int = 0, turns: tuple[int, int] = (7, 14),
                      mistakes: tuple[int, int] = (0, 2), tools: list[dict] | None = None) -> list[SyntheticEpisode]:
    """`n` episodes with turn counts and mistake counts drawn uniformly from the given ranges."""
    rng = random.Random(seed)
    return [synthetic_episode(seed * 100_003 + i, turns=rng.randint(*turns), mistakes=rng.randint(*mistakes),
                              tools=tools) for i in range(n)]


def write_jsonl(episodes: list[SyntheticEpisode], path) -> None:
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ep in episodes:
            fh.write(ep.trajectory.to_json() + "\n")
