"""`swelego data mine-prs | mine-git | validate`: thin click shells over data_gen.real."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_gen.real.validate import ValidateConfig
from swelego.config import command_config, config_flag, config_flags, config_options
from swelego.executor import EXECUTOR_FLAGS
from swelego.llm import ENDPOINT_FLAGS

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


def _filter_options(f):
    opts = [
        click.option("--min-files", default=1, show_default=True, help="Fewest files a change may touch."),
        click.option("--max-files", default=15, show_default=True, help="Most files a change may touch."),
        click.option("--min-statement", default=10, show_default=True,
                     help="Fewest non-blank characters of the problem statement."),
        click.option("--allow-binary", is_flag=True, help="Keep changes with binary diffs."),
        click.option("--allow-contaminated", is_flag=True,
                     help="Keep SWE-bench Verified repositories and patches that match --swebench-dataset."),
        click.option("--swebench-dataset", "swebench_datasets", multiple=True, type=click.Path(exists=True),
                     help="Local swebench dataset file (.json/.jsonl/.parquet); matching patches are skipped. "
                          "Repeatable."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _filters(min_files, max_files, min_statement, allow_binary):
    from data_gen.real.filters import FilterConfig

    if min_files > max_files:
        raise click.BadParameter(f"--min-files {min_files} is above --max-files {max_files}")
    return FilterConfig(min_files=min_files, max_files=max_files, min_statement_chars=min_statement,
                        allow_binary=allow_binary)


def _print_mining(summary: dict, out_dir: Path) -> None:
    from data_gen.real.mining import STATUSES

    t = Table(title="mined changes by repository")
    t.add_column("repository")
    for s in STATUSES:
        t.add_column(s.replace("_", " "), justify="right")
    for repo, counts in summary["repos"].items():
        t.add_row(escape(repo), *[str(counts[s]) for s in STATUSES])
    out.print(t)
    if summary["reasons"]:
        out.print("filtered: " + ", ".join(f"{k} {v}" for k, v in summary["reasons"].items()))
    for repo, why in summary["skipped"].items():
        out.print(f"skipped {escape(repo)}: {escape(why)}")
    for repo, n in summary.get("merges_skipped", {}).items():
        out.print(f"{escape(repo)}: {n} merge commit(s) not examined (--merges to examine them)")
    if gh := summary.get("github"):
        out.print(f"GitHub: {gh['requests']} requests, {gh['cache_hits']} answered from the cache, "
                  f"{len(gh['rate_limit_waits'])} rate-limit wait(s)")
    out.print(f"{summary['candidates']} candidate(s) in {out_dir}/candidates.jsonl")


def _run_mining(fn, items: list[str], out_dir: str, label: str, **kw) -> None:
    from swelego.errors import SwelegoError

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        bars: dict[str, int] = {}

        def on_progress(repo: str, done: int, total: int | None = None) -> None:
            if repo not in bars:
                bars[repo] = progress.add_task(f"{repo} {label}", total=total)
            progress.update(bars[repo], completed=done, total=total)

        def log(msg: str) -> None:
            err.print(escape(msg), highlight=False)

        try:
            summary = fn(items, out_dir, log=log, progress=on_progress, **kw)
        except SwelegoError as e:
            raise click.ClickException(str(e).splitlines()[0]) from None
    _print_mining(summary, Path(out_dir))
    if len(summary["errors"]) == len(items):  # every source failed
        sys.exit(1)


@click.command("mine-prs")
@click.argument("repos", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--since", default=None, help="Only PRs created on or after this date (YYYY-MM-DD).")
@click.option("--max-prs", default=None, type=int, help="Merged PRs to examine per repository (newest first).")
@click.option("--api-url", default="https://api.github.com", show_default=True,
              help="GitHub REST root (Enterprise: https://HOST/api/v3).")
@click.option("--linked-issues/--no-linked-issues", default=True, show_default=True,
              help="Ask GraphQL for linked issues when the text names none (needs GITHUB_TOKEN).")
@click.option("--hints/--no-hints", default=True, show_default=True,
              help="Collect issue comments written before the PR as hints_text.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Response cache (default: ~/.cache/swelego/github).")
@click.option("--refresh", is_flag=True, help="Ignore cached responses.")
@_filter_options
def mine_prs_cmd(repos, out_dir, since, max_prs, api_url, linked_issues, hints, cache_dir, refresh, min_files,
                 max_files, min_statement, allow_binary, allow_contaminated, swebench_datasets):
    """Mine merged pull requests of OWNER/REPO that resolve an issue into task candidates.

    The token comes from GITHUB_TOKEN. Writes OUT/candidates.jsonl (input of `swelego data
    validate`), OUT/mined.jsonl (every PR examined and what became of it) and OUT/summary.json.
    Responses are cached on disk, so rerunning the command repeats no request.
    """
    from data_gen.real.mine_prs import mine_prs

    _run_mining(mine_prs, list(repos), out_dir, "PRs", since=since, max_prs=max_prs, api_url=api_url,
                linked_issues=linked_issues, hints=hints, cache=cache_dir, refresh=refresh,
                filters=_filters(min_files, max_files, min_statement, allow_binary),
                allow_contaminated=allow_contaminated, swebench_datasets=tuple(swebench_datasets))


@click.command("mine-git")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--rev-range", default=None, help="Commits to examine, e.g. v1.0..main (default: all of HEAD).")
@click.option("--max-commits", default=None, type=int, help="Examine only the newest N commits of the range.")
@click.option("--issues", default=None, type=click.Path(exists=True),
              help="Issue texts: a directory of N.md/N.txt/N.json, or a JSON/JSONL file of GitHub issues; "
                   "a commit that names one gets its text as the problem statement.")
@click.option("--merges", is_flag=True,
              help="Examine merge commits too (first-parent history: a merged branch is its merge commit); "
                   "by default merges are skipped and every other commit is examined.")
@_filter_options
def mine_git_cmd(sources, out_dir, rev_range, max_commits, issues, merges, min_files, max_files, min_statement,
                 allow_binary, allow_contaminated, swebench_datasets):
    """Mine fix commits from the history of git repositories (PATH or URL) into task candidates.

    Keeps non-merge commits (merges too with --merges) whose message reads like a fix or names
    an issue and that touch both tests and code. The commit message describes the fix, so it
    is only metadata: the problem statement is the referenced issue's text (--issues) or is
    written by `data validate` from the failing tests (LLM or template, leak-checked). Writes
    OUT/candidates.jsonl, OUT/mined.jsonl and OUT/summary.json; rerunning skips commits
    already examined.
    """
    from data_gen.real.mine_git import mine_git

    _run_mining(mine_git, list(sources), out_dir, "commits", rev_range=rev_range, max_commits=max_commits,
                issues=issues, merges=merges, filters=_filters(min_files, max_files, min_statement, allow_binary),
                allow_contaminated=allow_contaminated, swebench_datasets=tuple(swebench_datasets))


V = ValidateConfig  # the config of `data validate`; its flags below set its fields


@click.command("validate")
@click.argument("candidates", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@config_flag(V, "namespace", "--namespace")
@config_flag(V, "workers", "--workers")
@config_flag(V, "test_timeout", "--test-timeout")
@config_flag(V, "baseline_runs", "--baseline-runs")
@config_flag(V, "confirm_runs", "--confirm-runs")
@config_flag(V, "repair_attempts", "--repair-attempts")
@config_flag(V, "verify", "--verify/--no-verify")
@config_flag(V, "max_tasks", "--max-tasks")
@config_flags(V, EXECUTOR_FLAGS)
@config_flags(V, ENDPOINT_FLAGS)
@config_flag(V, "allow_contaminated", "--allow-contaminated", is_flag=True, default=None)
@config_flag(V, "swebench_datasets", "--swebench-dataset", multiple=True, type=click.Path(exists=True),
             default=())
@config_options(V)
def validate_cmd(candidates, out_dir):
    """Turn mined CANDIDATES (a candidates.jsonl or a mining output directory) into validated tasks.

    Builds or reuses an environment per dependency spec (repairing it with the LLM when
    configured), runs the tests with and without the code patch (test patch applied both
    times), keeps candidates with FAIL_TO_PASS tests, and writes OUT/dataset, OUT/tasks.jsonl,
    OUT/records/ (one record per candidate), OUT/envs/ (every environment attempt) and
    OUT/summary.json. Rerunning resumes. Every field of the config (`--fields`) can be set in
    -c CONFIG.yaml or with --set.
    """
    from data_gen.real.filters import load_candidates
    from data_gen.real.validate import validate
    from swelego.errors import SwelegoError

    cfg = command_config(V, essentials={"out": out_dir})
    if cfg.repair_attempts < 1:
        raise click.BadParameter("must be at least 1", param_hint="--repair-attempts")
    options = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "out"}
    bad_rows: list[str] = []
    try:
        cands = load_candidates(candidates, problems=bad_rows)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise click.ClickException(str(e)) from None
    for line in bad_rows:
        err.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
    if cfg.max_tasks is not None:
        cands = cands[:cfg.max_tasks]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        bar = progress.add_task("candidates", total=len(cands))

        def log(msg: str) -> None:
            err.print(escape(msg), highlight=False)

        try:
            summary = validate(cands, out_dir, progress=lambda _id, n: progress.advance(bar, n), log=log,
                               bad_rows=bad_rows, **options)
        except SwelegoError as e:
            raise click.ClickException(str(e).splitlines()[0]) from None
    _print_validation(summary, Path(out_dir))
    if cands and not summary["kept_rows"] and summary["errors"]:
        sys.exit(1)


def _print_validation(summary: dict, out_dir: Path) -> None:
    from data_gen.real.validate import FUNNEL

    t = Table(title="validation funnel")
    for stage in FUNNEL:
        t.add_column(stage.replace("_", " "), justify="right")
    t.add_row(*[str(summary["funnel"][s]) for s in FUNNEL])
    out.print(t)
    for iid, why in sorted(summary["failures"].items()):
        out.print(f"[red]✗[/] {escape(iid)}: {escape(why)}", highlight=False)
    e = summary["envs"]
    if e["tried"]:
        out.print(f"environments: {e['built']}/{e['tried']} built ({e['built_after_repair']} after repair), "
                  f"success rate {100 * e['success_rate']:.0f}%")
    if summary.get("bad_rows"):
        out.print(f"skipped {len(summary['bad_rows'])} malformed candidate line(s) (listed above and in "
                  f"{out_dir}/summary.json)", highlight=False)
    if not summary["funnel"]["candidates"]:
        out.print("no valid candidates to validate: wrote an empty dataset and its summary", highlight=False)
    out.print(f"{summary['kept_rows']} task(s) in {out_dir}/dataset and {out_dir}/tasks.jsonl")
