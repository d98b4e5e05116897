"""Difficulty curriculum: a difficulty value per trajectory, buckets, and the stage plan.

SWE-Lego measures difficulty by the number of interaction turns and trains easy (0-50) ->
medium (50-70) -> hard (70-100). The alternative measure here is the teacher's failure rate
over its k samples of the same task (1 - resolved/k), from the data itself or from a file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sft.config import Bucket, CurriculumConfig, CurriculumStage
from swelego.difficulty import bucket_of  # noqa: F401 - part of the curriculum API
from swelego.errors import SwelegoError
from swelego.records import read_jsonl
from swelego.trajectories.record import Trajectory

MEASURES = ("turns", "pass_rate")


def assistant_turns(traj: Trajectory) -> int:
    return sum(1 for m in traj.messages if m.get("role") == "assistant")


def failure_rates(trajectories: Iterable[Trajectory], pass_rates_file: str | None = None) -> dict[str, float]:
    """instance_id -> 1 - pass rate. From `pass_rates_file` ({id: rate} JSON, or JSONL of
    {instance_id, pass_rate}) when given, else from the graded trajectories of each instance."""
    if pass_rates_file:
        p = Path(pass_rates_file)
        if not p.is_file():
            raise SwelegoError(f"pass-rate file {p} not found")
        text = p.read_text(encoding="utf-8")
        rates: dict[str, float] = {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            try:
                data = read_jsonl(p, strict=True)
            except ValueError as e:
                raise SwelegoError(f"neither JSON nor JSONL: {e}") from None
        if isinstance(data, dict) and "instance_id" in data and "pass_rate" in data:
            data = [data]
        try:
            items = data.items() if isinstance(data, dict) else [(r["instance_id"], r["pass_rate"]) for r in data]
            for iid, rate in items:
                rates[str(iid)] = 1.0 - float(rate)
        except (KeyError, TypeError, ValueError) as e:
            raise SwelegoError(f"{p}: expected {{instance_id: pass_rate}} or records with instance_id and "
                               f"pass_rate ({e})") from None
        return rates
    graded: dict[str, list[bool]] = defaultdict(list)
    for t in trajectories:
        if t.resolved is not None:
            graded[t.instance_id].append(bool(t.resolved))
    return {iid: 1.0 - sum(v) / len(v) for iid, v in graded.items() if v}


@dataclass
class StagePlan:
    """One stage as it will be trained: its buckets (cumulative ones included), epochs and rows."""

    index: int
    buckets: list[str]
    epochs: float
    rows: list[int] = field(default_factory=list)  # indices into the prepared dataset

    def to_dict(self) -> dict:
        return {"stage": self.index + 1, "buckets": self.buckets, "epochs": self.epochs, "trajectories": len(self.rows)}


def validate(cur: CurriculumConfig) -> None:
    if cur.measure not in MEASURES:
        raise SwelegoError(f"curriculum.measure must be one of {', '.join(MEASURES)}, got {cur.measure!r}")
    if cur.lr_schedule not in ("global", "per_stage"):
        raise SwelegoError(f"curriculum.lr_schedule must be global or per_stage, got {cur.lr_schedule!r}")
    names = [b.name for b in cur.resolved_buckets()]
    if len(set(names)) != len(names) or not all(names):
        raise SwelegoError(f"curriculum buckets need distinct, non-empty names (got {names})")
    for k, st in enumerate(cur.stages, start=1):
        unknown = [b for b in st.buckets if b not in names]
        if unknown:
            raise SwelegoError(f"curriculum stage {k} names unknown bucket(s) {', '.join(unknown)} "
                               f"(defined: {', '.join(names)})")
        if st.epochs <= 0:
            raise SwelegoError(f"curriculum stage {k} needs epochs > 0")
    if cur.enabled and not cur.stages:
        raise SwelegoError("the curriculum is enabled but lists no stages")


def plan_stages(buckets: list[str | None], cur: CurriculumConfig) -> list[StagePlan]:
    """Rows of each stage in training order; cumulative stages add every earlier stage's buckets."""
    validate(cur)
    plans = []
    seen: list[str] = []
    for k, st in enumerate(cur.stages):
        names = list(st.buckets)
        if cur.cumulative:
            for b in names:
                if b not in seen:
                    seen.append(b)
            names = list(seen)
        chosen = set(names)
        plans.append(StagePlan(index=k, buckets=names, epochs=st.epochs,
                               rows=[i for i, b in enumerate(buckets) if b in chosen]))
    return plans


def single_stage(n_rows: int, epochs: float) -> list[StagePlan]:
    """The plan with the curriculum off: every row, shuffled, for `epochs`."""
    return [StagePlan(index=0, buckets=["all"], epochs=epochs, rows=list(range(n_rows)))]


__all__ = ["Bucket", "CurriculumStage", "StagePlan", "assistant_turns", "bucket_of", "failure_rates",
           "plan_stages", "single_stage", "validate"]
