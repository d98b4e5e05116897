"""Append-only result store: one JSON record per key, safe under kill -9.

Each `put` appends one line and fsyncs it; a torn last line from a killed writer is ignored
on load. Later records for a key replace earlier ones in memory, so a rerun that finishes a
key again is harmless, and `has` lets a rerun skip what is done."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from swelego.records import recover_jsonl


class ResultStore:
    def __init__(self, path: str | Path, key_of: Callable[[dict[str, Any]], str] | None = None):
        self.path = Path(path)
        self.key_of = key_of
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._load()
        self._fh = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        def add(rec: Any) -> None:
            if self.key_of is not None:
                self._records[self.key_of(rec)] = rec
            else:
                self._records[rec["key"]] = rec["value"]

        recover_jsonl(self.path, accept=add)  # a torn tail is cut, so appends start on a line

    def has(self, key: str) -> bool:
        return key in self._records

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.key_of is not None:
            if self.key_of(value) != key:
                raise ValueError(f"record key {self.key_of(value)!r} does not match {key!r}")
            line = json.dumps(value, ensure_ascii=False) + "\n"
        else:
            line = json.dumps({"key": key, "value": value}, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._records[key] = value

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter(list(self._records.items()))

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
