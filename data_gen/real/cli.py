"""`swelego data mine-prs | mine-git | validate`: thin click shells over data_gen.real."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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


@click.command("validate")
@click.argument("candidates", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--namespace", default="swelego", show_default=True, help="Image name prefix.")
@click.option("--workers", default=1, show_default=True, help="Candidates of one environment validated in parallel.")
@click.option("--test-timeout", default=600.0, show_default=True, help="Seconds for one test-suite run.")
@click.option("--baseline-runs", default=3, show_default=True,
              help="Suite runs on the fixed tree; a test whose status changes is quarantined as flaky.")
@click.option("--confirm-runs", default=2, show_default=True,
              help="Extra runs of FAIL_TO_PASS on the unfixed tree; one that passes is flaky.")
@click.option("--repair-attempts", default=3, show_default=True,
              help="Environment attempts per failure, the first included (1 = no repair).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Grade each row with swebench (gold resolves it, an empty patch does not).")
@click.option("--max-tasks", default=None, type=int, help="Validate only the first N candidates.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster to join (e.g. auto); default: start a local one.")
@click.option("--llm-base-url", default=None, help="OpenAI-compatible endpoint for environment repair and issue text.")
@click.option("--llm-model", default=None, help="Model name at that endpoint.")
@click.option("--llm-key-env", default="OPENAI_API_KEY", show_default=True, help="Environment variable with the API key.")
@click.option("--allow-contaminated", is_flag=True,
              help="Keep SWE-bench Verified repositories and patches that match --swebench-dataset.")
@click.option("--swebench-dataset", "swebench_datasets", multiple=True, type=click.Path(exists=True),
              help="Local swebench dataset file; candidates whose patch matches one of its tasks are skipped.")
def validate_cmd(candidates, out_dir, namespace, workers, test_timeout, baseline_runs, confirm_runs, repair_attempts,
                 verify, max_tasks, executor, ray_address, llm_base_url, llm_model, llm_key_env, allow_contaminated,
                 swebench_datasets):
    """Turn mined CANDIDATES (a candidates.jsonl or a mining output directory) into validated tasks.

    Builds or reuses an environment per dependency spec (repairing it with the LLM when
    configured), runs the tests with and without the code patch (test patch applied both
    times), keeps candidates with FAIL_TO_PASS tests, and writes OUT/dataset, OUT/tasks.jsonl,
    OUT/records/ (one record per candidate), OUT/envs/ (every environment attempt) and
    OUT/summary.json. Rerunning resumes.
    """
    from data_gen.real.filters import load_candidates
    from data_gen.real.validate import validate
    from swelego.errors import SwelegoError

    if repair_attempts < 1:
        raise click.BadParameter("must be at least 1", param_hint="--repair-attempts")
    bad_rows: list[str] = []
    try:
        cands = load_candidates(candidates, problems=bad_rows)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise click.ClickException(str(e)) from None
    for line in bad_rows:
        err.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
    if max_tasks is not None:
        cands = cands[:max_tasks]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        bar = progress.add_task("candidates", total=len(cands))

        def log(msg: str) -> None:
            err.print(escape(msg), highlight=False)

        try:
            summary = validate(cands, out_dir, progress=lambda _id, n: progress.advance(bar, n), log=log,
                               namespace=namespace, workers=workers, test_timeout=test_timeout,
                               baseline_runs=baseline_runs, confirm_runs=confirm_runs, repair_attempts=repair_attempts,
                               verify=verify, executor=executor, ray_address=ray_address, llm_base_url=llm_base_url,
                               llm_model=llm_model, llm_key_env=llm_key_env, allow_contaminated=allow_contaminated,
                               swebench_datasets=tuple(swebench_datasets), bad_rows=bad_rows)
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
