"""Held-out AUC of the tiny CPU verifier on oracle (resolved) vs broken (unresolved) trajectories.

Builds the `toyshop` tasks (verifier.corpus: eight validated bugs on one environment image),
runs `--samples` graded oracle episodes per task with noise `--noise` (a noisy episode applies a
corrupted edit or skips it, so it fails its own grading), and trains the tiny verifier with
configs/verifier/tiny-cpu.yaml in `--folds` rounds of cross-validation split by instance: each
round holds out its instances, trains on the others and scores the held-out trajectories. The
pooled held-out AUC is the figure of merit (issue target: >= 0.8). It also prints accuracy at
0.5, the loss curve's ends, and training / scoring times. Nothing is asserted.

Run: `.venv/bin/python benchmarks/verifier.py [--samples 6 --folds 4 --max-steps 60]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

# This file is named like the `verifier` package; keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

NAMESPACE = "swelego-bench"
TARGET_AUC = 0.8
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "verifier" / "tiny-cpu.yaml"
console = Console(width=None if sys.stdout.isatty() else 160)


def main() -> None:
    from sft.config import load_config
    from swelego.agent import Trajectory
    from swelego.agent.rollout import RolloutConfig, load_trajectories, rollout
    from swelego.sandbox import docker_client
    from swelego.sandbox.images import ensure_base_image
    from verifier.corpus import toyshop_tasks
    from verifier.data import JudgeData, balance, build_judge_data, write_judge_data
    from verifier.prompt import JudgeFormatter
    from verifier.score import LocalScorer, accuracy, roc_auc
    from verifier.train import VerifierRunConfig, load_base, train_verifier

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=6, help="oracle episodes per task")
    ap.add_argument("--noise", type=float, default=0.5, help="probability that an episode's edit is corrupted")
    ap.add_argument("--folds", type=int, default=4, help="cross-validation rounds, split by instance")
    ap.add_argument("--max-steps", type=int, default=60, help="training steps per round")
    ap.add_argument("--kind", choices=("generative", "regressive"), default="generative")
    ap.add_argument("--config", default=str(CONFIG), help="verifier recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="episodes at once")
    ap.add_argument("--trajectories", default=None,
                    help="reuse trajectories from this JSONL instead of running episodes")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="swelego-bench-verifier-"))
    if args.trajectories:
        from verifier.data import load_trajectories

        trajs = load_trajectories([args.trajectories])
        console.print(f"{len(trajs)} trajectories from {args.trajectories}")
    else:
        client = docker_client()
        ensure_base_image("bookworm", client=client)
        t0 = time.perf_counter()
        tasks = toyshop_tasks(namespace=NAMESPACE, client=client)
        t1 = time.perf_counter()
        cfg = RolloutConfig(out=str(work / "rollout"), samples=args.samples, noise=args.noise, seed=args.seed,
                            workers=args.workers)
        rollout(tasks, cfg)
        trajs = [Trajectory.from_dict(r) for r in load_trajectories(work / "rollout")]
        order = {t.instance_id: i for i, t in enumerate(tasks)}  # finish order varies; keep task, sample order
        trajs.sort(key=lambda t: (order[t.instance_id], t.sampling["sample"]))
        t2 = time.perf_counter()
        console.print(f"{len(tasks)} validated tasks in {t1 - t0:.1f} s; {len(trajs)} graded oracle episodes in "
                      f"{t2 - t1:.1f} s ({(t2 - t1) / max(len(trajs), 1):.2f} s each at {args.workers} workers)")
    (work / "trajectories.jsonl").write_text("".join(t.to_json() + "\n" for t in trajs))
    ids = sorted({t.instance_id for t in trajs})
    resolved = sum(bool(t.resolved) for t in trajs)
    console.print(f"{len(trajs)} trajectories over {len(ids)} instances: {resolved} resolved, "
                  f"{len(trajs) - resolved} unresolved ({sum(not t.patch.strip() for t in trajs)} with no patch); "
                  f"trajectories in {work / 'trajectories.jsonl'}")

    base_cfg = load_config(VerifierRunConfig, args.config, {"kind": args.kind})
    _, tokenizer = load_base(base_cfg.model, args.kind, seed=base_cfg.training.seed, use_cpu=True)
    formatter = JudgeFormatter(tokenizer, max_length=base_cfg.data.max_length,
                               chat_template_kwargs=base_cfg.data.chat_template_kwargs)
    everything = build_judge_data(trajs, formatter, eval_fraction=0.0, balance_mode="none")
    examples = everything.train
    folds = [ids[i::args.folds] for i in range(args.folds)]

    table = Table(title=f"tiny {args.kind} verifier, {args.folds}-fold cross-validation by instance")
    for col in ("fold", "held-out instances", "train ex.", "held-out ex.", "loss start -> end", "train s",
                "score s", "AUC", "acc@0.5"):
        table.add_column(col, justify="right")
    pooled_s, pooled_y = [], []
    for n, held in enumerate(folds):
        held_set = set(held)
        train = [e for e in examples if e["instance_id"] not in held_set]
        evals = [e for e in examples if e["instance_id"] in held_set]
        if not evals or len({e["label"] for e in train}) < 2:
            table.add_row(str(n), str(len(held)), str(len(train)), str(len(evals)), "skipped", "", "", "", "")
            continue
        data_dir = work / f"fold{n}" / "data"
        write_judge_data(JudgeData(balance(train, base_cfg.data.balance, args.seed), evals, {"fold": n}), data_dir)
        cfg = load_config(VerifierRunConfig, args.config, {
            "kind": args.kind, "data.paths": [str(data_dir)], "output_dir": str(work / f"fold{n}" / "run"),
            "training.max_steps": args.max_steps})
        t0 = time.perf_counter()
        result = train_verifier(cfg, log=lambda m: None)
        t1 = time.perf_counter()
        scorer = LocalScorer(result.output_dir, batch_size=cfg.eval_batch_size)
        verdicts = scorer.score([e["messages"][:2] for e in evals])
        t2 = time.perf_counter()
        s = [v.score for v in verdicts]
        y = [bool(e["label"]) for e in evals]
        pooled_s += s
        pooled_y += y
        auc = roc_auc(s, y)
        m = result.metrics
        table.add_row(str(n), str(len(held)), str(len(train)), str(len(evals)),
                      f"{m.get('loss_start', float('nan')):.2f} -> {m.get('loss_end', float('nan')):.2f}",
                      f"{t1 - t0:.0f}", f"{t2 - t1:.1f}", "n/a" if auc is None else f"{auc:.3f}",
                      f"{accuracy(s, y):.2f}")
    console.print(table)
    auc = roc_auc(pooled_s, pooled_y)
    acc = accuracy(pooled_s, pooled_y) if pooled_s else None
    met = auc is not None and auc >= TARGET_AUC
    console.print(f"pooled held-out AUC over {len(pooled_s)} trajectories ({sum(pooled_y)} resolved): "
                  f"{'n/a' if auc is None else f'{auc:.3f}'} (target >= {TARGET_AUC}: "
                  + ("[green]MET[/green]" if met else "[red]NOT MET[/red]") + "); accuracy at 0.5: "
                  + ("n/a" if acc is None else f"{acc:.2f}"), highlight=False)
    (work / "result.json").write_text(json.dumps({"auc": auc, "accuracy": acc, "n": len(pooled_s)}, indent=2))


if __name__ == "__main__":
    main()
