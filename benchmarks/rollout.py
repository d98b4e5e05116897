"""Rollout benchmark: what the agent scaffold costs on top of the commands it runs, and how
many episodes a minute the rollout driver completes with 1 and N workers.

(1) Tool layer: latency of `execute_bash` through the ToolBox, in the episode's persistent
    shell and in a fresh shell per call (`persistent=False`, the old semantics), versus the same
    command through the bare sandbox (`docker exec`), side by side; plus the once-per-episode
    cost of starting the persistent shell.
(2) Scaffold overhead per step: oracle episodes without grading; wall time of the episode
    minus the time spent inside tool calls, divided by the number of steps (policy, loop,
    bookkeeping; git sanitization and the final diff are reported separately).
(3) Throughput: `swelego.agent.rollout.rollout` with grading on, at 1 and N workers, episodes per
    minute and speed-up.

Default tasks: the toy task of examples/harness_quickstart.py, built on the fly (one image),
or `--dataset` for any task dataset with images present.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from swelego.agent import OraclePolicy, run_episode  # noqa: E402
from swelego.agent.loop import compute_patch, sanitize_git  # noqa: E402
from swelego.agent.tools import ToolBox  # noqa: E402
from swelego.sandbox import DockerSandbox, docker_client  # noqa: E402

NAMESPACE = "swelego-bench"
console = Console(width=None if sys.stdout.isatty() else 200)


def toy_tasks(workdir: Path, copies: int):
    from harness_quickstart import GOLD_PATCH, TEST_PATCH, make_toy_repo

    from swelego.harness import new_task, validate_task
    from swelego.sandbox.images import build_env_image

    repo = make_toy_repo(workdir / "toycalc")
    env = build_env_image(str(repo), namespace=NAMESPACE, log=lambda m: None)
    task = new_task(env, instance_id="toy__toycalc-1", patch=GOLD_PATCH, test_patch=TEST_PATCH,
                    problem_statement="median() is wrong for lists of even length")
    with DockerSandbox(env.image) as sb:
        task = validate_task(sb, task)
    return [task.model_copy(update={"instance_id": f"toy__toycalc-{i}"}) for i in range(copies)]


def bench_tools(image: str, n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"raw": [], "fresh": [], "persistent": [], "start": []}
    cmd = "ls /testbed > /dev/null"
    with DockerSandbox(image) as sb:
        fresh, persistent = ToolBox(sb, persistent=False), ToolBox(sb)
        for _ in range(n):
            t0 = time.perf_counter()
            sb.exec(cmd, timeout=60, workdir="/testbed")
            times["raw"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fresh.execute("execute_bash", {"command": cmd})
            times["fresh"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            persistent.execute("execute_bash", {"command": cmd})
            times["persistent"].append(time.perf_counter() - t0)
        persistent.close()
        for _ in range(max(3, n // 4)):  # a new episode's shell: started by its first command
            box = ToolBox(sb)
            t0 = time.perf_counter()
            box.execute("execute_bash", {"command": cmd})
            times["start"].append(time.perf_counter() - t0)
            box.close()
    return times


def bench_overhead(tasks, n: int) -> dict[str, float]:
    per_step, sanitize, patch, steps = [], [], [], []
    for i in range(n):
        task = tasks[i % len(tasks)]
        with DockerSandbox(task.image) as sb:
            t0 = time.perf_counter()
            sanitize_git(sb, task.base_commit)
            sanitize.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            compute_patch(sb, task.base_commit)
            patch.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            traj = run_episode(task, sb, OraclePolicy(task), grade=False)
            wall = time.perf_counter() - t0
        in_tools = sum(s.duration for s in traj.steps)
        # The episode also sanitizes and diffs once: take those out, measured just above.
        loop = wall - in_tools - sanitize[-1] - patch[-1]
        per_step.append(max(0.0, loop) / max(1, len(traj.steps)))
        steps.append(len(traj.steps))
    return {"per_step": statistics.median(per_step), "sanitize": statistics.median(sanitize),
            "patch": statistics.median(patch), "steps": statistics.median(steps)}


def bench_throughput(tasks, workers: int, samples: int, workdir: Path) -> tuple[float, int, int]:
    from swelego.agent.rollout import RolloutConfig, rollout

    out = workdir / f"ro-{workers}"
    cfg = RolloutConfig(out=str(out), samples=samples, workers=workers)
    t0 = time.perf_counter()
    summary = rollout(tasks, cfg)
    return time.perf_counter() - t0, summary.trajectories, summary.resolved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="task dataset (default: the toy task, built here)")
    ap.add_argument("--workers", type=int, default=2, help="N for the parallel run")
    ap.add_argument("--episodes", type=int, default=8, help="episodes per throughput run")
    ap.add_argument("--repeats", type=int, default=20, help="tool-latency samples")
    args = ap.parse_args()
    docker_client()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.dataset:
            from swelego.schema import load_dataset

            tasks = load_dataset(args.dataset)
        else:
            tasks = toy_tasks(work, copies=args.episodes)
        samples = max(1, args.episodes // len(tasks))
        times = bench_tools(tasks[0].image, args.repeats)
        raw = statistics.median(times["raw"])
        t = Table(title="(1) one shell command: bare sandbox vs the agent's execute_bash")
        for c in ("path", "median", "ratio"):
            t.add_column(c, justify="right")
        t.add_row("sandbox.exec (docker exec)", f"{raw * 1000:.1f} ms", "1.00×")
        for key, label in (("fresh", "execute_bash, fresh shell per call"),
                           ("persistent", "execute_bash, persistent shell"),
                           ("start", "  first call of an episode (starts the shell)")):
            med = statistics.median(times[key])
            t.add_row(label, f"{med * 1000:.1f} ms", f"{med / raw:.2f}×")
        console.print(t)
        o = bench_overhead(tasks, n=3)
        t = Table(title="(2) scaffold overhead, oracle episodes (median of 3)")
        for c in ("steps", "overhead per step", "git sanitize (once)", "final diff (once)"):
            t.add_column(c, justify="right")
        t.add_row(f"{o['steps']:.0f}", f"{o['per_step'] * 1000:.1f} ms", f"{o['sanitize'] * 1000:.0f} ms",
                  f"{o['patch'] * 1000:.0f} ms")
        console.print(t)
        t = Table(title=f"(3) rollout throughput, graded oracle episodes ({len(tasks) * samples} per run)")
        for c in ("workers", "wall", "episodes/min", "resolved", "speed-up"):
            t.add_column(c, justify="right")
        base = None
        for w in (1, args.workers):
            wall, n, resolved = bench_throughput(tasks, w, samples, work)
            rate = 60 * n / wall
            base = base or rate
            t.add_row(str(w), f"{wall:.1f} s", f"{rate:.1f}", f"{resolved}/{n}", f"{rate / base:.2f}×")
        console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
