"""`swelego data export` / `swelego data import`: our trajectories to and from the formats
other tools train on (LLaMA-Factory sharegpt with per-turn masks, OpenHands text calls, Harbor
ATIF) and the trajectory datasets others released (SWE-Lego, SWE-Gym / OpenHands). Both are
adapters: the conversions are `swelego.trajectories.export.export` and
`swelego.trajectories.formats`.

Reading is record by record: a record that does not convert is reported on one line and the
rest go on. Output streams into a temporary file that is renamed into place at the end, so an
interrupted run never leaves half a dataset behind (rerunning simply redoes the conversion,
a few hundred to a thousand trajectories a second).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from swelego.errors import SwelegoError
from swelego.records import input_files, iter_records, record_writer

err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

EXPORT_FORMATS = ("sharegpt", "openhands", "atif")  # swelego.trajectories.export.EXPORT_FORMATS but the copy
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


def _convert_all(source: str, out: str | None, label: str, convert: Callable[[Any], dict]) -> Counter:
    counts: Counter = Counter()
    with record_writer(out) as add, _progress(label, source) as advance:
        for where, rec in iter_records(source):
            advance(1)
            try:
                if isinstance(rec, Exception):
                    raise rec
                add(convert(rec))
                counts["converted"] += 1
            except (ValueError, TypeError, KeyError, SwelegoError) as e:
                counts["failed"] += 1
                _log(f"✗ {where}: {_first_line(e)}")
    return counts


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__


def _log(line: str) -> None:
    mark, _, rest = line.partition(" ")
    err.print(f"[red]{mark}[/] {escape(rest)}" if mark == "✗" else escape(line), highlight=False)


@contextlib.contextmanager
def _progress(label: str, source: str) -> Iterator[Callable[[int], None]]:
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        bar = progress.add_task(label, total=_count(source))
        yield lambda n: progress.advance(bar, n)


def _summary(counts: Counter, out: str | None, extra: str = "") -> None:
    where = f" to {out}" if out else ""
    err.print(f"{counts['converted']} record(s) converted{where}, {counts['failed']} failed{extra}")
    if counts["failed"] and not counts["converted"]:
        sys.exit(1)


@click.command("export")
@click.argument("traj", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="sharegpt: LLaMA-Factory records with per-turn `turn_mask` (SWE-Lego's training format); "
                   "openhands: OpenHands text-call transcripts; atif: Harbor ATIF trajectories (docs/formats.md).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output file (.json: one JSON array, as LLaMA-Factory's dataset_info expects; "
                   "otherwise JSONL). Default: JSONL on stdout.")
@click.option("--mask/--no-mask", default=True, show_default=True,
              help="sharegpt, atif: flag erroneous assistant turns with turn_mask=true (the error-label rules of "
                   "swelego.trajectories.labels); --no-mask flags none.")
@click.option("--mask-source", type=click.Choice(["rules", "imported", "both"]), default="rules", show_default=True,
              help="sharegpt, atif: which turns --mask flags: our error rules, the masks an imported trajectory "
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
    atif record: one Harbor ATIF document {schema_version, session_id, agent, steps,
                 final_metrics, extra} (docs/formats.md)
    Register a sharegpt file with LLaMA-Factory as formatting "sharegpt", columns
    {"messages": "messages"}, tags role/content/user/assistant/system.
    """
    from swelego.trajectories.export import ExportConfig, export

    cfg = ExportConfig(formats=[fmt], error_mask=mask, mask_source=mask_source, reasoning=reasoning)
    with _progress(f"export {fmt}", traj) as advance:
        summary = export(iter_records(traj), [fmt], out, cfg=cfg, log=_log, progress=advance, stream=True)
    extra = ""
    if fmt == "sharegpt" and summary["assistant_turns"]:
        extra = f"; {summary['masked_turns']}/{summary['assistant_turns']} assistant turns masked"
    _summary(Counter(converted=summary["converted"], failed=summary["failed"]), out, extra)


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
    from swelego.trajectories.formats import from_openhands, from_swe_lego

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
