"""`export(records, formats, out, cfg=...)`: our trajectories in the formats other tools train on,
the one implementation behind `swelego data export` and the data build's export stage.

Formats (`EXPORT_FORMATS`) and the files they get in a folder export:

    trajectories  trajectories.jsonl   the records as they are (input of `swelego sft`)
    sharegpt      sharegpt.json        LLaMA-Factory sharegpt, `turn_mask` on error turns, plus
                  dataset_info.json    (the entry LLaMA-Factory registers) and labels.json
                                       (error-label counts per rule)
    openhands     openhands.jsonl      OpenHands text-call transcripts
    atif          atif.jsonl           Harbor ATIF documents, one a line
                  export.json          what was written and what failed, per format

A stream export (`stream=True`, one format) writes that format's records alone to one file:
a `.json` path gets one JSON array (as LLaMA-Factory's dataset_info expects), any other path
JSONL, None JSONL on stdout. Every file is written to a temporary file and renamed into place
when complete (`swelego.records.atomic_writer`). A record that does not convert is reported in
one line through `log` and the rest go on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swelego.config import ConfigError, doc_field
from swelego.errors import SwelegoError
from swelego.records import record_writer, write_json_atomic
from swelego.trajectories.atif import to_atif
from swelego.trajectories.formats import to_openhands_record, to_sharegpt
from swelego.trajectories.labels import MASK_SOURCES, LabelSummary, turn_labels
from swelego.trajectories.record import REASONING_MODES, Trajectory, reasoning_messages

EXPORT_FORMATS = ("trajectories", "sharegpt", "openhands", "atif")
FILE_NAMES = {"trajectories": "trajectories.jsonl", "sharegpt": "sharegpt.json", "openhands": "openhands.jsonl",
              "atif": "atif.jsonl"}
LLAMA_FACTORY_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                      "assistant_tag": "assistant", "system_tag": "system"}


@dataclass
class ExportConfig:
    """Training files written by an export (the build's ``export:`` section, `swelego data export`)."""

    formats: list[str] = doc_field(
        "`trajectories`: kept trajectories in our format (input of `swelego sft`); `sharegpt`: LLaMA-Factory "
        "sharegpt with per-turn `turn_mask` (SWE-Lego's training format) + dataset_info.json; `openhands`: "
        "OpenHands text-call transcripts; `atif`: Harbor ATIF trajectories (one document a line).",
        default_factory=lambda: ["trajectories", "sharegpt"])
    error_mask: bool = doc_field("sharegpt / atif: flag error turns (swelego.trajectories.labels rules) with "
                                 "turn_mask=true.", default=True)
    mask_source: str = doc_field("Which turns error_mask flags: `rules` (our error rules), `imported` (the masks "
                                 "an imported trajectory shipped with, SWE-Lego's turn_mask) or `both`.",
                                 default="rules")
    reasoning: str = doc_field("The thinking reasoning endpoints returned (reasoning_content): `keep` it (as "
                               "<think>...</think> before the turn's text in text formats, as reasoning_content "
                               "in atif) or `drop` it.", default="keep")
    dataset_name: str = doc_field("Name of the entry in dataset_info.json.", default="swelego")

    def check(self) -> None:
        """Refuse values no export can use, naming the field."""
        for f in self.formats:
            if f not in EXPORT_FORMATS:
                raise ConfigError(f"export.formats: {f!r} is not one of {', '.join(EXPORT_FORMATS)}")
        if self.mask_source not in MASK_SOURCES:
            raise ConfigError(f"export.mask_source: {self.mask_source!r} is not one of {', '.join(MASK_SOURCES)}")
        if self.reasoning not in REASONING_MODES:
            raise ConfigError(f"export.reasoning: {self.reasoning!r} is not one of {', '.join(REASONING_MODES)}")


def _trajectory(rec: Any) -> Trajectory:
    if isinstance(rec, Exception):
        raise rec
    if not isinstance(rec, dict):
        raise ValueError(f"expected a trajectory object, got {type(rec).__name__}")
    if not rec.get("instance_id") or not isinstance(rec.get("messages"), list):
        raise ValueError("not a trajectory (needs `instance_id` and a `messages` list)")
    return Trajectory.from_dict(rec)


class _Converter:
    """One format's record conversion, with the counts its summary reports."""

    def __init__(self, fmt: str, cfg: ExportConfig):
        self.fmt, self.cfg = fmt, cfg
        self.labels = LabelSummary()
        self.assistant_turns = self.masked_turns = 0

    def _masked(self, t: Trajectory) -> set[int]:
        if not self.cfg.error_mask:
            return set()
        labels = turn_labels(t, source=self.cfg.mask_source)
        self.labels.add(labels)
        return {lab.message_index for lab in labels if lab.error}

    def __call__(self, rec: Any) -> Any:
        t = _trajectory(rec)
        if self.fmt == "trajectories":
            return rec
        if self.fmt == "atif":
            t.messages = reasoning_messages(t.messages, self.cfg.reasoning)
            return to_atif(t, self._masked(t))
        t.messages = reasoning_messages(t.messages, self.cfg.reasoning, inline=True)
        if self.fmt == "openhands":
            return to_openhands_record(t)
        row = to_sharegpt(t, self._masked(t))
        assistant = [m for m in row["messages"] if m["role"] == "assistant"]
        self.assistant_turns += len(assistant)
        self.masked_turns += sum(m["turn_mask"] for m in assistant)
        return row


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e).strip() else type(e).__name__


