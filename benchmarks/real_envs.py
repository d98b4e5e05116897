"""Environment-build success rate over real PyPI sdists, with the heuristics alone or with the
LLM repair loop.

For each `pypi:NAME==VERSION`: the sdist becomes a single-commit tree, `infer_env` reads its
Python version, test plugins and test dependencies, and `build_environment` builds the image and
runs the suite once. An environment counts as built when the image builds and at least one test
passes with no test-collection abort. With `--llm-base-url/--llm-model` failures go through the
bounded repair loop. Prints one row per package (inferred spec, outcome, passing tests, seconds)
and the success rate. Nothing is asserted.

  .venv/bin/python benchmarks/real_envs.py [SOURCES...] [--repair-attempts 3 --llm-base-url ... --llm-model ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from data_gen.real.envinfer import infer_env
from data_gen.real.filters import is_test_path
from data_gen.real.validate import build_environment, suite_limits
from swelego.errors import SwelegoError
from swelego.harness import run_tests
from swelego.llm import client_from_options
from swelego.sandbox import DockerSandbox, docker_client
from swelego.sandbox.images import cache_dir
from swelego.sandbox.sources import RepoSource, prepare_testbed

NAMESPACE = "swelego-envbench"
# Small, popular pure-Python projects whose sdists ship their tests, with different layouts
# (src/ or flat, tests/ or in-package, setup.py or pyproject) and test dependencies.
DEFAULT_SOURCES = [
    "pypi:toolz==1.0.0", "pypi:inflection==0.5.1", "pypi:more-itertools==10.5.0", "pypi:cachetools==5.5.0",
    "pypi:boltons==24.1.0", "pypi:attrs==24.2.0", "pypi:marshmallow==3.22.0", "pypi:python-dateutil==2.9.0.post0",
    "pypi:pyparsing==3.1.4", "pypi:packaging==24.1", "pypi:jinja2==3.1.4",
    # these two sdists ship no tests: reported, and left out of the rate
    "pypi:sortedcontainers==2.4.0", "pypi:python-slugify==8.0.4",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="*", default=DEFAULT_SOURCES)
    ap.add_argument("--namespace", default=NAMESPACE)
    ap.add_argument("--repair-attempts", type=int, default=1, help="1 = heuristics only")
    ap.add_argument("--llm-base-url")
    ap.add_argument("--llm-model")
    ap.add_argument("--test-timeout", type=float, default=600.0)
    args = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)
    client = docker_client()
    llm = client_from_options(args.llm_base_url, args.llm_model)
    t = Table(title=f"Environment builds over {len(args.sources)} real PyPI sdists")
    for col in ("source", "python", "extra deps", "outcome", "attempts", "passing", "failing", "seconds"):
        t.add_column(col, justify="right" if col in ("attempts", "passing", "failing", "seconds") else "left")
    built = skipped = 0
    with tempfile.TemporaryDirectory(prefix="swelego-envbench-") as tmp:
        for i, source in enumerate(args.sources):
            t0 = time.monotonic()
            try:
                prepared = prepare_testbed(RepoSource.parse(source), Path(tmp) / f"{i}", cache_dir())
            except SwelegoError as e:
                t.add_row(escape(source), "", "", f"[red]source: {escape(str(e)[:60])}", "0", "", "", "")
                continue
            if not any(is_test_path(str(f.relative_to(prepared.testbed))) for f in prepared.testbed.rglob("*.py")):
                skipped += 1
                t.add_row(escape(source), "", "", "[yellow]skipped: the sdist ships no tests", "0", "", "", "")
                continue
            spec = infer_env(prepared.testbed)
            env, last, attempts = build_environment(prepared, namespace=args.namespace, client=client, llm=llm,
                                                    repair_attempts=args.repair_attempts,
                                                    test_timeout=args.test_timeout, spec=spec)
            passing = failing = ""
            if env is not None:
                built += 1
                with DockerSandbox(env.image, client=client, limits=suite_limits(args.test_timeout)) as sb:
                    run = run_tests(sb, last.test_cmd, timeout=args.test_timeout, log_parser=last.log_parser)
                c = run.counts
                passing, failing = str(c["passed"]), str(c["failed"] + c["error"])
                outcome = "[green]built" + (" after repair" if len(attempts) > 1 else "")
            else:
                a = [x for x in attempts if x.stage != "repair"][-1]
                outcome = f"[red]{a.stage}: {escape(a.error[:70])}"
            t.add_row(escape(source), spec.python, escape(", ".join(last.extra_deps) or "-"), outcome,
                      str(len(attempts)), passing, failing, f"{time.monotonic() - t0:.0f}")
            console.print(f"{source}: done in {time.monotonic() - t0:.0f}s", highlight=False)
    console.print(t)
    n = len(args.sources) - skipped
    console.print(f"success rate: {built}/{n} = {100 * built / max(1, n):.0f}% of the sdists that ship tests "
                  f"({'with' if llm else 'without'} LLM repair, {args.repair_attempts} attempt(s) max)")


if __name__ == "__main__":
    main()
