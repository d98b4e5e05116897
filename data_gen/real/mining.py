"""What `mine-prs` and `mine-git` share: the resumable record of every change examined
(`OUT/mined.jsonl`, one record per PR or commit, whatever became of it), the candidates file
validation reads (`OUT/candidates.jsonl`), and the funnel summary (`OUT/summary.json`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_gen.real.filters import Candidate, reason_label
from swelego.records import write_jsonl_atomic
from swelego.store import ResultStore

# Statuses of a mined record, in funnel order.
STATUSES = ("candidate", "filtered", "contaminated", "no_issue", "not_a_fix", "error")


def mined_store(out: Path) -> ResultStore:
    return ResultStore(Path(out) / "mined.jsonl")


def candidate_record(c: Candidate) -> dict:
    return {"status": "candidate", "repo": c.repo, "candidate": c.to_json()}


def write_outputs(out: Path, repo_errors: dict[str, str], repo_notes: dict[str, str] | None = None,
                  extra: dict | None = None) -> dict:
    """Rewrite candidates.jsonl and summary.json from everything mined so far in `out`."""
    out = Path(out)
    per_repo: dict[str, Counter] = {}
    reasons: Counter = Counter()
    candidates = []
    with mined_store(out) as store:
        for _key, rec in store:
            per_repo.setdefault(rec.get("repo", "?"), Counter())[rec["status"]] += 1
            for r in rec.get("reasons", []):
                reasons[reason_label(r)] += 1
            if rec["status"] == "candidate":
                candidates.append(rec["candidate"])
    candidates.sort(key=lambda c: c["instance_id"])
    write_jsonl_atomic(out / "candidates.jsonl", candidates)
    summary = {
        "repos": {repo: {s: counts.get(s, 0) for s in STATUSES} for repo, counts in sorted(per_repo.items())},
        "reasons": dict(reasons.most_common()),
        "candidates": len(candidates),
        "errors": repo_errors,
        "skipped": repo_notes or {},
        **(extra or {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
