"""`swelego data`: build datasets of tasks and trajectories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_gen.synth.pipeline import SynthConfig
from swelego.agent.rollout import RolloutConfig, rollout_options
from swelego.config import command_config, config_flag, config_flags, config_options
from swelego.executor import EXECUTOR_FLAGS
from swelego.llm import ENDPOINT_FLAGS

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


@click.group()
def data():
    """Build datasets: tasks from real and synthetic bugs, validated in sandboxes, and agent trajectories."""


S = SynthConfig  # the config of `data synth`; its flags below set its fields


@data.command("synth")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@config_flag(S, "strategies", "--strategies", type=str)
@config_flag(S, "max_candidates", "--max-candidates")
@config_flag(S, "workers", "--workers")
@config_flags(S, EXECUTOR_FLAGS)
@config_flag(S, "seed", "--seed")
@config_flag(S, "modifiers", "--modifiers", type=str)
@config_flag(S, "validate.test_selection", "--test-selection/--no-test-selection")
@config_flag(S, "validate.test_timeout", "--test-timeout")
@config_flag(S, "validate.p2p", "--p2p", type=click.Choice(["infer", "full"]))
@config_flag(S, "validate.audit_fraction", "--audit-fraction", type=click.FloatRange(0.1, 1.0))
@config_flag(S, "base", "--base")
@config_flag(S, "namespace", "--namespace")
@config_flags(S, ENDPOINT_FLAGS)
@config_options(S)
def synth(sources, out_dir):
    """Generate synthetic tasks from SOURCE repositories and validate them.

    SOURCE is `pypi:NAME==VERSION`, a git URL[@commit] or a local path[@rev]. Writes
    OUT/dataset (HF save_to_disk), OUT/tasks.jsonl, OUT/candidates/<repo>-<version>.jsonl (one record
    per candidate) and OUT/funnel.json. Rerunning the same command resumes. Every field of the
    config (`--fields`) can be set in -c CONFIG.yaml or with --set.
    """
    from data_gen.synth.pipeline import STRATEGIES, synthesize
    from swelego.schema import save_dataset

    cfg = command_config(S, essentials={"out": str(Path(out_dir).resolve())})
    unknown = [s for s in cfg.strategies if s not in STRATEGIES]
    if unknown:
        raise click.BadParameter(f"unknown strategy {', '.join(unknown)} (choose from {', '.join(STRATEGIES)})",
                                 param_hint="--strategies")
    if cfg.llm() is None and set(cfg.strategies) & {"llm_rewrite", "llm_modify"}:
        err.print("notice: llm_rewrite / llm_modify are skipped: set --llm-base-url and --llm-model to use them")
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        bars: dict[str, int] = {}
        overall = progress.add_task("repositories", total=len(sources))

        def on_progress(repo: str, done: int, total: int) -> None:
            if repo not in bars:
                bars[repo] = progress.add_task(f"{repo} candidates", total=total)
            progress.update(bars[repo], completed=done, total=total)

        def on_source(source: str, res: dict) -> None:
            progress.advance(overall)
            if res.get("error"):
                err.print(f"[red]✗[/] {escape(source)}: {escape(res['error'])}", highlight=False)
            for n in res["report"].notices if "report" in res else ():
                err.print(f"notice: {escape(n)}")

        res = synthesize(list(sources), cfg, progress=on_progress, on_source=on_source)
    import datasets

    datasets.disable_progress_bars()
    save_dataset(res.rows, cfg.out)
    _print_funnel(res.summary, Path(cfg.out))
    if res.errors and not res.reports:
        sys.exit(1)


def _print_funnel(summary: dict, out_path: Path) -> None:
    from data_gen.synth.pipeline import FUNNEL

    for group in ("strategy", "modifier"):
        rows = summary["funnel"][group]
        if not rows:
            continue
        t = Table(title=f"funnel by {group}")
        t.add_column(group)
        for stage in FUNNEL:
            t.add_column(stage, justify="right")
        t.add_column("yield", justify="right")
        for key in sorted(rows):
            r = rows[key]
            t.add_row(key, *[str(r[s]) for s in FUNNEL], f"{100 * r['kept'] / max(1, r['candidates']):.0f}%")
        total = summary["funnel"]["all"].get("all", dict.fromkeys(FUNNEL, 0))
        t.add_row("[bold]all", *[f"[bold]{total[s]}" for s in FUNNEL],
                  f"[bold]{100 * total['kept'] / max(1, total['candidates']):.0f}%")
        out.print(t)
    for rep in summary["repos"]:
        b = rep["baseline"]
        out.print(f"{rep['repo']}: {b.get('passing', 0)} stable passing tests, {len(b.get('flaky', []))} flaky "
                  f"(quarantined), suite {b.get('seconds', 0)}s; {rep['seconds']:.0f}s in all")
    out.print(f"{summary['kept_rows']} task(s) in {out_path}/dataset and {out_path}/tasks.jsonl")


@data.command("rollout")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@rollout_options(RolloutConfig, samples_flag="--samples-per-task")
@config_flag(RolloutConfig, "memory", "--memory")
@config_flag(RolloutConfig, "cpus", "--cpus")
@config_options(RolloutConfig)
def rollout_cmd(dataset, out_dir):
    """Run a policy on every task of DATASET, k samples each, one sandbox per episode.

    DATASET is a task dataset (directory from `data synth`/`data validate`, or a JSONL of
    swebench rows). Writes OUT/trajectories.jsonl (one trajectory per line), OUT/errors.jsonl
    and OUT/summary.json. Rerunning the same command skips finished samples. Every field of
    the config (`--fields`) can be set in -c CONFIG.yaml or with --set.
    """
    from swelego.agent.rollout import load_rollout_tasks, policy_label, progress_hooks, rollout

    cfg = command_config(RolloutConfig, essentials={"out": str(Path(out_dir).resolve())})
    cfg.validate()
    tasks, bad_rows = load_rollout_tasks(dataset, log=lambda m: err.print(f"[red]✗[/] {escape(m)}",
                                                                          highlight=False, soft_wrap=True))
    if not tasks:
        raise click.UsageError(f"{dataset} holds no tasks"
                               + (f" ({len(bad_rows)} malformed row(s))" if bad_rows else ""))
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[note]}"), console=err, transient=False) as progress:
        bar = progress.add_task("episodes", total=None, note="")
        on_start, on_result = progress_hooks(progress, bar, err)
        summary = rollout(tasks, cfg, on_result=on_result, on_start=on_start, bad_rows=bad_rows)
    from swelego.agent.rollout import load_trajectories

    t = Table(title=f"rollout ({policy_label(load_trajectories(cfg.out))})")
    for col in ("tasks", "samples", "ran now", "failed", "trajectories", "resolved", "semi-resolved",
                "mean turns", "seconds"):
        t.add_column(col, justify="right")
    n = max(1, summary.trajectories)
    t.add_row(str(summary.tasks), str(summary.planned), str(summary.ran), str(summary.failed),
              str(summary.trajectories), f"{summary.resolved} ({100 * summary.resolved / n:.0f}%)",
              f"{summary.semi_resolved} ({100 * summary.semi_resolved / n:.0f}%)", f"{summary.mean_turns:.1f}",
              f"{summary.seconds:.0f}")
    out.print(t)
    out.print("exit reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.exit_reasons.items())))
    if cfg.policy == "hf":
        from swelego.agent.hf_policy import describe_model

        out.print(f"policy=hf: {describe_model(cfg.model)}; resolved {summary.resolved}/{summary.trajectories} "
                  "is this model's own result", highlight=False)
    if bad_rows:
        out.print(f"skipped {len(bad_rows)} malformed row(s) of {escape(dataset)} "
                  "(listed above and in summary.json)", highlight=False)
    out.print(f"trajectories in {cfg.out}/trajectories.jsonl")
    if summary.failed and not summary.trajectories:
        sys.exit(1)


@data.command("filter")
@click.argument("trajectories", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--keep", default="resolved", show_default=True,
              help="Comma list of outcomes to keep: resolved, semi_resolved, unresolved.")
@click.option("--max-turns", default=None, type=int, help="Drop episodes with more assistant turns.")
@click.option("--max-tokens", default=None, type=int, help="Drop episodes longer than this (characters / 4).")
@click.option("--allow-git-mining", is_flag=True, help="Keep episodes that searched git history for the fix.")
@click.option("--allow-test-tampering", is_flag=True,
              help="Keep episodes whose patch touches tests or test infrastructure (conftest.py, pytest config, ...).")
def filter_cmd(trajectories, out_dir, keep, max_turns, max_tokens, allow_git_mining, allow_test_tampering):
    """Keep the trajectories worth training on and count why the others were dropped.

    TRAJECTORIES is a JSONL file or a rollout directory. Writes OUT/kept.jsonl, one file per
    kept outcome (resolved.jsonl, semi_resolved.jsonl), OUT/dropped.jsonl (with the reason) and
    OUT/report.json.
    """
    from swelego.agent.rollout import load_trajectories
    from swelego.trajectories.filter import OUTCOMES, FilterConfig, filter_trajectories, write_filtered

    chosen = tuple(k.strip() for k in keep.split(",") if k.strip())
    bad = [k for k in chosen if k not in OUTCOMES]
    if bad or not chosen:
        raise click.BadParameter(f"unknown outcome {', '.join(bad)} (choose from {', '.join(OUTCOMES)})",
                                 param_hint="--keep")
    cfg = FilterConfig(keep=chosen, max_turns=max_turns, max_tokens=max_tokens,
                       drop_git_mining=not allow_git_mining, drop_test_tampering=not allow_test_tampering)
    res = filter_trajectories(load_trajectories(trajectories), cfg)
    report = write_filtered(res, out_dir, cfg)
    t = Table(title="filter")
    t.add_column("")
    t.add_column("trajectories", justify="right")
    t.add_row("input", str(report["input"]))
    for o, n in report["kept_by_outcome"].items():
        if o in chosen:
            t.add_row(f"kept: {o}", str(n))
    for reason, n in report["dropped"].items():
        t.add_row(f"dropped: {reason}", str(n))
    t.add_row("[bold]kept", f"[bold]{report['kept']}")
    out.print(t)
    out.print(f"kept trajectories in {Path(out_dir)}/kept.jsonl")


@data.command("audit")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON line per row on stdout.")
def audit(dataset, as_json):
    """Prove for every row of DATASET that nothing beyond its base commit is in its image's git.

    DATASET: any swebench-style rows (JSONL, JSON, parquet, a save_to_disk folder, or a
    synth/validate output folder) with at least instance_id, image, base_commit and patch;
    other fields are ignored. Each row's image (which must exist locally) is checked from
    inside a sandbox: the object store (loose, packed, alternates) must hold exactly the
    objects reachable from base_commit; no other ref (branch, tag, stash, note, replace ref,
    remote), FETCH_HEAD/ORIG_HEAD or reflog may remain; the fixed files and the lines the fix
    adds must be nowhere in git. Prints one line per row (ok, LEAK with what leaked, image
    missing, bad row naming file:line) and a summary. Exits 1 when a row leaks or cannot be
    audited.
    """
    from collections import Counter

    from data_gen.sanitize import audit_dataset
    from swelego.sandbox import docker_client

    client = docker_client()
    counts: Counter[str] = Counter()
    style = {"ok": "[green]ok[/]", "leak": "[red]LEAK[/]", "image_missing": "[yellow]image missing[/]",
             "bad_row": "[yellow]bad row[/]", "error": "[red]audit failed[/]"}
    with Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as p:
        bar = p.add_task("audit", total=None)
        for v in audit_dataset(dataset, client=client):
            counts[v.status] += 1
            if as_json:
                print(json.dumps(v.to_json()), flush=True)
            else:
                what = "; ".join(v.problems)
                head = " ".join(x for x in (style[v.status], escape(v.where), escape(v.instance_id)) if x)
                out.print(head + (f": {escape(what)}" if what else ""), highlight=False, soft_wrap=True)
            p.advance(bar)
    total = sum(counts.values())
    parts = [f"{counts[k]} {label}" for k, label in (("leak", "leak(s)"), ("error", "audit failure(s)"),
                                                     ("image_missing", "image(s) missing"), ("bad_row", "bad row(s)"))
             if counts[k]]
    failed = counts["leak"] + counts["error"]
    msg = f"{counts['ok']}/{total} rows clean" + (f": {', '.join(parts)}" if parts else "")
    (err if as_json else out).print(f"[red]{msg}[/]" if failed else msg, highlight=False)
    if failed:
        sys.exit(1)


from data_gen.convert import export_cmd, import_cmd  # noqa: E402

data.add_command(export_cmd)
data.add_command(import_cmd)

from data_gen.real.cli import mine_git_cmd, mine_prs_cmd, validate_cmd  # noqa: E402

data.add_command(mine_prs_cmd)
data.add_command(mine_git_cmd)
data.add_command(validate_cmd)

from data_gen.build import build_cmd  # noqa: E402

data.add_command(build_cmd)

from data_gen.attack_cli import attack_cmd  # noqa: E402

data.add_command(attack_cmd)
