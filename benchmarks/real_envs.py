"""Environment-build yield over real PyPI sdists: the inference alone, and with the repair loop.

For each `pypi:NAME==VERSION` of the list below (chosen before any measurement and never
trimmed because a package fails): the sdist becomes a single-commit tree, the core inference
(`swelego.sandbox.envspec.infer_env`) decides its environment, the image is built and its
suite run once. An environment counts as working when the image builds and at least one test
passes with no collection abort (`swelego.sandbox.envrepair.env_problem`). A failure goes through
the repair loop (`swelego.sandbox.envrepair.repair_loop`: rules from the log first, then the LLM
when `--llm-base-url/--llm-model` are given) up to `--repair-attempts` attempts in all. Builds
run in a pool of `--workers` (default 2).

Prints one row per package (inferred spec, outcome or failure kind, attempts, passing tests,
seconds, image size), then: success rate with the inference alone and with repair, median
build seconds, images per hour, disk per environment and per 1,000 tasks, layer reuse, and
the taxonomy of the failures left. Nothing is asserted. With `--json PATH` every row is also
written as JSON lines.

  .venv/bin/python benchmarks/real_envs.py [SOURCES...] [--workers 2] [--repair-attempts 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from data_gen.real.filters import is_test_path
from data_gen.real.validate import suite_limits
from swelego.errors import SwelegoError
from swelego.executor import run_tasks
from swelego.harness import run_tests
from swelego.llm import client_from_options
from swelego.sandbox import DockerSandbox, docker_client
from swelego.sandbox.envrepair import (
    EnvFailure,
    classify_failure,
    env_problem,
    log_excerpt,
    repair_loop,
    repo_context,
)
from swelego.sandbox.envspec import infer_env
from swelego.sandbox.images import build_env_image, cache_dir
from swelego.sandbox.sources import RepoSource, prepare_testbed

NAMESPACE = "swelego-envbench"
# Chosen before measuring. Pure Python of several layouts (flat module, package, src/; tests/
# beside or inside the package; setuptools, flit, hatchling, poetry-core, setuptools-scm;
# addopts plugins, test extras, tox deps) ...
PURE = [
    "pypi:toolz==1.0.0", "pypi:inflection==0.5.1", "pypi:more-itertools==10.5.0", "pypi:cachetools==5.5.0",
    "pypi:boltons==24.1.0", "pypi:attrs==24.2.0", "pypi:marshmallow==3.22.0", "pypi:python-dateutil==2.9.0.post0",
    "pypi:pyparsing==3.1.4", "pypi:packaging==24.1", "pypi:jinja2==3.1.4", "pypi:parse==1.22.4",
    "pypi:six==1.16.0", "pypi:tomli==2.0.1", "pypi:idna==3.10", "pypi:iniconfig==2.0.0", "pypi:pluggy==1.5.0",
    "pypi:click==8.1.7", "pypi:itsdangerous==2.2.0", "pypi:markdown==3.7", "pypi:tabulate==0.9.0",
    "pypi:semver==3.0.2", "pypi:humanize==4.10.0", "pypi:sqlparse==0.5.1", "pypi:pytz==2024.2",
    "pypi:tomlkit==0.13.2", "pypi:jmespath==1.0.1", "pypi:colorama==0.4.6", "pypi:h11==0.14.0",
    "pypi:zipp==3.20.2", "pypi:platformdirs==4.3.6", "pypi:arrow==1.3.0",
]
# ... and projects whose C/C++/Cython extension is REQUIRED (no pure-Python fallback).
COMPILED = [
    "pypi:bitarray==2.9.2", "pypi:ciso8601==2.3.1", "pypi:crc32c==2.7.1", "pypi:cytoolz==1.0.0",
    "pypi:xxhash==3.5.0", "pypi:ujson==5.10.0", "pypi:regex==2024.9.11", "pypi:cffi==1.17.1",
    "pypi:setproctitle==1.3.3", "pypi:lz4==4.3.3", "pypi:pyahocorasick==2.1.0",
]
DEFAULT_SOURCES = PURE + COMPILED


def _attempt(source, namespace, client, timeout, lines):
    def attempt(spec):
        log: list[str] = []
        try:
            env = build_env_image(source, spec=spec, namespace=namespace, client=client, log=log.append)
        except SwelegoError as e:
            raise EnvFailure("build", str(e).splitlines()[0][:400], log_excerpt("\n".join(log) + "\n" + str(e))) \
                from None
        with DockerSandbox(env.image, client=client, limits=suite_limits(timeout)) as sb:
            run = run_tests(sb, spec.test_cmd, timeout=timeout, log_parser=spec.log_parser)
        if problem := env_problem(run):
            raise EnvFailure("tests", problem, log_excerpt(run.log))
        lines.append((env, run))
        return env, run
    return attempt


def bench_one(source: str, *, args, client, llm, work: Path) -> dict:
    t0 = time.monotonic()
    row = {"source": source, "compiled": source in COMPILED}
    try:
        prepared = prepare_testbed(RepoSource.parse(source), work / source.split(":", 1)[1], cache_dir())
    except SwelegoError as e:
        return {**row, "ok": False, "first_ok": False, "kind": "other", "error": f"source: {str(e)[:200]}",
                "attempts": 0, "seconds": time.monotonic() - t0}
    spec = infer_env(prepared.testbed)
    row["spec"] = spec.summary()
    if not any(is_test_path(str(f.relative_to(prepared.testbed))) for f in prepared.testbed.rglob("*.py")):
        return {**row, "ok": False, "first_ok": False, "kind": "no_tests", "error": "the sdist ships no tests",
                "attempts": 0, "seconds": time.monotonic() - t0}
    got: list = []
    result, last, attempts = repair_loop(spec, _attempt(source, args.namespace, client, args.test_timeout, got),
                                         llm=llm, max_attempts=args.repair_attempts,
                                         context=repo_context(prepared.testbed), tree=prepared.testbed)
    row.update(attempts=len(attempts), first_ok=bool(attempts) and attempts[0].ok, ok=result is not None,
               seconds=time.monotonic() - t0,
               repairs=[f"{a.source}: {a.reply}" for a in attempts[1:] if a.source in ("rule", "llm", "known")],
               log=[{k: a.to_json()[k] for k in ("number", "ok", "stage", "kind", "error", "source", "reply")}
                    for a in attempts])
    if result is not None:
        env, run = result
        row.update(passed=run.counts["passed"], failed=run.counts["failed"] + run.counts["error"],
                   image=env.image, size=env.size_bytes, build_seconds=env.build_seconds, built=env.built,
                   system_image=env.system_image, base_image=env.base, final_spec=last.summary())
    else:
        real = [a for a in attempts if a.stage != "repair"] or attempts
        a = real[-1]
        row.update(kind=a.kind or classify_failure(a.stage, a.error, a.log), error=f"{a.stage}: {a.error[:160]}")
    if attempts and not attempts[0].ok:
        row["first_kind"] = attempts[0].kind
    return row


def _disk(client, rows) -> dict:
    """Unique bytes per environment image and the shared layers (bases, system images)."""
    df = client.df()
    by_tag = {}
    for img in df.get("Images") or []:
        for t in img.get("RepoTags") or []:
            by_tag[t] = img
    envs = [(r, by_tag[r["image"]]) for r in rows if r.get("image") in by_tag]
    # marginal: bytes no other image on the engine holds (the build cache shares identical
    # dependency layers between environments); own: everything above the image it starts from
    unique = [max(0, i["Size"] - max(0, i.get("SharedSize") or 0)) for _, i in envs]
    own = [max(0, i["Size"] - by_tag[r["system_image"]]["Size"]) for r, i in envs if r.get("system_image") in by_tag]
    shared = {}
    for r in rows:
        name = r.get("system_image") or ""
        if name.startswith("swelego/sys:") and name in by_tag:
            shared[name] = by_tag[name]["Size"] - by_tag.get(r.get("base_image", ""), {"Size": 0})["Size"]
    tasks = [max(0, i["Size"] - i.get("SharedSize", 0)) for t, i in by_tag.items() if "/sweb.eval." in t]
    return {"unique": unique, "own": own, "shared": shared, "task_layer": statistics.median(tasks) if tasks else None,
            "task_images": len(tasks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="*", default=DEFAULT_SOURCES)
    ap.add_argument("--namespace", default=NAMESPACE)
    ap.add_argument("--workers", type=int, default=2, help="environments built at once")
    ap.add_argument("--repair-attempts", type=int, default=3, help="attempts in all per package (1 = no repair)")
    ap.add_argument("--llm-base-url")
    ap.add_argument("--llm-model")
    ap.add_argument("--test-timeout", type=float, default=900.0)
    ap.add_argument("--json", help="also write every row as a JSON line here")
    args = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 220)
    client = docker_client()
    llm = client_from_options(args.llm_base_url, args.llm_model)
    rows: list[dict] = []
    lock = threading.Lock()
    t_all = time.monotonic()
    out = open(args.json, "a") if args.json else None  # noqa: SIM115 - appended row by row
    with tempfile.TemporaryDirectory(prefix="swelego-envbench-") as tmp:
        def one(source: str) -> dict:
            return bench_one(source, args=args, client=client, llm=llm, work=Path(tmp))

        for source, row in run_tasks(one, list(args.sources), workers=args.workers):
            if isinstance(row, Exception):
                row = {"source": source, "ok": False, "first_ok": False, "kind": "other", "attempts": 0,
                       "error": f"{type(row).__name__}: {str(row)[:200]}", "seconds": 0.0,
                       "compiled": source in COMPILED}
            with lock:
                rows.append(row)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
            state = "ok" if row["ok"] else row.get("kind")
            console.print(f"{source}: {state} in {row['seconds']:.0f}s ({len(rows)}/{len(args.sources)})",
                          highlight=False)
    wall = time.monotonic() - t_all
    order = {s: i for i, s in enumerate(args.sources)}
    rows.sort(key=lambda r: order.get(r["source"], 0))
    t = Table(title=f"Environment builds over {len(rows)} real PyPI sdists ({sum(r['compiled'] for r in rows)} "
                    "with required compiled extensions)")
    for col in ("source", "C", "inferred spec", "outcome", "att", "pass", "fail", "sec", "MB"):
        t.add_column(col, justify="right" if col in ("att", "pass", "fail", "sec", "MB") else "left",
                     overflow="fold", max_width=70 if col == "inferred spec" else None)
    for r in rows:
        if r["ok"]:
            outcome = "[green]ok" if r["first_ok"] else f"[green]ok after repair[/] ({'; '.join(r['repairs'])[:60]})"
        else:
            outcome = f"[red]{r['kind']}[/]: {escape(r.get('error', '')[:70])}"
        t.add_row(escape(r["source"][5:]), "C" if r["compiled"] else "", escape(r.get("spec", "")[:140]), outcome,
                  str(r["attempts"]), str(r.get("passed", "")), str(r.get("failed", "")), f"{r['seconds']:.0f}",
                  f"{r['size'] / 1e6:.0f}" if r.get("size") else "")
    console.print(t)
    n = len(rows)
    first = sum(r["first_ok"] for r in rows)
    final = sum(r["ok"] for r in rows)
    c_rows = [r for r in rows if r["compiled"]]
    built = [r for r in rows if r.get("built")]
    secs = [r["build_seconds"] for r in built]
    disk = _disk(client, rows)
    unique_mb = statistics.median(disk["unique"]) / 1e6 if disk["unique"] else 0.0
    own_mb = statistics.median(disk["own"]) / 1e6 if disk["own"] else 0.0
    shared_mb = sum(disk["shared"].values()) / 1e6
    task_mb = (disk["task_layer"] or 0) / 1e6
    s = Table(title="summary", show_header=False)
    s.add_column("measure")
    s.add_column("value")
    s.add_row("success, inference alone", f"{first}/{n} = {100 * first / max(1, n):.0f}%")
    s.add_row(f"success, with repair ({'rules + LLM' if llm else 'rules only'}, <= {args.repair_attempts} attempts)",
              f"{final}/{n} = {100 * final / max(1, n):.0f}%")
    s.add_row("required C extensions: inference alone / with repair",
              f"{sum(r['first_ok'] for r in c_rows)}/{len(c_rows)} / {sum(r['ok'] for r in c_rows)}/{len(c_rows)}")
    s.add_row("median build seconds (images built in this run)",
              f"{statistics.median(secs):.1f} (n={len(secs)})" if secs else "-")
    s.add_row(f"images per hour (wall, {args.workers} workers)", f"{3600 * len(built) / max(wall, 1):.0f}")
    s.add_row("disk per environment (median of its own layers above base/system image)", f"{own_mb:.0f} MB")
    s.add_row("disk per environment (median marginal: layers no other image shares)", f"{unique_mb:.0f} MB")
    s.add_row("shared layers (Debian packages of compiled projects, above the base)",
              f"{shared_mb:.0f} MB in {len(disk['shared'])} image(s) for "
              f"{sum((r.get('system_image') or '').startswith('swelego/sys:') for r in rows)} "
              "environment(s)")
    s.add_row("per-task layer (median over task images on this engine)",
              f"{task_mb:.2f} MB (n={disk['task_images']})" if disk["task_layer"] is not None else "-")
    for per_env in (10, 100):
        gb = (1000 / per_env * own_mb + 1000 * task_mb + shared_mb + 292) / 1e3
        s.add_row(f"disk per 1,000 tasks ({per_env} tasks per environment)", f"{gb:.1f} GB")
    full_mb = statistics.median(r["size"] for r in rows if r.get("size")) / 1e6 if any(r.get("size") for r in rows) else 0
    s.add_row("disk per 1,000 tasks (one full image per task, nothing shared)", f"{full_mb * 1000 / 1e3:.0f} GB")
    left = Counter(r["kind"] for r in rows if not r["ok"])
    s.add_row("failures left (taxonomy)", ", ".join(f"{k} {v}" for k, v in left.most_common()) or "none")
    first_kinds = Counter(r.get("first_kind") or r.get("kind") for r in rows if not r["first_ok"])
    s.add_row("first-attempt failures (taxonomy)", ", ".join(f"{k} {v}" for k, v in first_kinds.most_common()) or "none")
    s.add_row("wall time", f"{wall / 60:.1f} min")
    console.print(s)


if __name__ == "__main__":
    main()
