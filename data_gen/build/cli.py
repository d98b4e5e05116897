"""`swelego data build CONFIG.yaml`: the command over data_gen.build's config, stages and Hub publishing."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from data_gen.build.config import BuildConfig, load_build_config
from data_gen.build.display import print_summary
from data_gen.build.hub import check_hub_access, push_to_hub
from data_gen.build.stages import STAGE_NAMES, run_build
from swelego.config import fields_option, parse_sets


@click.command("build")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output directory (default: the config's `out`).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Run repositories and episodes as local threads or Ray tasks (default: the config's).")
@click.option("--only", "only", multiple=True, type=click.Choice(STAGE_NAMES),
              help="Run only this stage (repeatable); the others are left as they are.")
@click.option("--from", "start", default=None, type=click.Choice(STAGE_NAMES),
              help="Start at this stage: earlier stages are not checked or rerun, their outputs are used.")
@click.option("--force", is_flag=True, help="Redo the selected stages from scratch, even when complete.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set teacher.samples=2 (YAML value; repeatable).")
@click.option("--push-to-hub", "push", default=None, metavar="REPO",
              help="Publish the dataset to the Hugging Face Hub as REPO (NAME or OWNER/NAME) after the build.")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repository private.")
@fields_option(BuildConfig)
def build_cmd(config, out_dir, executor, only, start, force, overrides, push, private):
    """Build a dataset from CONFIG (YAML): synthetic and real tasks, teacher rollouts, filtering,
    SFT exports and a dataset card, stage by stage.

    \b
    Stages: synth, real, tasks, rollout, filter, export, card. A stage is skipped when its
    recorded outputs are intact and were made from the same inputs and config; a killed build
    resumes mid-stage; a config change reruns the stages it affects and those whose inputs
    then change. Writes OUT/tasks, OUT/trajectories, OUT/sft, OUT/logs, OUT/README.md (the
    card), OUT/card.json and OUT/state. See docs/data-build.md.
    """

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    out_console = Console(width=None if sys.stdout.isatty() else 150)
    if config is None:
        raise click.UsageError("missing CONFIG (a YAML file; see configs/data/)")
    extra: dict[str, Any] = parse_sets(overrides)
    if out_dir:
        extra["out"] = out_dir
    if executor:
        extra["executor"] = executor
    cfg = load_build_config(config, extra)
    if push:
        user = check_hub_access(push)
        console.print(f"will publish to the Hub as {escape(user)}")
    report = run_build(cfg, only=list(only) or None, start=start, force=force, console=console)
    print_summary(out_console, report)
    out = report.out
    failed = [n for n, st in report.states.items() if n in report.actions and not st.complete]
    out_console.print(f"tasks:        {out / 'tasks'} (dataset/ and tasks.jsonl)")
    out_console.print(f"trajectories: {out / 'trajectories'} (trajectories.jsonl, kept/)")
    out_console.print(f"sft:          {out / 'sft'}")
    out_console.print(f"dataset card: {out / 'README.md'}")
    if failed:
        console.print(f"[yellow]incomplete: {', '.join(failed)} had failed items (see logs/build.log); "
                      "rerun the same command to retry them[/]")
    if push:
        url = push_to_hub(out, push, private=private)
        out_console.print(f"published:    {url}")
