"""`swelego verifier`: the command group of this room (data, train, score, fields)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from swelego.config import config_flag, fields_option, flag_overrides
from verifier.train import VerifierRunConfig

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


@click.group()
def verifier():
    """Train and run the verifier that scores trajectories (P(YES) of a judgement)."""


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _load(paths):
    from swelego.errors import SwelegoError
    from verifier.data import LoadReport, load_trajectories

    report = LoadReport()
    try:
        trajs = load_trajectories(paths, report)
    except FileNotFoundError as e:
        raise SwelegoError(str(e)) from None
    for line in report.bad_lines[:5]:
        err.print(f"skipped {line}", highlight=False, markup=False)
    if len(report.bad_lines) > 5:
        err.print(f"... and {len(report.bad_lines) - 5} more unreadable lines")
    if report.duplicates:
        err.print(f"skipped {report.duplicates} duplicate (instance, sample) trajectories")
    return trajs, report


@verifier.command("data")
@click.argument("trajectories", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--tokenizer", default=None,
              help="Tokenizer (directory or hub id) whose token counts budget the prompts; default: a "
                   "byte-based estimate.")
@click.option("--max-length", default=131072, show_default=True, help="Token budget of prompt plus answer.")
@click.option("--eval-fraction", default=0.1, show_default=True, help="Share of instances held out for eval.")
@click.option("--balance", type=click.Choice(["none", "downsample", "upsample"]), default="none",
              show_default=True, help="Class balance of the training split.")
@click.option("--seed", default=0, show_default=True, help="Seed of the split and the balancing.")
@click.option("--thinking/--no-thinking", default=False, show_default=True,
              help="Qwen3 chat templates: render the prompt with thinking enabled.")
def data_cmd(trajectories, out_dir, tokenizer, max_length, eval_fraction, balance, seed, thinking):
    """Build judge examples from TRAJECTORIES (JSONL files or rollout folders).

    One example per labelled trajectory: the judge prompt (interaction log + final patch,
    trimmed in the middle of the log to fit, never the patch) and the target
    <judgement>YES</judgement> (resolved) or NO. Train/eval are split by instance. Writes
    OUT/train.jsonl, OUT/eval.jsonl, OUT/dataset (save_to_disk) and OUT/stats.json.
    """
    from verifier.data import build_judge_data, write_judge_data
    from verifier.prompt import JudgeFormatter

    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    formatter = JudgeFormatter(tok, max_length=max_length, chat_template_kwargs={"enable_thinking": thinking})
    trajs, report = _load(trajectories)
    data = build_judge_data(trajs, formatter, eval_fraction=eval_fraction, balance_mode=balance, seed=seed,
                            load_report=report)
    write_judge_data(data, out_dir)
    st = data.stats
    table = Table(title=f"verifier data -> {out_dir}")
    for col in ("split", "instances", "examples", "YES", "NO"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split in ("train", "eval"):
        table.add_row(split, str(st["instances"][split]), str(st[split]["examples"]), str(st[split]["yes"]),
                      str(st[split]["no"]))
    out.print(table)
    skipped = ", ".join(f"{v} {k}" for k, v in st["skipped"].items()) or "none"
    out.print(f"{st['trajectories']} trajectories, {st['examples']} examples, {st['trimmed']} trimmed to fit; "
              f"skipped: {skipped}; unreadable lines: {len(report.bad_lines)}", highlight=False)


@verifier.command("train")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@config_flag(VerifierRunConfig, "data.paths", "--data", multiple=True, type=click.Path(exists=True), default=(),
             help="Trajectories (files or rollout folders) or a `verifier data` folder; replaces data.paths.")
@config_flag(VerifierRunConfig, "output_dir", "--output-dir")
@config_flag(VerifierRunConfig, "training.max_steps", "--max-steps")
@config_flag(VerifierRunConfig, "kind", "--kind", type=click.Choice(["generative", "regressive"]))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any other field, dotted (e.g. --set training.learning_rate=1e-5); VALUE is YAML.")
@fields_option(VerifierRunConfig)
def train_cmd(config, sets):
    """Train a verifier with the recipe in CONFIG (YAML; see `swelego verifier fields`).

    generative: TRL SFT on the judge prompts, loss on the judgement tokens only.
    regressive: a scalar head trained with binary cross-entropy on the same prompts.
    Prints the loss curve's ends and the held-out AUC / accuracy (split by instance).
    """

    from sft.config import load_config
    from swelego.config import parse_sets
    from verifier.train import VerifierRunConfig, train_verifier

    cfg = load_config(VerifierRunConfig, config, {**flag_overrides(), **parse_sets(sets)})
    result = train_verifier(cfg, log=lambda m: err.print(m, highlight=False))
    m = result.metrics
    ev = m.get("eval") or {}
    out.print(f"verifier ({m['kind']}) -> {result.output_dir}: {m['steps']} steps on {m['train_examples']} examples, "
              f"loss {_fmt(m.get('loss_start'))} -> {_fmt(m.get('loss_end'))}; held-out: {ev.get('examples', 0)} "
              f"examples, AUC {_fmt(ev.get('auc'))}, accuracy {_fmt(ev.get('accuracy'))}", highlight=False)


@verifier.command("score")
@click.argument("trajectories", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model", required=True,
              help="A trained verifier directory, or (with --base-url) the served model's name.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Writes OUT/scores.jsonl (resumable) and OUT/summary.json.")
@click.option("--kind", type=click.Choice(["generative", "regressive"]), default=None,
              help="Default: what the verifier directory says (verifier.json), else generative.")
@click.option("--batch-size", default=4, show_default=True, help="Prompts per forward pass.")
@click.option("--max-length", type=int, default=None,
              help="Token budget of a prompt; default: the verifier's training max_length, else no limit.")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--base-url", default=None,
              help="Score through this OpenAI-compatible endpoint (vLLM) instead of loading weights.")
@click.option("--tokenizer", default=None, help="With --base-url: tokenizer for length budgeting.")
@click.option("--workers", default=8, show_default=True, help="With --base-url: requests in flight.")
@click.option("--top-logprobs", default=20, show_default=True, help="With --base-url: logprobs requested.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="With --base-url: environment variable holding the key.")
def score_cmd(trajectories, model, out_dir, kind, batch_size, max_length, device, base_url, tokenizer, workers,
              top_logprobs, api_key_env):
    """Score TRAJECTORIES with a verifier: P(YES) per (instance, sample).

    P(YES) = softmax over the YES / NO logits at the judgement position (regressive: the
    sigmoid of the scalar head). Prints AUC and accuracy (threshold 0.5) when the
    trajectories carry labels (`resolved`).
    """
    from swelego.errors import SwelegoError
    from verifier.score import EndpointScorer, LocalScorer, score_trajectories

    trajs, _ = _load(trajectories)
    if not trajs:
        raise SwelegoError("no trajectories to score")
    if base_url:
        if kind == "regressive":
            raise click.BadParameter("a served verifier is scored from its logprobs: generative only",
                                     param_hint="--kind")
        tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
        scorer = EndpointScorer(base_url, model, tokenizer=tok, max_length=max_length, workers=workers,
                                top_logprobs=top_logprobs, api_key_env=api_key_env)
    else:
        if not Path(model).exists():
            raise SwelegoError(f"no verifier at {model} (pass a directory, or --base-url for a served model)")
        scorer = LocalScorer(model, kind=kind, batch_size=batch_size, max_length=max_length, device=device)
    with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        bar = progress.add_task("scoring", total=len(trajs))
        summary = score_trajectories(trajs, scorer, out_dir,
                                     on_progress=lambda d, t: progress.update(bar, completed=d, total=t))
    line = (f"{summary['scored']}/{summary['trajectories']} scored ({summary['reused']} reused, "
            f"{summary['failed']} failed) -> {Path(out_dir) / 'scores.jsonl'}")
    if summary["labelled"]:
        line += (f"; {summary['labelled']} labelled ({summary['positives']} resolved): AUC {_fmt(summary['auc'])}, "
                 f"accuracy {_fmt(summary['accuracy'])}")
    out.print(line, highlight=False)
    for key, why in list(summary["failures"].items())[:5]:
        err.print(f"not scored {key}: {why}", highlight=False, markup=False)


@verifier.command("fields")
def fields_cmd():
    """List every field of a verifier training config, with its default and meaning."""
    from sft.config import describe_config
    from verifier.train import VerifierRunConfig

    table = Table(show_lines=False)
    for col in ("field", "type", "default", "meaning"):
        table.add_column(col, overflow="fold")
    for name, tp, default, help_text in describe_config(VerifierRunConfig):
        table.add_row(name, tp, default, help_text)
    out.print(table)

