"""`swelego data export` / `swelego data import`: our trajectories to and from the formats
other tools train on (LLaMA-Factory sharegpt with per-turn masks, OpenHands text calls) and
the trajectory datasets others released (SWE-Lego, SWE-Gym / OpenHands).

Reading is record by record: a record that does not convert is reported on one line and the
rest go on. Output streams into a temporary file that is renamed into place at the end, so an
interrupted run never leaves half a dataset behind (rerunning simply redoes the conversion,
a few hundred to a thousand trajectories a second).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from swelego.errors import SwelegoError
from swelego.records import input_files, iter_records

err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

EXPORT_FORMATS = ("sharegpt", "openhands")
IMPORT_FORMATS = ("swe-lego", "openhands")


def _count(path: str | Path) -> int | None:
    """Records in JSONL inputs (lines), for the progress bar; None when unknown up front."""
    total = 0
    for file in input_files(Path(path)):
        if file.suffix != ".jsonl":
            return None
        with open(file, "rb") as fh:
            total += sum(1 for line in fh if line.strip())
    return total


class _Output:
    """Records streamed to a temporary file next to the target and renamed into place by
    `close` (stdout when no path is given). A `.json` target gets one JSON array, anything
    else JSONL."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.as_array = self.path is not None and self.path.suffix == ".json"
        self.count = 0
        self.tmp: Path | None = None
        if self.path is None:
            self.fh: TextIO = sys.stdout
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would surprise whoever reads the dataset
        self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def add(self, record: dict) -> None:
        text = json.dumps(record, ensure_ascii=False)
        if self.as_array:
            self.fh.write(("[\n" if self.count == 0 else ",\n") + text)
        else:
            self.fh.write(text + "\n")
        self.count += 1

    def close(self) -> None:
        if self.as_array:
            self.fh.write("\n]\n" if self.count else "[]\n")
        self.fh.flush()
        if self.tmp is None:
            return
        self.fh.close()
        assert self.path is not None
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.tmp is not None:
            self.fh.close()
            self.tmp.unlink(missing_ok=True)


def _convert_all(source: str, out: str | None, label: str, convert: Callable[[Any], dict]) -> Counter:
    counts: Counter = Counter()
    sink = _Output(out)
    try:
        _convert_into(sink, source, label, convert, counts)
    except BaseException:
        sink.discard()
        raise
    sink.close()
    return counts


def _convert_into(sink: _Output, source: str, label: str, convert: Callable[[Any], dict],
                  counts: Counter) -> None:
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        bar = progress.add_task(label, total=_count(source))
        for where, rec in iter_records(source):
            progress.advance(bar)
            try:
                if isinstance(rec, Exception):
                    raise rec
                sink.add(convert(rec))
                counts["converted"] += 1
            except (ValueError, TypeError, KeyError, SwelegoError) as e:
                counts["failed"] += 1
                msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                err.print(f"[red]✗[/] {escape(where)}: {escape(msg)}", highlight=False)


def _summary(counts: Counter, out: str | None, extra: str = "") -> None:
    where = f" to {out}" if out else ""
    err.print(f"{counts['converted']} record(s) converted{where}, {counts['failed']} failed{extra}")
    if counts["failed"] and not counts["converted"]:
        sys.exit(1)


@click.command("export")
@click.argument("traj", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="sharegpt: LLaMA-Factory records with per-turn `turn_mask` (SWE-Lego's training format); "
                   "openhands: OpenHands text-call transcripts.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output file (.json: one JSON array, as LLaMA-Factory's dataset_info expects; "
                   "otherwise JSONL). Default: JSONL on stdout.")
@click.option("--mask/--no-mask", default=True, show_default=True,
              help="sharegpt: flag erroneous assistant turns with turn_mask=true (the error-label rules of "
                   "swelego.agent.labels); --no-mask flags none.")
@click.option("--mask-source", type=click.Choice(["rules", "imported", "both"]), default="rules", show_default=True,
              help="sharegpt: which turns --mask flags: our error rules, the masks an imported trajectory "
                   "shipped with (SWE-Lego's turn_mask), or both.")
