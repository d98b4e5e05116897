"""`swelego env ...` (environment images) and `swelego sandbox ...` (containers)."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swelego.errors import ImageBuildError, SwelegoError

# Tables are wide; outside a terminal (logs, CI) do not squeeze them into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


@click.group()
def env():
    """Environment images: a repository at /testbed with its dependencies, built offline."""


@env.command("base")
@click.argument("spec", default="bookworm")
def env_base(spec):
    """Build (or find) a base image.

    SPEC is bullseye (Python 3.9), bookworm (3.11) or trixie (3.13) for an offline Debian
    rootfs made with debootstrap, or any registry image name (pulled if missing).
    """
    from swelego.sandbox.images import ensure_base_image

    name = ensure_base_image(spec, log=lambda m: err.print(escape(m)))
    out.print(name)


@env.command("build")
@click.argument("sources", nargs=-1, required=True)
@click.option("--base", default=None,
              help="bullseye|bookworm|trixie (offline Debian) or a registry image such as python:3.11-slim "
                   "(default: the Debian base of the inferred Python version).")
@click.option("--namespace", default="swelego", show_default=True, help="Image name prefix.")
@click.option("--extra-dep", "extra_deps", multiple=True, help="Extra pip requirement to preinstall (repeatable).")
@click.option("--setup", multiple=True, help="Shell command run in /testbed after the install (repeatable).")
@click.option("--test-cmd", default=None, help="Test command (default: inferred, usually pytest -rfEsxXp -p no:cacheprovider --continue-on-collection-errors).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override part of the inferred environment (repeatable): python, base_image, extras, extra_deps, "
                   "system_packages, setup, test_cmd, log_parser; lists comma-separated, KEY+=VALUE appends.")
@click.option("--run-tests", is_flag=True, help="Run the test suite in a sandbox and report the parsed counts.")
@click.option("--repair-attempts", default=1, show_default=True,
              help="Attempts in all when the build or its test run fails (implies --run-tests): the next spec comes "
                   "from the log by rules, then from the LLM when --llm-base-url/--llm-model are given.")
@click.option("--llm-base-url", default=None, help="OpenAI-compatible endpoint for repairs.")
@click.option("--llm-model", default=None, help="Model name at --llm-base-url.")
@click.option("--timeout", default=1800, show_default=True, help="Seconds allowed for the test run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per source on stdout.")
def env_build(sources, base, namespace, extra_deps, setup, test_cmd, sets, run_tests, repair_attempts, llm_base_url,
              llm_model, timeout, as_json):
    """Build the environment image of each SOURCE (reused when its spec is unchanged).

    SOURCE is `pypi:NAME==VERSION` (the sdist), a git URL[@commit], or a local path[@rev].
    A failing source is reported on one line and the others continue.
    """
    from swelego.harness import run_tests as run_suite
    from swelego.sandbox import DockerSandbox, docker_client
    from swelego.sandbox.envspec import EnvOverrides
    from swelego.sandbox.images import build_env_image

    run_tests = run_tests or repair_attempts > 1
    try:
        overrides = EnvOverrides.parse(sets)
    except SwelegoError as e:
        err.print(f"[red]✗[/] {escape(str(e))}", soft_wrap=True, highlight=False)
        sys.exit(2)
    client = docker_client()
    results, failures = [], 0
    for source in sources:
        try:
            with err.status(f"[bold]{escape(source)}[/]: preparing ...") as status:
                def log(msg, _s=status, _src=source):
                    _s.update(f"[bold]{escape(_src)}[/]: {escape(msg)}")

                if repair_attempts > 1:
                    info, run, attempts = _build_with_repair(source, base, namespace, extra_deps, setup, test_cmd,
                                                             overrides, repair_attempts, llm_base_url, llm_model,
                                                             timeout, client, log)
                else:
                    info = build_env_image(source, base=base, namespace=namespace, extra_deps=extra_deps,
                                           setup=setup, test_cmd=test_cmd, overrides=overrides, client=client, log=log)
                    run, attempts = None, []
                row = {"source": source, **info.to_json(), "ok": True}
                if attempts:
                    row["attempts"] = [a.to_json() for a in attempts]
                if not as_json:
                    err.print(f"[bold]{escape(source)}[/]: {escape(info.env_spec.summary())}", soft_wrap=True,
                              highlight=False)
                    for k, why in info.env_spec.evidence.items():
                        err.print(f"    {escape(k)}: {escape(str(why))}", soft_wrap=True, highlight=False)
                if run_tests or run is not None:
                    status.update(f"[bold]{escape(source)}[/]: running tests ...")
                    if run is None:
                        with DockerSandbox(info.image, client=client) as sb:
                            run = run_suite(sb, info.test_cmd, timeout=timeout, log_parser=info.log_parser)
                    row["tests"] = {**run.counts, "exit_code": run.exit_code, "timed_out": run.timed_out,
                                    "seconds": round(run.duration, 2), "consistent": run.consistent}
        except ImageBuildError as e:
            failures += 1
            row = {"source": source, "ok": False, "error": e.headline, "log_tail": e.log_tail}
            _report_failure(source, e)
        except SwelegoError as e:
            failures += 1
            row = {"source": source, "ok": False, "error": str(e)}
            _report_failure(source, e)
        results.append(row)
        if as_json:
            print(json.dumps(row), flush=True)
    if not as_json:
        _print_env_table(results, run_tests)
    if failures:
        sys.exit(1)


def _build_with_repair(source, base, namespace, extra_deps, setup, test_cmd, overrides, attempts, llm_base_url,
                       llm_model, timeout, client, log):
    """Build and test `source`, repairing the spec from the logs (envrepair.repair_loop)."""
    import tempfile
    from pathlib import Path

    from swelego.harness import run_tests as run_suite
    from swelego.llm import client_from_options
    from swelego.sandbox import DockerSandbox, SandboxLimits
    from swelego.sandbox.envrepair import EnvFailure, env_problem, log_excerpt, repair_loop, repo_context
    from swelego.sandbox.images import build_env_image, cache_dir, resolve_spec
    from swelego.sandbox.sources import RepoSource, prepare_testbed

    with tempfile.TemporaryDirectory(prefix="swelego-repair-") as tmp:
        prepared = prepare_testbed(RepoSource.parse(source), Path(tmp) / "tree", cache_dir())
        first = resolve_spec(prepared.testbed, base=base, extra_deps=tuple(extra_deps), setup=tuple(setup),
                             test_cmd=test_cmd, overrides=overrides)

        def attempt(spec):
            lines: list[str] = []
            try:
                info = build_env_image(source, spec=spec, namespace=namespace, client=client,
                                       log=lambda m: (lines.append(m), log(m)))
            except SwelegoError as e:
                raise EnvFailure("build", str(e).splitlines()[0][:400],
                                 log_excerpt("\n".join(lines) + "\n" + str(e))) from None
            log("running tests ...")
            with DockerSandbox(info.image, client=client, limits=SandboxLimits(exec_timeout=timeout)) as sb:
                run = run_suite(sb, spec.test_cmd, timeout=timeout, log_parser=spec.log_parser)
            if problem := env_problem(run):
                raise EnvFailure("tests", problem, log_excerpt(run.log))
            return info, run

        result, last, tried = repair_loop(first, attempt, llm=client_from_options(llm_base_url, llm_model),
                                          max_attempts=attempts, context=repo_context(prepared.testbed),
                                          tree=prepared.testbed)
    for a in tried:
        mark = "[green]ok[/]" if a.ok else f"[red]{a.kind or a.stage}[/]: {escape(a.error[:120])}"
        err.print(f"  attempt {a.number} ({a.source}{': ' + escape(a.reply[:60]) if a.reply else ''}): {mark}",
                  soft_wrap=True, highlight=False)
    if result is None:
        real = [a for a in tried if a.stage != "repair"] or tried
        raise SwelegoError(f"no working environment after {len(tried)} attempt(s): [{real[-1].kind}] {real[-1].error}")
    return result[0], result[1], tried


def _report_failure(source: str, e: Exception) -> None:
    msg = str(e) if str(e).startswith(source) else f"{source}: {e}"
    err.print(f"[red]✗[/] {escape(msg)}", soft_wrap=True, highlight=False)


def _print_env_table(rows, with_tests):
    t = Table(title="environment images")
    for col in ("source", "image", "python", "test command", "size", "build"):
        t.add_column(col, no_wrap=col in ("image", "test command"))
    if with_tests:
        t.add_column("tests pass/fail/skip/error", no_wrap=True)
    for r in rows:
        if not r["ok"]:
            t.add_row(escape(r["source"]), "[red]failed (see above)[/]", *[""] * (4 + with_tests))
            continue
        build = f"{r['build_seconds']:.1f}s" if r["built"] else "reused"
        cells = [escape(r["source"]), r["image"], r["python"], escape(r["test_cmd"]),
                 f"{r['size_bytes'] / 1e6:.0f} MB", build]
        if with_tests:
            ts = r["tests"]
            cells.append(f"{ts['passed']} / {ts['failed']} / {ts['skipped']} / {ts['error']} ({ts['seconds']:.1f}s)")
        t.add_row(*cells)
    out.print(t)


@click.group()
def sandbox():
    """Hardened sandbox containers."""


@sandbox.command("gc")
@click.option("--all", "everything", is_flag=True, help="Also remove sandboxes whose driver is still running.")
@click.option("--images", "datasets", multiple=True, type=click.Path(exists=True),
              help="A dataset (directory or tasks.jsonl) whose images are kept (repeatable): our environment, "
                   "instance and system images that none of them references are pruned.")
@click.option("--namespace", default=None, help="Prune only images under this prefix (system images always count).")
@click.option("--apply", "apply_", is_flag=True, help="Remove the images (default: a dry run that lists them).")
def sandbox_gc(everything, datasets, namespace, apply_):
    """Remove sandbox containers left behind by killed runs; with --images, also list (or,
    with --apply, remove) images that no given dataset references."""
    from swelego.sandbox import docker_client, gc_containers

    removed = gc_containers(everything=everything)
    out.print(f"removed {len(removed)} sandbox container(s)")
    if not datasets:
        return
    from swelego.sandbox.images import referenced_images, unreferenced_images

    try:
        referenced = referenced_images(list(datasets))
    except SwelegoError as e:
        err.print(f"[red]✗[/] {escape(str(e))}", soft_wrap=True, highlight=False)
        sys.exit(2)
    client = docker_client()
    prune = unreferenced_images(referenced, client=client, namespace=namespace)
    total = sum(p["size"] for p in prune)
    for p in prune:
        if apply_:
            try:
                client.images.remove(p["image"], noprune=False)
            except Exception as e:  # noqa: BLE001 - one image in use must not stop the rest
                err.print(f"[yellow]kept[/] {escape(p['image'])}: {escape(str(e).splitlines()[0][:150])}")
                continue
        out.print(f"{'removed' if apply_ else 'would remove'} {p['kind']:8} {p['image']}  {p['size'] / 1e6:.0f} MB",
                  highlight=False)
    out.print(f"{len(prune)} image(s) unreferenced by {len(datasets)} dataset(s) ({len(referenced)} image names kept); "
              f"{total / 1e9:.1f} GB apparent size" + ("" if apply_ else " — dry run, pass --apply to remove"),
              highlight=False)


@sandbox.command("exec")
@click.argument("image")
@click.argument("command")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds before the command is killed.")
def sandbox_exec(image, command, timeout):
    """Run COMMAND in a fresh hardened sandbox of IMAGE and print its output."""
    from swelego.sandbox import DockerSandbox

    with DockerSandbox(image) as sb:
        r = sb.exec(command, timeout=timeout)
    sys.stdout.write(r.output)
    if r.timed_out:
        err.print(f"[red]timed out after {timeout:g}s[/]")
    sys.exit(r.exit_code if not r.timed_out else 124)
