"""Reading trajectories from disk: our rollout output, saved datasets, and imported formats.

Accepted inputs: JSONL (one record a line), JSON (an array or one object), parquet,
`datasets.save_to_disk` folders, and folders holding any of these (a rollout folder's
`trajectories.jsonl` first). A record is either our `Trajectory.to_dict()` (native tool calls,
steps) or a SWE-Lego / OpenHands text-call record, converted by `swelego.agent.formats`.
A bad record yields its error in place, so callers report it in one line and go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swelego.agent.trajectory import Trajectory
from swelego.errors import SwelegoError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise SwelegoError(f"no trajectories at {path}")
    if path.is_file():
        return [path]
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        return [path]  # a save_to_disk folder
    main = path / "trajectories.jsonl"
    if main.exists():
        return [main]
    found = sorted(p for p in path.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file())
    return [p for p in found if p.name not in ("summary.json", "funnel.json", "report.json", "errors.jsonl")]


def iter_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, record or exception) for each record under `path`."""
    for file in _files(Path(path)):
        if file.is_dir():
            from datasets import load_from_disk

            ds = load_from_disk(str(file))
            for i, rec in enumerate(ds):
                yield f"{file.name}[{i}]", rec
            continue
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            row = 0
            for batch in pq.ParquetFile(file).iter_batches(batch_size=64):
                for rec in batch.to_pylist():
                    row += 1
                    yield f"{file.name}:{row}", rec
            continue
        with open(file, encoding="utf-8") as fh:
            head = fh.read(4096).lstrip()[:1]
            fh.seek(0)
            if head == "[" or (file.suffix == ".json" and head == "{"):
                try:
                    data = json.load(fh)
                except json.JSONDecodeError as e:
                    yield file.name, ValueError(f"not valid JSON ({e.msg} at line {e.lineno})")
                    continue
                for i, rec in enumerate(data if isinstance(data, list) else [data], start=1):
                    yield f"{file.name}[{i}]", rec
                continue
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"{file.name}:{lineno}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{file.name}:{lineno}", ValueError(f"not valid JSON ({e.msg})")


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
            from swelego.agent.formats import from_swe_lego
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
