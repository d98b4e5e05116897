"""`swelego sft`: the command group of this room."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sft.config import SFTRunConfig
from swelego.config import config_flag, fields_option, flag_overrides, parse_sets

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


@click.group()
def sft():
    """Fine-tune on trajectories with error masking and a difficulty curriculum."""


@sft.command("label")
@click.argument("traj", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory (labels.jsonl, summary.json).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An SFT config whose data.rules to use (default: the built-in rules).")
@click.option("--disable", multiple=True, help="Turn a rule off (repeatable), e.g. --disable no_tool_call.")
@click.option("--enable", multiple=True, help="Turn a rule on (repeatable), e.g. --enable skipped_after_finish.")
@click.option("--mask-source", type=click.Choice(["rules", "imported", "both"]), default="rules", show_default=True,
              help="Label with the error rules, the masks the data shipped with (SWE-Lego's turn_mask), or both.")
def label_cmd(traj, out_dir, config_path, disable, enable, mask_source):
    """Label every assistant turn of the trajectories in TRAJ (JSONL files, rollout folders, saved
    datasets, SWE-Lego-format records) as trained or masked, and say which rule masked it.

    Writes OUT/labels.jsonl (one line per trajectory: source, instance_id, per-turn labels) and
    OUT/summary.json, and prints the turns each rule masked and the masked share overall.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from sft.config import SFTRunConfig, config_to_dict, load_config
    from sft.data import iter_trajectories
    from swelego.records import atomic_writer
    from swelego.trajectories.labels import ALL_RULES, LabelRules, LabelSummary, turn_labels

    rules = load_config(SFTRunConfig, config_path).data.rules if config_path else LabelRules()
    for name in (*disable, *enable):
        if name not in ALL_RULES:
            raise click.BadParameter(f"unknown rule {name!r} (choose from {', '.join(ALL_RULES)})")
    enabled = [r for r in rules.enabled if r not in disable] + [r for r in enable if r not in rules.enabled]
    rules = LabelRules(**{**config_to_dict(rules), "enabled": enabled})
    dest = Path(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    summary = LabelSummary()
    bad = 0
    with atomic_writer(dest / "labels.jsonl") as fh, Progress(
            SpinnerColumn(), TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=True) as bar:
        task = bar.add_task("label", total=None)
        for where, t in iter_trajectories(list(traj)):
            bar.advance(task)
            if isinstance(t, Exception):
                bad += 1
                err.print(f"[red]error:[/] {escape(where)}: {escape(str(t))}", highlight=False)
                continue
            labels = turn_labels(t, rules, mask_source)
            summary.add(labels)
            fh.write(json.dumps({"source": where, "instance_id": t.instance_id,
                                 "labels": [lab.to_dict() for lab in labels]}, ensure_ascii=False) + "\n")
    result = {**summary.to_dict(), "unreadable_records": bad, "rules": config_to_dict(rules)}
    (dest / "summary.json").write_text(json.dumps(result, indent=2))

    table = Table(title="error labels", show_lines=False)
    table.add_column("rule")
    table.add_column("turns masked", justify="right")
    table.add_column("share of turns", justify="right")
    table.add_column("fired (overlaps)", justify="right")
    for rule in ALL_RULES:
        n = summary.primary.get(rule, 0)
        fired = summary.fired.get(rule, 0)
        state = "" if rule in rules.enabled else " (off)"
        table.add_row(rule + state, str(n), f"{100 * n / summary.turns:.2f}%" if summary.turns else "-", str(fired))
    table.add_row("[bold]all rules[/]", str(summary.masked), f"{100 * summary.masked_share:.2f}%", "")
    out.print(table)
    out.print(f"{summary.trajectories} trajectories, {summary.turns} assistant turns, {summary.masked} masked "
              f"({100 * summary.masked_share:.2f}%); {summary.all_masked} trajectories fully masked; "
              f"{bad} unreadable records. Labels in {dest / 'labels.jsonl'}")


def _run_overrides(sets) -> dict:
    """The flags given (each sets its config field) and then --set."""
    return {**flag_overrides(), **parse_sets(sets)}


R = SFTRunConfig  # the config of `sft train` / `sft prepare`; the flags below set its fields
_run_options = [
    click.argument("config", type=click.Path(exists=True, dir_okay=False)),
    config_flag(R, "data.paths", "--data", multiple=True, type=click.Path(exists=True), default=(),
                help="Trajectory file or folder (repeatable); replaces data.paths."),
    config_flag(R, "output_dir", "--output-dir"),
    config_flag(R, "training.max_steps", "--max-steps"),
    config_flag(R, "data.error_mask", "--no-error-mask", is_flag=True, flag_value=False, default=None,
                help="Train every assistant turn (ablation; data.error_mask=false)."),
    config_flag(R, "curriculum.enabled", "--no-curriculum", is_flag=True, flag_value=False, default=None,
                help="One run on the shuffled union of all data (ablation; curriculum.enabled=false)."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="Override any config field by dotted key, e.g. --set training.learning_rate=2e-5."),
]


def _with_run_options(fn):
    for opt in reversed(_run_options):
        fn = opt(fn)
    return fn


@sft.command("train")
@_with_run_options
@fields_option(SFTRunConfig)
def train_cmd(config, sets):
    """Fine-tune with TRL's SFTTrainer as CONFIG (YAML, see configs/sft/) says, flags overriding it.

    Prepares (or reuses) the tokenized data under OUTPUT/prepared, trains the curriculum stages,
    saves OUTPUT/model and writes OUTPUT/run_card.json and run_card.md. For several GPUs run it
    under `accelerate launch --config_file configs/sft/accelerate/zero3.yaml -m sft.cli train ...`.
    """
    from sft.train import train_from_config

    overrides = _run_overrides(sets)
    res = train_from_config(config, overrides, console=err)
    out.print(f"model: {res.model_dir}\nrun card: {res.run_card_path}")


@sft.command("prepare")
@_with_run_options
@fields_option(SFTRunConfig)
def prepare_cmd(config, sets):
    """Only label and tokenize the data of CONFIG into OUTPUT/prepared (train reuses it) and
    print the counts: kept, dropped (unreadable, over-length, fully masked), masked share, buckets."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from sft.config import SFTRunConfig, load_config
    from sft.prepare import load_or_prepare
    from sft.tokens import training_chat_template
    from sft.trainer import load_tokenizer, model_path

    overrides = _run_overrides(sets)
    cfg = load_config(SFTRunConfig, config, overrides)
    tok = load_tokenizer(cfg.model, model_path(cfg.model))
    template = training_chat_template(tok, cfg.model.chat_template)
    with Progress(SpinnerColumn(), TextColumn("preparing"), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("prepare", total=None)
        ds, stats, reused = load_or_prepare(Path(cfg.output_dir) / "prepared", cfg.data, cfg.curriculum, tok,
                                            template, progress=lambda n: bar.advance(task, n),
                                            warn=lambda line: err.print(f"[yellow]warning:[/] {escape(line)}"))
    table = Table(title=f"prepared data{' (reused)' if reused else ''}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for key in ("read", "kept", "bad_records", "render_errors", "not_resolved", "overlong_dropped",
                "overlong_truncated", "all_masked_dropped", "without_imported_masks", "tokens", "trained_tokens",
                "turns", "masked_turns", "masked_turn_share", "masked_token_share", "unbucketed"):
        table.add_row(key, str(stats[key]))
    for name, n in sorted(stats["buckets"].items()):
        table.add_row(f"bucket {name}", str(n))
    out.print(table)
    out.print(f"dataset: {Path(cfg.output_dir) / 'prepared' / 'dataset'} ({len(ds)} rows)")


@sft.command("fields")
@click.option("--markdown", is_flag=True, help="Print a markdown table (as in docs/sft.md).")
def fields_cmd(markdown):
    """List every field of an SFT config file: dotted name, type, default and meaning."""
    from sft.config import SFTRunConfig, describe_config

    rows = describe_config(SFTRunConfig)
    if markdown:
        out.print("| field | type | default | meaning |\n|---|---|---|---|", markup=False, highlight=False)
        for name, tp, default, help_ in rows:
            out.print(f"| `{name}` | {tp} | `{default}` | {help_} |", markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(show_lines=False)
    for col in ("field", "type", "default", "meaning"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(x) for x in r))
    out.print(table)


@sft.command("tiny")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Where to save.")
def tiny_cmd(out_dir):
    """Build the tiny offline Qwen3-style tokenizer + random-init model into OUT (for tests and demos)."""
    from sft.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer(None)
    path = build_tiny_model(tok, out_dir)
    out.print(f"tiny model and tokenizer ({len(tok)} ids) in {path}")


if __name__ == "__main__":  # `accelerate launch -m sft.cli train ...`
    sft()
