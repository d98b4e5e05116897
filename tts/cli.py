"""`swelego tts`: the command group of this room (`score`; `run` samples and scores k rollouts)."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swelego.agent.rollout import rollout_options
from swelego.config import command_config, config_flag, config_options
from tts.run import TTSRunConfig

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


@click.group()
def tts():
    """Test-time scaling: sample k rollouts, pick one with the verifier, score with swebench."""


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in value.split(",") if x.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}", param_hint="--k") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter("k values must be positive integers", param_hint="--k")
    return ks


def _pct(st: dict | None) -> str:
    if not st or st.get("value") is None:
        return "n/a"
    lo, hi = st["ci"]
    return f"{100 * st['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


@tts.command("score")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--k", "ks", default="1,2,4,8,16", show_default=True, help="Comma-separated k of TTS@k.")
@click.option("--grade", type=click.Choice(["selected", "all"]), default="selected", show_default=True,
              help="Grade with the official harness each instance's selected patch (plus unlabelled samples), "
                   "or every distinct patch.")
@click.option("--model-name", default=None, help="model_name_or_path of the predictions (default: the samples').")
@click.option("--max-workers", default=1, show_default=True, help="swebench run_evaluation workers.")
@click.option("--timeout", default=1800, show_default=True, help="Seconds per instance evaluation.")
@click.option("--bootstrap", default=1000, show_default=True, help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", default=0, show_default=True)
@click.option("--verifier", default=None, type=click.Path(exists=True),
              help="Check the scored instances against this verifier's training instances (its directory, or a "
                   "file of ids); default: the verifier recorded in RUN_DIR/tts_run.json.")
def score_cmd(run_dir, ks, grade, model_name, max_workers, timeout, bootstrap, seed, verifier):
    """Select, grade and report the samples in RUN_DIR.

    RUN_DIR holds tasks.jsonl (swebench rows), samples.jsonl (one Trajectory per line,
    sampling.sample = index) and scores.jsonl ({instance_id, sample, score}). Writes
    predictions.jsonl (the top-scored sample per instance, in swebench's format), grades
    with the official harness (gradings.jsonl caches them: a rerun starts no container for a
    patch already graded) and reports Pass@1, TTS@k, oracle Pass@k, majority vote, random
    pick and verifier AUC (pooled and within instance) and ECE with 95% bootstrap intervals in
    report.md, report.json and tts_at_k.png. Every task counts: one without a usable sample is
    unresolved. --grade all makes every label official. Warns when the verifier was trained on
    scored instances. Bad input is counted and reported, never fatal.
    """
    from tts.score import ScoreConfig, tts_score

    cfg = ScoreConfig(dir=run_dir, ks=_ks(ks), grade=grade, model_name=model_name, max_workers=max_workers,
                      timeout=timeout, bootstrap=bootstrap, seed=seed, verifier=verifier)
    result = tts_score(cfg, log=lambda m: err.print(m, highlight=False, markup=False, soft_wrap=True))
    m = result["metrics"]
    if result["demo"]:
        out.print("[bold yellow]pipeline demonstration: policy=oracle samples, not a model result[/]")
    if m:
        table = Table(title=f"TTS@k over {m['instances']} instances (resolved %, 95% CI)")
        for col in ("k", "TTS@k", "oracle Pass@k", "majority", "random"):
            table.add_column(col, justify="right")
        for k in result["ks"]:
            s = str(k)
            table.add_row(s, _pct(m["tts"][s]), _pct(m["oracle"][s]), _pct(m["majority"][s]), _pct(m["random"][s]))
        out.print(table)
        wauc = m["within_instance_auc"]
        out.print(f"Pass@1 {_pct(m['pass@1'])}; verifier AUC pooled {_pct(m['auc'])}, within instance "
                  f"{_pct(wauc)} ({wauc['instances']} instances with both outcomes); ECE {_pct(m['ece'])}",
                  highlight=False)
        out.print("labels in these metrics: " + (", ".join(f"{v} {k}" for k, v in sorted(
            result["metric_labels"].items())) or "none"), highlight=False)
    if result["unusable_instances"]:
        out.print(f"{len(result['unusable_instances'])} instance(s) without a usable sample, counted unresolved: "
                  + ", ".join(list(result["unusable_instances"])[:10]), highlight=False)
    vc = result["verifier_check"]
    if vc["status"] == "overlap":
        out.print(f"[bold red]WARNING: the verifier was trained on {len(vc['overlap'])} of the scored instances; "
                  "these numbers are not held-out[/]", highlight=False)
    elif vc["status"] == "unknown":
        out.print(f"[yellow]verifier training instances unknown: {escape(vc['why'])}[/]", highlight=False)
    sel, g, inp = result["selected"], result["grading"], result["input"]
    out.print(f"selected patches (official harness): {sel['resolved']} resolved of {sel['graded']} graded "
              f"({sel['instances']} instances); gradings: {g['graded_now']} new, {g['reused']} reused"
              + (f", {len(g['failed_runs'])} runs failed" if g["failed_runs"] else ""), highlight=False)
    problems = {k: v for k, v in inp.items() if isinstance(v, int) and v and k not in ("task_lines", "sample_lines",
                                                                                    "score_lines")}
    if problems:
        out.print("input problems: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in problems.items()),
                  highlight=False)
    out.print(f"report: {run_dir}/report.md, report.json, tts_at_k.png", highlight=False)
    if g["failed_runs"]:
        for run_id, why in g["failed_runs"].items():
            err.print(f"[red]harness run {run_id} failed[/]: {why}", highlight=False)
        sys.exit(1)  # the selected patches are not (all) graded: the report is incomplete


@tts.command("run")
@config_flag(TTSRunConfig, "dataset", "--dataset")
@config_flag(TTSRunConfig, "split", "--split")
@config_flag(TTSRunConfig, "instance_ids", "--instance-ids", type=str)
@config_flag(TTSRunConfig, "limit", "--limit")
@config_flag(TTSRunConfig, "exclude_instances", "--exclude-instances", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@rollout_options(TTSRunConfig, prefix="rollout.")
@config_flag(TTSRunConfig, "rollout.memory", "--memory")
@config_flag(TTSRunConfig, "rollout.cpus", "--cpus")
@config_flag(TTSRunConfig, "verifier", "--verifier")
@config_flag(TTSRunConfig, "verifier_base_url", "--verifier-base-url")
@config_flag(TTSRunConfig, "verifier_tokenizer", "--verifier-tokenizer")
@config_flag(TTSRunConfig, "batch_size", "--batch-size")
@config_flag(TTSRunConfig, "max_length", "--max-length")
@config_options(TTSRunConfig)
def run_cmd(out_dir):
    """Sample k rollouts per instance and score each with the verifier.

    Writes OUT/tasks.jsonl, OUT/samples.jsonl (one trajectory per sample, graded in its
    sandbox) and OUT/scores.jsonl (P(YES) per sample); a rerun skips what is done. Then run
    `swelego tts score OUT` to select, grade with the official harness and report. Every field
    of the config (`--fields`) can be set in -c CONFIG.yaml or with --set.
    """
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from swelego.agent.rollout import progress_hooks
    from tts.run import tts_run

    cfg = command_config(TTSRunConfig, essentials={"rollout.out": str(Path(out_dir).resolve())})
    if not cfg.dataset:
        raise click.UsageError("Missing option '--dataset' (or `dataset` in the config file).")
    if not cfg.verifier:
        raise click.UsageError("Missing option '--verifier' (or `verifier` in the config file).")
    rcfg, dataset, exclude_instances = cfg.rollout, cfg.dataset, cfg.exclude_instances
    rcfg.validate()
    policy, model, samples = rcfg.policy, rcfg.model, rcfg.samples
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[note]}"), console=err) as progress:
        episodes = progress.add_task("samples", total=None, note="")
        scoring = progress.add_task("verifier", total=None, note="", visible=False)

        on_start, on_result = progress_hooks(progress, episodes, err)

        def on_score(done, total):
            progress.update(scoring, completed=done, total=total, visible=True)

        result = tts_run(cfg, on_rollout_start=on_start, on_rollout_result=on_result, on_score_progress=on_score,
                         log=lambda m: err.print(f"[red]✗[/] {escape(m)}", highlight=False, soft_wrap=True))
    r, s = result["rollout"], result["scores"]
    label = "policy=oracle (a pipeline demonstration, not model output)" if policy == "oracle" else f"model {model}"
    if policy == "hf":
        from swelego.agent.hf_policy import describe_model

        label = f"policy=hf, model {describe_model(rcfg.model)} generating locally"
    out.print(f"{result['instances']} instances × {samples} samples, {label}: {r['trajectories']} samples "
              f"({r['resolved']} resolved in their sandboxes, {r['failed']} failed to run); "
              f"{s['scored']} scored ({s['reused']} reused, {s['failed']} failed)", highlight=False)
    if result["bad_rows"]:
        out.print(f"skipped {len(result['bad_rows'])} malformed row(s) of {dataset} (listed above)", highlight=False)
    if exclude_instances:
        out.print(f"excluded {result['excluded']} instance(s) named by {exclude_instances}", highlight=False)
    out.print(f"next: swelego tts score {out_dir}", highlight=False)
