"""Records on disk, one module for every room.

Reading: `iter_records` reads JSONL (one record a line), JSON (an array or one object),
parquet, `datasets.save_to_disk` folders, and folders holding any of these (a rollout folder's
`trajectories.jsonl` first); a bad record yields its error in place of the record, so callers
report it in one line and go on. `read_jsonl` / `iter_jsonl` read one JSONL file with the same
rule (`file:N: not valid JSON (...)`), and always drop a torn last line (no newline, not
parseable: what a writer killed mid-line leaves). `recover_jsonl` loads an append-only log up to
its first bad line and cuts the file there, so the next append starts on a line.

Writing: `append_jsonl` appends lines (with `fsync` for stores whose records must survive a
crash); `atomic_writer`, `write_text_atomic`, `write_jsonl_atomic` and `write_json_atomic`
write a temporary file next to the target and rename it into place only when all of it is
written, so a killed writer leaves the old file (or none) and never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

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
            whole = head == "[" or (file.suffix == ".json" and head == "{")
            if whole:
                try:
                    data = json.load(fh)
                except json.JSONDecodeError as e:
                    yield file.name, ValueError(f"not valid JSON ({e.msg} at line {e.lineno})")
                    continue
        if whole:
            for i, rec in enumerate(data if isinstance(data, list) else [data], start=1):
                yield f"{file.name}[{i}]", rec
            continue
        for lineno, rec in iter_jsonl(file):
            yield f"{file.name}:{lineno}", rec


# -- JSONL ---------------------------------------------------------------------------------------


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, record or the ValueError saying why the line is not one) for each
    non-blank line of the JSONL file at `path`. A torn last line (no newline and not valid
    JSON) is dropped: it is an interrupted append, not a bad record."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):
                    return  # the torn tail of a killed writer
                yield n, ValueError(f"not valid JSON ({e.msg})")


def read_jsonl(path: str | Path, *, missing_ok: bool = False, problems: list[str] | None = None,
               strict: bool = False) -> list[Any]:
    """The records of the JSONL file at `path`, in order (see `iter_jsonl` for the torn tail).

    A line that is not JSON is skipped; with `problems` it is also described there in one line
    (`file:N: not valid JSON (...)`), with `strict` it raises ValueError with that line.
    `missing_ok`: a missing file reads as no records."""
    p = Path(path)
    if missing_ok and not p.exists():
        return []
    out = []
    for n, rec in iter_jsonl(p):
        if isinstance(rec, ValueError):
            line = f"{p}:{n}: {rec}"
            if strict:
                raise ValueError(line)
            if problems is not None:
                problems.append(line)
            continue
        out.append(rec)
    return out


def recover_jsonl(path: str | Path, accept: Callable[[Any], Any] | None = None) -> list[Any]:
    """The records of an append-only JSONL log up to its first incomplete or bad line, and the
    file cut there (a killed writer's torn tail goes, so appends start on a fresh line).
    `accept(record)` raising ValueError or KeyError also ends the good part."""
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    good = 0
    out = []
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rec = json.loads(line)
            if accept is not None:
                accept(rec)
        except (ValueError, KeyError):
            break
        out.append(rec)
        good += len(line)
    if good < len(data):
        with p.open("r+b") as f:
            f.truncate(good)
    return out


def jsonl_line(record: Any, *, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(record, ensure_ascii=ensure_ascii, sort_keys=sort_keys) + "\n"


def append_jsonl(path: str | Path, records: Iterable[Any], *, fsync: bool = False,
                 ensure_ascii: bool = False) -> int:
    """Append `records` to the JSONL file at `path` (created with its folder when missing);
    with `fsync` they are on disk when this returns. Returns how many were written."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(jsonl_line(rec, ensure_ascii=ensure_ascii))
            n += 1
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    return n


# -- atomic writes -------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", *, fsync: bool = True) -> Iterator[IO]:
    """A file handle on a temporary file next to `path` (``.NAME.XXXX.tmp``), renamed onto
    `path` when the block ends normally and removed when it raises; the target's folder is
    created. The file gets the permissions a plain `open` would give (not mkstemp's 0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def record_writer(path: str | Path | None) -> Iterator[Callable[[Any], None]]:
    """`add(record)` for records streamed into `path` atomically (see `atomic_writer`): one JSON
    array when the path ends in ``.json``, JSONL otherwise, JSONL on stdout when `path` is None."""
    target = None if path is None else Path(path)
    as_array = target is not None and target.suffix == ".json"
    with contextlib.ExitStack() as stack:
        fh = sys.stdout if target is None else stack.enter_context(atomic_writer(target))
        n = 0

        def add(record: Any) -> None:
            nonlocal n
            text = json.dumps(record, ensure_ascii=False)
            fh.write((("[\n" if n == 0 else ",\n") + text) if as_array else text + "\n")
            n += 1

        yield add
        if as_array:
            fh.write("\n]\n" if n else "[]\n")
        fh.flush()


def write_text_atomic(path: str | Path, text: str | bytes) -> Path:
    """`path` holds exactly `text` afterwards, or (after a crash) what it held before."""
    with atomic_writer(path, "wb" if isinstance(text, bytes) else "w") as fh:
        fh.write(text)
    return Path(path)


def write_jsonl_atomic(path: str | Path, records: Iterable[Any], *, ensure_ascii: bool = False) -> int:
    """Replace the JSONL file at `path` with `records`, one a line, atomically. Returns the count."""
    n = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write(jsonl_line(rec, ensure_ascii=ensure_ascii))
            n += 1
    return n


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2, ensure_ascii: bool = False,
                      newline: bool = True) -> Path:
    """Replace the JSON file at `path` with `data` atomically (a trailing newline unless `newline`
    is False)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=ensure_ascii)
                             + ("\n" if newline else ""))
