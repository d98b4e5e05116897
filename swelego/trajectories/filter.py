"""Trajectory filtering: keep the episodes worth training on, and say why each other one went.

Rules, applied in this order (the first that matches names the drop reason):
1. ``error``: the episode itself failed (policy or sandbox error, no patch computed).
2. ``git_mining``: the agent ran a command that looks for the fix in git history rather than
   in the code: `git log` over other refs (``--all``, ``--branches``, ``--tags``,
   ``--remotes``, ``--reflog``, ``-g``), pickaxe searches (``-S``, ``-G``), ``git reflog``,
   ``git fsck``, ``git rev-list --all``, ``git cat-file``, ``git show`` / ``checkout`` /
   ``diff`` of an explicit commit id, stash listings, and anything touching remotes
   (fetch, pull, ls-remote). Even where the sandbox has nothing to find, such episodes teach
   a behaviour that leaks on benchmarks with unsanitized images.
3. ``test_tampering``: the final patch touches test files or test infrastructure
   (`swelego.harness.is_test_infra`: test modules and directories, conftest.py, pytest / tox
   configuration, runner shadows, in-tree package metadata) or a path in ``.git`` or outside
   the tree. The grader restores all of these before the tests run, so such an episode may
   still be resolved by its real change; but editing the tests instead of the code is not a
   behaviour to train on.
4. ``over_turns``: more assistant turns than ``max_turns``.
5. ``over_length``: more than ``max_tokens`` tokens (counted as characters / 4 unless the
   caller passes a tokenizer's ``count`` function).
6. ``not_kept``: its outcome is not in ``keep`` (resolved, semi_resolved, unresolved).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from swelego.config import doc_field
from swelego.harness import is_test_infra, patch_files, unsafe_patch_paths
from swelego.records import write_json_atomic, write_jsonl_atomic

OUTCOMES = ("resolved", "semi_resolved", "unresolved")
REASONS = ("error", "git_mining", "test_tampering", "over_turns", "over_length", "not_kept")

_HEX = r"[0-9a-f]{7,40}"
# `git` and its global options (some take a value: -C DIR, -c KEY=VALUE, --git-dir DIR).
_GIT = r"\bgit\s+(?:(?:-[Cc]|--git-dir|--work-tree|--namespace)\s+\S+\s+|-\S+\s+)*"
GIT_MINING_PATTERNS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(rx)) for name, rx in (
        ("git log over other refs", _GIT + r"log\b[^|;&]*\s--(?:all|branches|tags|remotes|reflog|walk-reflogs)\b"),
        ("git log -g", _GIT + r"log\b[^|;&]*\s-g\b"),
        ("pickaxe search", _GIT + r"log\b[^|;&]*\s-[SG]\s*\S"),
        ("git reflog", _GIT + r"reflog\b"),
        ("git fsck", _GIT + r"fsck\b"),
        ("git rev-list --all", _GIT + r"rev-list\b[^|;&]*--all\b"),
        ("git cat-file", _GIT + r"cat-file\b"),
        ("git stash list/show", _GIT + r"stash\s+(?:list|show)\b"),
        ("git show/checkout/diff of a commit id",
         _GIT + rf"(?:show|checkout|switch|diff|cherry-pick|restore\s+--source)\b[^|;&]*\b{_HEX}\b"),
        ("git remote access", _GIT + r"(?:fetch|pull|ls-remote|clone)\b"),
        ("git for-each-ref", _GIT + r"for-each-ref\b"),
    )
)


def git_mining_reason(command: str) -> str | None:
    """The rule a shell command breaks, or None when it does not look for history."""
    for name, rx in GIT_MINING_PATTERNS:
        if rx.search(command):
            return name
    return None


def bash_commands(record: dict) -> Iterable[str]:
    """The commands a trajectory ran through execute_bash."""
    for m in record.get("messages", []):
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            if fn.get("name") != "execute_bash":
                continue
            args = fn.get("arguments")
            try:
                args = json.loads(args) if isinstance(args, str) else args
            except json.JSONDecodeError:
                continue
            if isinstance(args, dict) and isinstance(args.get("command"), str):
                yield args["command"]


def outcome(record: dict) -> str:
    if record.get("resolved"):
        return "resolved"
    if record.get("semi_resolved"):
        return "semi_resolved"
    return "unresolved"


def tampered_paths(patch: str) -> list[str]:
    """The paths of `patch` that are test infrastructure, inside .git or outside the tree."""
    unsafe = set(unsafe_patch_paths(patch))
    return [p for p in patch_files(patch) if p in unsafe or is_test_infra(p)]


def assistant_turns(record: dict) -> int:
    return sum(1 for m in record.get("messages", []) if m.get("role") == "assistant")


def char_tokens(record: dict) -> int:
    return sum(len(str(m.get("content") or "")) + len(json.dumps(m.get("tool_calls") or "")) for m in
               record.get("messages", [])) // 4


@dataclass
class FilterConfig:
    """Which trajectories are kept for training (the rules above); the build's ``filter:``
    section and `swelego data filter` both read it."""

    keep: list[str] = doc_field("Outcomes kept: resolved, semi_resolved (right files, tests failing), unresolved.",
                                default_factory=lambda: ["resolved", "semi_resolved"])
    max_turns: int | None = doc_field("Drop episodes with more assistant turns (null: no limit).", default=None)
    max_tokens: int | None = doc_field("Drop episodes longer than this many tokens (characters / 4).",
                                       default=None)
    drop_git_mining: bool = doc_field("Drop episodes that searched git history for the fix (rule 2).",
                                      default=True)
    drop_test_tampering: bool = doc_field("Drop episodes whose patch touches tests or test infrastructure "
                                          "(rule 3).", default=True)


@dataclass
class FilterResult:
    kept: list[dict] = field(default_factory=list)
    dropped: list[tuple[dict, str, str]] = field(default_factory=list)  # record, reason, detail

    def counts(self) -> dict[str, int]:
        c = Counter(reason for _, reason, _ in self.dropped)
        return {r: c.get(r, 0) for r in REASONS}

    def kept_by_outcome(self) -> dict[str, int]:
        c = Counter(outcome(r) for r in self.kept)
        return {o: c.get(o, 0) for o in OUTCOMES}


def drop_reason(record: dict, cfg: FilterConfig,
                count_tokens: Callable[[dict], int] = char_tokens) -> tuple[str, str] | None:
    if record.get("exit_reason") == "error" or record.get("resolved") is None and not record.get("patch"):
        return "error", (record.get("error") or "episode failed").splitlines()[0][:200]
    if cfg.drop_git_mining:
        for cmd in bash_commands(record):
            rule = git_mining_reason(cmd)
            if rule:
                return "git_mining", f"{rule}: {cmd[:160]}"
    if cfg.drop_test_tampering and (touched := tampered_paths(record.get("patch") or "")):
        return "test_tampering", ", ".join(touched[:5])[:200]
    turns = assistant_turns(record)
    if cfg.max_turns is not None and turns > cfg.max_turns:
        return "over_turns", f"{turns} turns > {cfg.max_turns}"
    if cfg.max_tokens is not None:
        n = count_tokens(record)
        if n > cfg.max_tokens:
            return "over_length", f"{n} tokens > {cfg.max_tokens}"
    if outcome(record) not in cfg.keep:
        return "not_kept", outcome(record)
    return None


def filter_trajectories(records: Iterable[dict], cfg: FilterConfig,
                        count_tokens: Callable[[dict], int] = char_tokens) -> FilterResult:
    res = FilterResult()
    for rec in records:
        why = drop_reason(rec, cfg, count_tokens)
        if why is None:
            res.kept.append(rec)
        else:
            res.dropped.append((rec, *why))
    return res


def write_filtered(res: FilterResult, out: str | Path, cfg: FilterConfig) -> dict:
    """kept.jsonl, one file per kept outcome, dropped.jsonl (with drop_reason/drop_detail), report.json."""
    out = Path(out)
    write_jsonl_atomic(out / "kept.jsonl", res.kept)
    for o in cfg.keep:
        write_jsonl_atomic(out / f"{o}.jsonl", (r for r in res.kept if outcome(r) == o))
    write_jsonl_atomic(out / "dropped.jsonl", ({**r, "drop_reason": reason, "drop_detail": detail}
                                               for r, reason, detail in res.dropped))
    report = {
        "input": len(res.kept) + len(res.dropped),
        "kept": len(res.kept),
        "kept_by_outcome": res.kept_by_outcome(),
        "dropped": res.counts(),
        "config": {"keep": list(cfg.keep), "max_turns": cfg.max_turns, "max_tokens": cfg.max_tokens,
                   "drop_git_mining": cfg.drop_git_mining, "drop_test_tampering": cfg.drop_test_tampering},
    }
    write_json_atomic(out / "report.json", report, ensure_ascii=True, newline=False)
    return report
