"""Difficulty buckets: a trajectory's measure (assistant turns by default, as SWE-Lego; or the
teacher's failure rate over k samples) falls in one named bucket [min, max). The SFT curriculum
trains bucket by bucket and the dataset card draws the same thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from swelego.config import doc_field as _help


@dataclass
class Bucket:
    """A difficulty bucket: trajectories whose measure is in [min, max)."""

    name: str = _help("Bucket name used by the stages.", default="")
    min: float = _help("Inclusive lower bound of the measure.", default=0.0)
    max: float | None = _help("Exclusive upper bound; null = no bound.", default=None)


TURN_BUCKETS = [Bucket("easy", 0, 50), Bucket("medium", 50, 70), Bucket("hard", 70, None)]
# measure `pass_rate` is the teacher's failure rate 1 - (resolved / k), so larger = harder, like turns
PASS_RATE_BUCKETS = [Bucket("easy", 0, 1 / 3), Bucket("medium", 1 / 3, 2 / 3), Bucket("hard", 2 / 3, None)]


def bucket_of(value: float | None, buckets: list[Bucket]) -> str | None:
    """The name of the bucket holding `value` (None when no bucket does)."""
    if value is None:
        return None
    for b in buckets:
        if value >= b.min and (b.max is None or value < b.max):
            return b.name
    return None
