"""`swelego data attack`: try every adversarial patch family on a dataset's rows."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


@click.command("attack")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--families", default="", help="Comma list of families (default: all; see swelego.adversarial).")
@click.option("--limit", default=None, type=int, help="Attack only the first N rows.")
@click.option("--official/--no-official", default=True, show_default=True,
              help="Also grade every attack with the unmodified swebench harness.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Where the official harness writes its logs (default: a temporary directory).")
def attack_cmd(dataset, families, limit, official, workdir):
    """Grade adversarial patches (conftest hooks, edited or deleted tests, plugins in the pytest
    config, exits and forged PASSED lines in code under test, hooks through .git/config) on
    every row of DATASET with our grader and the official harness, next to the gold patch.

    Prints family x grader -> rows graded resolved; exits 1 when an attack is graded resolved
    or a gold patch is not. Rows' images must exist locally."""
    from swelego.adversarial import FAMILIES, report_table, run_attacks
    from swelego.schema import load_dataset

    chosen = tuple(f.strip() for f in families.split(",") if f.strip()) or FAMILIES
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise click.BadParameter(f"unknown family {', '.join(unknown)} (choose from {', '.join(FAMILIES)})",
                                 param_hint="--families")
    problems: list[str] = []
    tasks = load_dataset(dataset, problems=problems)[:limit]
    for p in problems:
        err.print(p, highlight=False, markup=False)
    if not tasks:
        err.print(f"{dataset}: no usable rows")
        sys.exit(1)
    with Progress(TextColumn("[bold]attacks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[note]}"), console=err, transient=True) as progress:
        bar = progress.add_task("attacks", total=len(tasks) * (len(chosen) + 1), note="")

        def step(instance_id: str, family: str, resolved: bool) -> None:
            progress.update(bar, advance=1, note=f"{instance_id} {family}" + (" RESOLVED" if resolved else ""))

        rep = run_attacks(tasks, families=chosen, official=official, workdir=Path(workdir) if workdir else None,
                          progress=step)
    out.print(report_table(rep))
    for f in rep.failures:
        err.print(f"could not build: {f.splitlines()[0]}", highlight=False, markup=False)
    broken = rep.broken()
    if broken:
        err.print("[red]graded resolved without a fix, or gold not resolved:[/] " + "; ".join(broken))
        for key, ids in sorted(rep.resolved_by.items()):
            if not key.startswith("gold/"):
                err.print(f"  {key}: {', '.join(ids[:10])}", highlight=False, markup=False)
        sys.exit(1)
    out.print(f"no attack was graded resolved; gold resolved {rep.ours['gold']}/{rep.rows}"
              + (f" (official {rep.official['gold']}/{rep.rows})" if official else ""))
