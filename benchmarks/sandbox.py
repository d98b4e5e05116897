"""Sandbox latency benchmark: how long the Docker sandbox takes to (1) create a container and
run its first command, (2) reset a dirtied tree in place (`git`) versus replacing the container
(`fresh`), and (3) how much the harness (`run_tests`: docker exec, output capture, swebench log
parsing) adds on top of the raw pytest time measured inside the container, on a real package.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from rich.console import Console
from rich.table import Table

from swelego.harness import run_tests
from swelego.sandbox import DockerSandbox, docker_client
from swelego.sandbox.images import build_env_image

NAMESPACE = "swelego-bench"
# Wide tables stay readable when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 200)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]  # nearest rank


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def bench_create(image: str, client, n: int) -> tuple[list[float], list[float], float]:
    """Create → first exec latency; close time separately; total wall incl. close."""
    ready, closing = [], []
    t_all = time.perf_counter()
    for _ in range(n):
        sb = DockerSandbox(image, client=client)
        try:
            t0 = time.perf_counter()
            sb.start()
            sb.exec("true", timeout=60)
            ready.append(time.perf_counter() - t0)
        finally:
            t1 = time.perf_counter()
            sb.close()
            closing.append(time.perf_counter() - t1)
    return ready, closing, time.perf_counter() - t_all


def bench_reset(image: str, client, n: int) -> dict[str, dict[str, list]]:
    """Per mode: reset call alone, reset + first exec, and whether the tree came back clean."""
    out = {}
    with DockerSandbox(image, client=client) as sb:
        sb.base_commit  # noqa: B018 - prime the cached commit so git reset times only the reset
        tracked = sb.exec("git ls-files '*.py' | head -n1", timeout=30).output.strip() or "README.md"
        dirty = f"echo x >> '{tracked}' && touch untracked.py && mkdir -p build && touch build/f"
        for mode in ("git", "fresh"):
            res = {"reset": [], "ready": [], "clean": []}
            for _ in range(n):
                sb.exec(dirty, timeout=30)
                t0 = time.perf_counter()
                sb.reset(mode)
                t1 = time.perf_counter()
                status = sb.exec("git status --porcelain", timeout=30)
                t2 = time.perf_counter()
                res["reset"].append(t1 - t0)
                res["ready"].append(t2 - t0)
                res["clean"].append(status.ok and not status.output.strip())
            out[mode] = res
    return out


def bench_harness(env, client, n: int) -> dict[str, list]:
    """Raw in-container pytest time vs host wall time of run_tests, same warm container."""
    raw_cmd = ("bash -c 'start=$(date +%s.%N); " + env.test_cmd +
               ' >/dev/null 2>&1; end=$(date +%s.%N); echo "$start $end"\'')
    res = {"raw": [], "exec": [], "harness": [], "passed": [], "failed": []}
    with DockerSandbox(env.image, client=client) as sb:
        run_tests(sb, env.test_cmd, timeout=600, log_parser=env.log_parser)  # warm-up, not counted
        for _ in range(n):
            r = sb.exec(raw_cmd, timeout=600)
            start, end = (float(x) for x in r.output.strip().splitlines()[-1].split())
            res["raw"].append(end - start)
            t0 = time.perf_counter()
            tr = run_tests(sb, env.test_cmd, timeout=600, log_parser=env.log_parser)
            res["harness"].append(time.perf_counter() - t0)
            res["exec"].append(tr.duration)
            res["passed"].append(tr.counts["passed"])
            res["failed"].append(tr.counts["failed"] + tr.counts["error"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="iterations per measurement (harness: at most 10)")
    ap.add_argument("--source", default="pypi:toolz==1.0.0", help="repository source of the environment image")
    ap.add_argument("--cleanup", action="store_true", help=f"remove the {NAMESPACE}/... image at the end")
    args = ap.parse_args()
    n, n_h = max(1, args.n), max(1, min(args.n, 10))

    client = docker_client()
    t0 = time.perf_counter()
    env = build_env_image(args.source, namespace=NAMESPACE, client=client,
                          log=lambda m: console.print(f"[dim]{m}[/dim]"))
    wall = time.perf_counter() - t0
    try:
        console.print(f"[bold]image[/bold] {env.image}: "
                      + (f"built in {env.build_seconds:.1f} s" if env.built else f"reused (lookup {wall:.1f} s)")
                      + f", {env.size_bytes / 1e6:.0f} MB, n={n}")

        ready, closing, total = bench_create(env.image, client, n)
        t = Table(title=f"1. Container create → first exec (n={n}, sequential)")
        for col in ("step", "median", "p90", "min", "max"):
            t.add_column(col, justify="left" if col == "step" else "right")
        for name, xs in (("start + exec('true')", ready), ("close (rm -f)", closing)):
            t.add_row(name, ms(statistics.median(xs)), ms(p90(xs)), ms(min(xs)), ms(max(xs)))
        t.caption = (f"{60 / statistics.mean(ready):.0f} containers/min to first exec; "
                     f"{60 * n / total:.0f}/min including close")
        console.print(t)

        resets = bench_reset(env.image, client, n)
        t = Table(title=f"2. Reset after dirtying the tree (n={n})")
        for col in ("mode", "reset median", "reset p90", "+ first exec median", "+ first exec p90", "clean"):
            t.add_column(col, justify="left" if col == "mode" else "right")
        for mode, r in resets.items():
            t.add_row(mode, ms(statistics.median(r["reset"])), ms(p90(r["reset"])),
                      ms(statistics.median(r["ready"])), ms(p90(r["ready"])), f"{sum(r['clean'])}/{n}")
        g, f = resets["git"], resets["fresh"]
        t.caption = (f"fresh/git: {statistics.median(f['reset']) / statistics.median(g['reset']):.1f}x (reset), "
                     f"{statistics.median(f['ready']) / statistics.median(g['ready']):.1f}x (+ first exec); "
                     "first exec = `git status --porcelain`")
        console.print(t)

        h = bench_harness(env, client, n_h)
        raw, exe, har = (statistics.median(h[k]) for k in ("raw", "exec", "harness"))
        t = Table(title=f"3. Harness overhead on {env.repo} {env.version} (n={n_h}, warm container)")
        for col in ("measure", "median", "p90", "vs raw"):
            t.add_column(col, justify="left" if col == "measure" else "right")
        t.add_row("raw pytest (in container)", ms(raw), ms(p90(h["raw"])), "1.00x")
        t.add_row("docker exec (TestRun.duration)", ms(exe), ms(p90(h["exec"])), f"{exe / raw:.2f}x")
        t.add_row("run_tests host wall (+ parse)", ms(har), ms(p90(h["harness"])), f"{har / raw:.2f}x")
        t.caption = (f"harness/raw = {har / raw:.2f}x (+{ms(har - raw)}); parsed passed = "
                     f"{sorted(set(h['passed']))}, failed+error = {sorted(set(h['failed']))}; "
                     f"cmd: {env.test_cmd}")
        console.print(t)
    finally:
        if args.cleanup and env.image.startswith(f"{NAMESPACE}/"):
            client.images.remove(env.image, force=True)
            console.print(f"removed image {env.image}")


if __name__ == "__main__":
    main()
