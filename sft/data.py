"""Reading trajectories from disk: our rollout output, saved datasets, and imported formats.

Accepted inputs: JSONL (one record a line), JSON (an array or one object), parquet,
`datasets.save_to_disk` folders, and folders holding any of these (a rollout folder's
`trajectories.jsonl` first). A record is either our `Trajectory.to_dict()` (native tool calls,
steps) or a SWE-Lego / OpenHands text-call record, converted by `swelego.trajectories.formats`.
A bad record yields its error in place, so callers report it in one line and go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swelego.records import iter_records  # noqa: F401 - part of this module's API
from swelego.trajectories.record import Trajectory


def _is_native(rec: dict) -> bool:
    if "steps" in rec or rec.get("tools"):
        return True
    msgs = rec.get("messages")
    return isinstance(msgs, list) and any(
        isinstance(m, dict) and (m.get("tool_calls") or m.get("role") == "tool") for m in msgs)


def record_to_trajectory(rec: Any) -> Trajectory:
    """A Trajectory from one record; raises ValueError for records that are not trajectories."""
    if not isinstance(rec, dict):
        raise ValueError(f"a record must be a JSON object, got {type(rec).__name__}")
    if isinstance(rec.get("value"), dict) and "key" in rec:  # a ResultStore line
        rec = rec["value"]
    for key in ("messages", "tools", "steps", "sampling"):
        if isinstance(rec.get(key), str):  # columns stored as JSON strings (arrow-friendly)
            try:
                rec = {**rec, key: json.loads(rec[key])}
            except json.JSONDecodeError:
                pass
    if not isinstance(rec.get("messages"), list) and not isinstance(rec.get("conversations"), list):
        raise ValueError("no `messages` list in the record")
    if not _is_native(rec):
        try:
            from swelego.trajectories.formats import from_swe_lego
        except ImportError:
            from_swe_lego = None
        if from_swe_lego is not None:
            return from_swe_lego(rec)
    if not isinstance(rec.get("instance_id"), str):
        raise ValueError("the record has no `instance_id`")
    try:
        return Trajectory.from_dict(rec)
    except (TypeError, AttributeError) as e:
        raise ValueError(f"not a trajectory record: {e}") from None


def iter_trajectories(paths: list[str] | str) -> Iterator[tuple[str, Trajectory | Exception]]:
    """(where, Trajectory or the error that prevented reading it) over all `paths`."""
    for path in [paths] if isinstance(paths, str) else paths:
        for where, rec in iter_records(path):
            if isinstance(rec, Exception):
                yield f"{path}:{where}" if Path(path).is_dir() else where, rec
                continue
            try:
                yield where, record_to_trajectory(rec)
            except (ValueError, KeyError, TypeError) as e:
                yield where, ValueError(str(e))
