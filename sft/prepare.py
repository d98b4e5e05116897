"""Trajectories -> a pre-tokenized dataset (`input_ids`, `labels`) with error masks and difficulty.

Each trajectory is labelled (swelego.trajectories.labels; `data.mask_source` picks the error rules, the masks the
data shipped with, or both), rendered with the training chat template
(sft.tokens) and given its difficulty value and bucket (sft.curriculum). Trajectories that
cannot train are dropped and counted: unreadable records, render failures, over-length ones
(policy `drop`) and those with no trained token left (every turn masked: a warning, not a crash).
The result is saved with `save_to_disk` next to a key of its inputs, so a rerun reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sft.config import CurriculumConfig, DataConfig, config_to_dict
from sft.curriculum import assistant_turns, bucket_of, failure_rates
from sft.data import iter_trajectories
from sft.tokens import IGNORE_INDEX, RenderError, render_conversations
from swelego.errors import SwelegoError
from swelego.trajectories.labels import MASK_SOURCES, LabelSummary, turn_labels
from swelego.trajectories.record import REASONING_MODES, Trajectory, reasoning_messages

log = logging.getLogger("sft.prepare")
PREPARE_VERSION = "2"  # 2: mask_source; the measure column is `curriculum_measure`
OVERLONG_POLICIES = ("drop", "keep_start")
BATCH = 32


@dataclass
class PrepareStats:
    """What preparation read, kept and dropped."""

    read: int = 0
    kept: int = 0
    bad_records: int = 0
    render_errors: int = 0
    not_resolved: int = 0
    no_assistant: int = 0
    overlong_dropped: int = 0
    overlong_truncated: int = 0
    all_masked_dropped: int = 0
    without_imported_masks: int = 0  # mask_source imported/both: trajectories whose source had no turn_mask
    tokens: int = 0
    trained_tokens: int = 0
    masked_tokens: int = 0  # tokens of error turns (kept as context, no loss)
    assistant_tokens: int = 0  # tokens of all assistant turns (trained + masked)
    turns: int = 0
    masked_turns: int = 0
    buckets: dict[str, int] = field(default_factory=dict)
    unbucketed: int = 0
    labels: dict = field(default_factory=dict)  # LabelSummary.to_dict() over the kept and dropped trajectories
    errors: list[str] = field(default_factory=list)  # the first few one-line errors

    @property
    def masked_turn_share(self) -> float:
        return self.masked_turns / self.turns if self.turns else 0.0

    @property
    def masked_token_share(self) -> float:
        return self.masked_tokens / self.assistant_tokens if self.assistant_tokens else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["masked_turn_share"] = round(self.masked_turn_share, 6)
        d["masked_token_share"] = round(self.masked_token_share, 6)
        return d


def _fingerprint(paths: list[str]) -> list:
    out = []
    for p in paths:
        path = Path(p)
        files = [path] if path.is_file() else sorted(x for x in path.rglob("*") if x.is_file()) if path.exists() else []
        out.append([p, [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]])
    return out


def prepare_key(data: DataConfig, cur: CurriculumConfig, tokenizer, chat_template: str) -> str:
    vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    d = config_to_dict(data)
    d.pop("num_proc", None)
    payload = {"v": PREPARE_VERSION, "data": d, "files": _fingerprint(data.paths), "vocab": vocab,
               "template": chat_template, "measure": cur.measure, "buckets": config_to_dict(cur.resolved_buckets()),
               "pass_rates_file": cur.pass_rates_file}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


MAX_WARNINGS = 20


def _note(stats: PrepareStats, where: str, msg: str, warn: Callable[[str], None] | None) -> None:
    line = f"{where}: {msg}"
    n = len(stats.errors)
    if n <= MAX_WARNINGS:
        stats.errors.append(line)
        if warn is not None:
            warn(line if n < MAX_WARNINGS else "more dropped or unreadable trajectories: see the counts")


def _features():
    from datasets import Features, Sequence, Value

    return Features({
        "input_ids": Sequence(Value("int32")), "labels": Sequence(Value("int32")),
        "instance_id": Value("string"), "source": Value("string"), "n_tokens": Value("int32"),
        "n_trained": Value("int32"), "turns": Value("int32"), "masked_turns": Value("int32"),
        "curriculum_measure": Value("float64"), "bucket": Value("string"), "truncated": Value("bool"),
    })


def _check_data(data: DataConfig) -> None:
    if data.overlong not in OVERLONG_POLICIES:
        raise SwelegoError(f"data.overlong must be one of {', '.join(OVERLONG_POLICIES)}, got {data.overlong!r}")
    if data.mask_source not in MASK_SOURCES:
        raise SwelegoError(f"data.mask_source must be one of {', '.join(MASK_SOURCES)}, got {data.mask_source!r}")
    if data.reasoning not in REASONING_MODES:
        raise SwelegoError(f"data.reasoning must be one of {', '.join(REASONING_MODES)}, got {data.reasoning!r}")


def _row(res, where: str, traj: Trajectory, labs: list, data: DataConfig, measure: str, rates: dict[str, float],
         buckets, stats: PrepareStats, warn: Callable[[str], None]) -> dict | None:
    """The dataset row of one rendered trajectory (counted in `stats`), None when it is dropped."""
    ids, labels = res.input_ids, res.labels
    truncated = False
    if len(ids) > data.max_length:
        if data.overlong == "drop":
            stats.overlong_dropped += 1
            return None
        ids, labels, truncated = ids[: data.max_length], labels[: data.max_length], True
        stats.overlong_truncated += 1
    n_trained = sum(1 for x in labels if x != IGNORE_INDEX)
    if n_trained == 0:
        stats.all_masked_dropped += 1
        why = ("every assistant turn is masked" if all(lab.error for lab in labs) and data.error_mask
               else "no trained token within max_length")
        _note(stats, where, f"dropping {traj.instance_id}: {why}", warn)
        return None
    masked = [k for k, lab in enumerate(labs) if lab.error]
    stats.kept += 1
    stats.tokens += len(ids)
    stats.trained_tokens += n_trained
    for k, (a, b) in enumerate(res.turn_tokens):
        b = min(b, len(ids))
        if a >= b:
            continue
        stats.assistant_tokens += b - a
        if labs[k].error and data.error_mask:
            stats.masked_tokens += b - a
    stats.turns += len(labs)
    stats.masked_turns += len(masked) if data.error_mask else 0  # labels still counts what rules fired
    n_turns = assistant_turns(traj)
    value = float(n_turns) if measure == "turns" else rates.get(traj.instance_id)
    bucket = bucket_of(value, buckets)
    if bucket is None:
        stats.unbucketed += 1
    else:
        stats.buckets[bucket] = stats.buckets.get(bucket, 0) + 1
    return {"input_ids": ids, "labels": labels, "instance_id": traj.instance_id, "source": where, "n_tokens": len(ids),
            "n_trained": n_trained, "turns": n_turns, "masked_turns": len(masked) if data.error_mask else 0,
            "curriculum_measure": value, "bucket": bucket, "truncated": truncated}


def prepare_dataset(data: DataConfig, cur: CurriculumConfig, tokenizer, chat_template: str, *,
                    progress: Callable[[int], None] | None = None,
                    warn: Callable[[str], None] | None = None):
    """(datasets.Dataset, PrepareStats) for the trajectories in `data.paths`."""
    from datasets import Dataset, concatenate_datasets

    _check_data(data)
    inline_reasoning = "reasoning_content" not in chat_template  # the template would silently drop it
    if not data.paths:
        raise SwelegoError("no trajectory files given (data.paths, or --data)")
    warn = warn or log.warning
    stats = PrepareStats()
    summary = LabelSummary()
    features = _features()

    rates: dict[str, float] = {}
    if cur.measure == "pass_rate":
        rates = failure_rates((t for _, t in iter_trajectories(data.paths) if isinstance(t, Trajectory)),
                              cur.pass_rates_file)
    buckets = cur.resolved_buckets()

    chunks = []
    rows: dict[str, list] = {k: [] for k in features}
    pending: list[tuple[str, Trajectory, list]] = []

    def flush_rows() -> None:
        if rows["input_ids"]:
            chunks.append(Dataset.from_dict(rows, features=features))
            for v in rows.values():
                v.clear()

    def flush_pending() -> None:
        if not pending:
            return
        items = [(reasoning_messages(t.messages, data.reasoning, inline=inline_reasoning), t.tools,
                  [not lab.error or not data.error_mask for lab in labs]) for _, t, labs in pending]
        for (where, traj, labs), res in zip(pending, render_conversations(tokenizer, items, chat_template),
                                            strict=True):
            if isinstance(res, RenderError):
                stats.render_errors += 1
                _note(stats, where, f"{traj.instance_id}: cannot render: {res}", warn)
                continue
            row = _row(res, where, traj, labs, data, cur.measure, rates, buckets, stats, warn)
            if row is not None:
                for k, v in row.items():
                    rows[k].append(v)
        pending.clear()
        if len(rows["input_ids"]) >= 512:
            flush_rows()

    for where, traj in iter_trajectories(data.paths):
        stats.read += 1
        if progress is not None:
            progress(1)
        if isinstance(traj, Exception):
            stats.bad_records += 1
            _note(stats, where, str(traj), warn)
            continue
        if data.only_resolved and traj.resolved is False and not traj.semi_resolved:
            stats.not_resolved += 1
            continue
        labs = turn_labels(traj, data.rules, data.mask_source)
        if data.mask_source != "rules" and traj.imported_masks is None:
            stats.without_imported_masks += 1
        summary.add(labs)
        if not labs:
            stats.no_assistant += 1
            _note(stats, where, f"dropping {traj.instance_id}: no assistant message", warn)
            continue
        pending.append((where, traj, labs))
        if len(pending) >= BATCH:
            flush_pending()
    flush_pending()
    flush_rows()
    stats.labels = summary.to_dict()
    ds = concatenate_datasets(chunks) if chunks else Dataset.from_dict({k: [] for k in features}, features=features)
    return ds, stats


def load_or_prepare(out_dir: Path, data: DataConfig, cur: CurriculumConfig, tokenizer, chat_template: str, *,
                    progress: Callable[[int], None] | None = None, warn: Callable[[str], None] | None = None):
    """The prepared dataset under `out_dir` when its key matches, else prepared now and saved there.
    Returns (dataset, stats dict, reused: bool)."""
    from datasets import load_from_disk

    key = prepare_key(data, cur, tokenizer, chat_template)
    stamp = out_dir / "prepare.json"
    if stamp.is_file():
        try:
            saved = json.loads(stamp.read_text())
            if saved.get("key") == key and (out_dir / "dataset").is_dir():
                return load_from_disk(str(out_dir / "dataset")), saved["stats"], True
        except Exception:  # a damaged or partial earlier result: prepare again
            pass
    ds, stats = prepare_dataset(data, cur, tokenizer, chat_template, progress=progress, warn=warn)
    if len(ds) == 0:
        raise SwelegoError(
            f"no trainable trajectory among {stats.read} read: {stats.bad_records} unreadable, "
            f"{stats.render_errors} unrenderable, {stats.overlong_dropped} over max_length {data.max_length}, "
            f"{stats.all_masked_dropped} with no trained token, {stats.not_resolved} unresolved")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "dataset.tmp"
    ds.save_to_disk(str(tmp))
    final = out_dir / "dataset"
    if final.exists():
        import shutil

        shutil.rmtree(final)
    tmp.rename(final)
    stamp.write_text(json.dumps({"key": key, "stats": stats.to_dict()}, indent=2))
    return load_from_disk(str(final)), stats.to_dict(), False
