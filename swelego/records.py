"""Records on disk, one reader for every room: JSONL (one record a line), JSON (an array or
one object), parquet, `datasets.save_to_disk` folders, and folders holding any of these (a
rollout folder's `trajectories.jsonl` first). A bad record yields its error in place of the
record, so callers report it in one line and go on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swelego.errors import SwelegoError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def input_files(path: Path) -> list[Path]:
    if not path.exists():
        raise SwelegoError(f"nothing to read at {path} (no such file or directory)")
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
    for file in input_files(Path(path)):
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