@click.option("--reasoning", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
              help="The thinking reasoning endpoints returned (reasoning_content): keep it as <think>...</think> "
                   "before the turn's text (Qwen3 style), or drop it.")
def export_cmd(traj, fmt, out, mask, mask_source, reasoning):
    """Export trajectories (TRAJ: a JSONL/JSON file of our trajectories, or a rollout directory)
    for other trainers.

    \b
    sharegpt record: {instance_id, messages: [{role, content, turn_mask (assistant only)}],
                      resolved, semi_resolved, policy, model, patch}
    openhands record: {instance_id, messages: [{role, content}], tools, resolved, semi_resolved,
                       policy, model, patch}
    Register a sharegpt file with LLaMA-Factory as formatting "sharegpt", columns
    {"messages": "messages"}, tags role/content/user/assistant/system.
    """
    from swelego.agent.formats import to_openhands_messages, to_sharegpt
    from swelego.agent.labels import turn_labels
    from swelego.agent.trajectory import Trajectory, reasoning_messages

    masked_turns = Counter()

    def convert(rec: Any) -> dict:
        if not isinstance(rec, dict):
            raise ValueError(f"expected a trajectory object, got {type(rec).__name__}")
        if not rec.get("instance_id") or not isinstance(rec.get("messages"), list):
            raise ValueError("not a trajectory (needs `instance_id` and a `messages` list)")
        t = Trajectory.from_dict(rec)
        t.messages = reasoning_messages(t.messages, reasoning, inline=True)
        if fmt == "sharegpt":
            turns = {lab.message_index for lab in turn_labels(t, source=mask_source) if lab.error} if mask else ()
            row = to_sharegpt(t, turns)
            assistant = [m for m in row["messages"] if m["role"] == "assistant"]
            masked_turns["assistant"] += len(assistant)
            masked_turns["masked"] += sum(m["turn_mask"] for m in assistant)
            return row
        return {"instance_id": t.instance_id, "messages": to_openhands_messages(t), "tools": t.tools,
                "resolved": t.resolved, "semi_resolved": t.semi_resolved, "policy": t.policy,
                "model": t.model, "patch": t.patch}

    counts = _convert_all(traj, out, f"export {fmt}", convert)
    extra = ""
    if fmt == "sharegpt" and masked_turns["assistant"]:
        extra = f"; {masked_turns['masked']}/{masked_turns['assistant']} assistant turns masked"
    _summary(counts, out, extra)


@click.command("import")
@click.argument("file", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(IMPORT_FORMATS), required=True,
              help="swe-lego: SWE-Lego's released sharegpt trajectories (text calls, "
                   "\"EXECUTION RESULT of [..]\" turns); openhands: SWE-Gym / OpenHands trajectories "
                   "(native tool_calls or text calls).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output file (.json: one JSON array; otherwise JSONL). Default: JSONL on stdout.")
def import_cmd(file, fmt, out):
    """Import released trajectories (FILE: JSONL, JSON or parquet, e.g. a downloaded
    SWE-Lego-Real-Data shard) as our trajectories, one JSON object per record, with tool
    calls, tool results and per-step error flags recovered from the text. A record's own
    per-message `turn_mask` flags are kept (`imported_masks`; SFT `data.mask_source`)."""
    from swelego.agent.formats import from_openhands, from_swe_lego

    importer = from_swe_lego if fmt == "swe-lego" else from_openhands
    stats = Counter()

    def convert(rec: Any) -> dict:
        t = importer(rec)
        stats["steps"] += len(t.steps)
        stats["errors"] += sum(s.error for s in t.steps)
        stats["masks"] += len(t.imported_masks or ())
        return t.to_dict()

    counts = _convert_all(file, out, f"import {fmt}", convert)
    extra = (f"; {stats['steps']} tool step(s), {stats['errors']} flagged as errors, {stats['masks']} turn(s) "
             "with the record's own turn_mask" if counts["converted"] else "")
    _summary(counts, out, extra)
