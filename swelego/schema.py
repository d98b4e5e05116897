"""TaskInstance: a valid swebench 5 row plus swelego's own fields.

The official harness reads the swebench fields unmodified; our fields ride along. Rows
round-trip losslessly through JSONL and HF `datasets` (save_to_disk / load_from_disk):
nested free-form data lives in `metadata` as a JSON string, so Arrow never merges the
schemas of different rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SWEBENCH_FIELDS = (
    "instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement", "FAIL_TO_PASS",
    "PASS_TO_PASS", "image", "eval_script", "log_parser", "eval_type", "version", "created_at",
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TaskInstance(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- swebench 5 fields -------------------------------------------------------------
    instance_id: str
    repo: str
    base_commit: str
    patch: str  # the gold (fix) patch
    test_patch: str = ""
    problem_statement: str = ""
    FAIL_TO_PASS: list[str] = Field(default_factory=list)
    PASS_TO_PASS: list[str] = Field(default_factory=list)
    image: str
    eval_script: str
    log_parser: str = "parse_log_pytest"
    eval_type: str = "pass_and_fail"
    version: str = ""
    created_at: str = Field(default_factory=_now)
    hints_text: str = ""
    # -- swelego fields ----------------------------------------------------------------
    source: str = ""  # "real" | "synthetic" | "imported" ...
    strategy: str = ""  # e.g. "procedural/op_swap", "llm_rewrite", "pr"
    difficulty: str = ""  # curriculum bucket, when known
    test_cmd: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _tests_from_json(cls, v):
        # swebench's HF datasets store these as JSON strings; accept both shapes.
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_from_json(cls, v):
        return json.loads(v) if isinstance(v, str) else (v or {})

    @field_validator("instance_id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "/" in v:
            raise ValueError(f"instance_id must be non-empty, without spaces or '/': {v!r}")
        return v

    def to_row(self) -> dict[str, Any]:
        """A flat dict for JSONL, `datasets` and swebench (lists stay lists; metadata is JSON)."""
        row = self.model_dump()
        row["metadata"] = json.dumps(self.metadata, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskInstance:
        return cls(**row)


def save_jsonl(tasks: Iterable[TaskInstance], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for t in tasks:
            f.write(json.dumps(t.to_row(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def row_problem(where: str, e: Exception) -> str:
    """One line saying why the row at `where` (`file:N`) is not a task row."""
    if isinstance(e, json.JSONDecodeError):
        why = f"not valid JSON ({e.msg})"
    elif isinstance(e, ValidationError):  # name the fields, not pydantic's whole dump
        errs = e.errors()
        why = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'row'}: {x['msg']}" for x in errs[:3])
        why += f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    else:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{where}: not a task row ({why[:300]})"


def load_jsonl(path: str | Path, *, problems: list[str] | None = None) -> list[TaskInstance]:
    """Task rows of a JSONL file. A malformed line raises ValueError (`file:N: ...`); with
    `problems`, that line is appended there instead and the load goes on with the rest."""
    out = []
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"a JSON {type(row).__name__}, not an object")
                    out.append(TaskInstance.from_row(row))
                except Exception as e:
                    if problems is None:
                        raise ValueError(row_problem(f"{path}:{n}", e)) from None
                    problems.append(row_problem(f"{path}:{n}", e))
    return out


def to_dataset(tasks: Iterable[TaskInstance]):
    import datasets

    rows = [t.to_row() for t in tasks]
    features = datasets.Features(
        {name: datasets.List(datasets.Value("string")) if name in ("FAIL_TO_PASS", "PASS_TO_PASS")
         else datasets.Value("string") for name in TaskInstance.model_fields}
    )
    if not rows:  # from_list([]) knows no columns and fails against the features
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return datasets.Dataset.from_list(rows, features=features)


def from_dataset(ds, *, problems: list[str] | None = None, where: str = "dataset") -> list[TaskInstance]:
    """Rows of a `datasets.Dataset`; `problems` as in load_jsonl (rows are named `where[i]`)."""
    if problems is None:
        return [TaskInstance.from_row(r) for r in ds]
    out = []
    for i, r in enumerate(ds):
        try:
            out.append(TaskInstance.from_row(r))
        except Exception as e:
            problems.append(row_problem(f"{where}[{i}]", e))
    return out


def save_dataset(tasks: Iterable[TaskInstance], out_dir: str | Path) -> Path:
    """Write `out_dir/dataset` (save_to_disk) and `out_dir/tasks.jsonl` (for humans and swebench)."""
    tasks = list(tasks)
    out_dir = Path(out_dir)
    # One shard even when empty: a dataset saved with zero shards cannot be loaded again.
    to_dataset(tasks).save_to_disk(str(out_dir / "dataset"), num_shards=1 if not tasks else None)
    save_jsonl(tasks, out_dir / "tasks.jsonl")
    return out_dir


def load_dataset(path: str | Path, *, problems: list[str] | None = None) -> list[TaskInstance]:
    """Load rows from a JSONL file, a save_to_disk directory, or a directory holding either.
    With `problems`, malformed rows are described there (`file:N: ...`) and skipped."""
    import datasets

    path = Path(path)
    if path.is_file():
        return load_jsonl(path, problems=problems)
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        return from_dataset(datasets.load_from_disk(str(path)), problems=problems, where=str(path))
    if (path / "dataset").is_dir():
        return load_dataset(path / "dataset", problems=problems)
    if (path / "tasks.jsonl").exists():
        return load_jsonl(path / "tasks.jsonl", problems=problems)
    raise FileNotFoundError(f"no task dataset at {path}")