def _convert(records: Iterable[tuple[str, Any]], conv: _Converter, log: Callable[[str], None],
             progress: Callable[[int], None] | None, counts: dict) -> Iterator[Any]:
    for where, rec in records:
        if progress:
            progress(1)
        try:
            row = conv(rec)
        except (ValueError, TypeError, KeyError, SwelegoError) as e:
            counts["failed"] += 1
            log(f"✗ export {conv.fmt} {where}: {_first_line(e)}")
            continue
        counts["converted"] += 1
        yield row


def export(records: Iterable[tuple[str, Any]], formats: Iterable[str], out: str | Path | None, *,
           cfg: ExportConfig, log: Callable[[str], None] | None = None,
           progress: Callable[[int], None] | None = None, stream: bool = False) -> dict:
    """Export `records` ((where, trajectory record or the exception that replaced it) pairs,
    as `swelego.records.iter_records` yields them) in `formats`.

    Folder export (default): every format's files into the folder `out`, and export.json with
    the summary returned: ``{records, failed: {format: n}, sharegpt: n, labels: {...},
    openhands: n, atif: n}`` (the converted formats only). Stream export (`stream`, exactly one
    format): that format's records to the file `out` (see the module docstring); returns
    ``{format, records, converted, failed}`` (+ ``assistant_turns`` / ``masked_turns`` for
    sharegpt). `log` gets one line per record that did not convert; `progress(n)` is called as
    records are done (once per record and format)."""
    cfg.check()
    wanted = [f for f in formats]
    for f in wanted:
        if f not in EXPORT_FORMATS:
            raise SwelegoError(f"unknown export format {f!r} (choose from {', '.join(EXPORT_FORMATS)})")
    log = log or (lambda line: print(line, file=sys.stderr))
    if stream:
        if len(wanted) != 1:
            raise SwelegoError("a stream export writes exactly one format")
        return _export_stream(records, wanted[0], None if out is None else Path(out), cfg, log, progress)
    if out is None:
        raise SwelegoError("a folder export needs an output folder")
    return _export_folder(list(records), [f for f in EXPORT_FORMATS if f in wanted], Path(out), cfg, log, progress)


def _export_stream(records, fmt: str, path: Path | None, cfg: ExportConfig, log, progress) -> dict:
    conv = _Converter(fmt, cfg)
    counts = {"converted": 0, "failed": 0}
    with record_writer(path) as add:
        for row in _convert(records, conv, log, progress, counts):
            add(row)
    summary = {"format": fmt, "records": counts["converted"] + counts["failed"], **counts}
    if fmt == "sharegpt":
        summary.update(assistant_turns=conv.assistant_turns, masked_turns=conv.masked_turns)
    return summary


def _export_folder(records: list, formats: list[str], out: Path, cfg: ExportConfig, log, progress) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"records": len(records), "failed": {}}
    for fmt in formats:
        conv = _Converter(fmt, cfg)
        counts = {"converted": 0, "failed": 0}
        rows = _convert(records, conv, log, progress, counts)
        if fmt == "sharegpt":
            write_json_atomic(out / "sharegpt.json", list(rows), indent=None)
            info = {cfg.dataset_name: {"file_name": "sharegpt.json", "formatting": "sharegpt",
                                       "columns": {"messages": "messages"}, "tags": LLAMA_FACTORY_TAGS}}
            write_json_atomic(out / "dataset_info.json", info)
            write_json_atomic(out / "labels.json", conv.labels.to_dict())
        else:
            with record_writer(out / FILE_NAMES[fmt]) as add:
                for row in rows:
                    add(row)
        if fmt != "trajectories":
            summary[fmt] = counts["converted"]
            summary["failed"][fmt] = counts["failed"]
        if fmt == "sharegpt":
            summary["labels"] = conv.labels.to_dict()
    write_json_atomic(out / "export.json", summary)
    return summary


def output_files(formats: Iterable[str]) -> list[str]:
    """The files a folder export of `formats` writes, in order (export.json last)."""
    names = []
    for fmt in EXPORT_FORMATS:
        if fmt in formats:
            names.append(FILE_NAMES[fmt])
            if fmt == "sharegpt":
                names += ["dataset_info.json", "labels.json"]
    return [*names, "export.json"]
