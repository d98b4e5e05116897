"""TaskInstance: a valid swebench 5 row plus swelego's own fields.

The official harness reads the swebench fields unmodified; our fields ride along. Fields we do
not declare (official rows carry `environment_setup_commit`, Verified's `difficulty` strings
such as "<15 min fix", swebench 5's `image_assets`, SWE-rebench's `meta` / `install_config` /
`docker_image`, SWE-smith's `image_name`, ...) are kept as they are and written back out
unchanged, to JSONL, to HF datasets and to the harness. FAIL_TO_PASS / PASS_TO_PASS arrive as
lists or JSON strings and are held (and written) as lists, which swebench reads either way.

Our own turn-count curriculum bucket is `curriculum_bucket`; `difficulty` belongs to the row's
source (Verified's human estimate) and is never read or written by swelego.

Rows round-trip losslessly through JSONL and HF `datasets` (save_to_disk / load_from_disk).
Arrow needs one schema per dataset, so `to_dataset` stores every undeclared field as a string
column (absent = null): strings as they are, anything else (numbers, lists, dicts, null) as
JSON, named per row in the `_json_fields` column; `from_row` decodes them back exactly.
Free-form data of ours lives in `metadata`, a JSON string in Arrow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swelego.records import iter_jsonl, write_jsonl_atomic

SWEBENCH_FIELDS = (
    "instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement", "FAIL_TO_PASS",
    "PASS_TO_PASS", "image", "eval_script", "log_parser", "eval_type", "version", "created_at",
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TaskInstance(BaseModel):
    # Undeclared fields are kept (official datasets carry more than we model; see the docstring).
    model_config = ConfigDict(extra="allow", validate_assignment=True)

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
    curriculum_bucket: str = ""  # our turn-count bucket (easy/medium/hard), when known; not `difficulty`
    test_cmd: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _tests_from_json(cls, v):
        # swebench's HF datasets store these as JSON strings; accept both shapes.
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("version", "created_at", mode="before")
    @classmethod
    def _as_text(cls, v):
        # Some exports type these as numbers (version 3.0) or Arrow timestamps; swebench wants strings.
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%dT%H:%M:%SZ") if v.tzinfo is None else v.isoformat()
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

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

    @property
    def extra_fields(self) -> dict[str, Any]:
        """The row's fields that TaskInstance does not declare, as the row gave them."""
        return dict(self.__pydantic_extra__ or {})

    def to_row(self) -> dict[str, Any]:
        """A flat dict for JSONL, `datasets` and swebench (lists stay lists; metadata is JSON;
        undeclared fields as the row gave them)."""
        row = self.model_dump()
        row["metadata"] = json.dumps(self.metadata, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskInstance:
        """A row of JSONL, a Hub dataset or our own `to_dataset` (whose `_json_fields` it decodes)."""
        if JSON_FIELDS_COLUMN in row:
            row = _decode_arrow_extras(row)
        return cls(**row)


JSON_FIELDS_COLUMN = "_json_fields"  # to_dataset: the undeclared fields of a row stored as JSON text


def _decode_arrow_extras(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    as_json = set(row.pop(JSON_FIELDS_COLUMN) or ())
    for name in [k for k in row if k not in TaskInstance.model_fields]:
        value = row[name]
        if name in as_json:
            row[name] = json.loads(value)
        elif value is None:  # a column another row of the dataset has; this row never had it
            del row[name]
    return row


def _encode_arrow_extras(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    as_json = []
    for name in columns:
        if name not in row:
            row[name] = None
        elif not isinstance(row[name], str):
            row[name] = json.dumps(row[name], ensure_ascii=False)
            as_json.append(name)
    row[JSON_FIELDS_COLUMN] = as_json
    return row


def save_jsonl(tasks: Iterable[TaskInstance], path: str | Path) -> Path:
    path = Path(path)
    write_jsonl_atomic(path, (t.to_row() for t in tasks))
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
    for n, row in iter_jsonl(path):
        try:
            if isinstance(row, ValueError):
                raise row
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

    tasks = list(tasks)
    rows = [t.to_row() for t in tasks]
    features = datasets.Features(
        {name: datasets.List(datasets.Value("string")) if name in ("FAIL_TO_PASS", "PASS_TO_PASS")
         else datasets.Value("string") for name in TaskInstance.model_fields}
    )
    extras = sorted({name for t in tasks for name in t.extra_fields})
    if extras:  # one schema for rows with different extra fields: typed string columns (docstring)
        if JSON_FIELDS_COLUMN in extras:
            raise ValueError(f"a row has a field named {JSON_FIELDS_COLUMN!r}, which to_dataset reserves")
        rows = [_encode_arrow_extras(r, extras) for r in rows]
        features.update({name: datasets.Value("string") for name in extras})
        features[JSON_FIELDS_COLUMN] = datasets.List(datasets.Value("string"))
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
