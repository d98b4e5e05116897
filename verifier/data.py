"""Verifier data: one judge example per labelled trajectory, split by instance, optionally balanced.

`swelego verifier data TRAJ... --out DIR` writes
- `DIR/train.jsonl`, `DIR/eval.jsonl`: one example per line: `messages` (system, user, the
  target assistant turn), `label` (1 resolved / 0 not), `instance_id`, `sample`, and how the
  log was budgeted (`omitted_messages`, `cut_messages`, `over_budget`);
- `DIR/dataset/`: the same two splits as a `datasets.DatasetDict` (save_to_disk);
- `DIR/stats.json`: counts (examples, labels, skipped inputs and why).

Every instance lands on exactly one side of the split, so eval measures instances the
verifier has never seen.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from swelego.records import iter_jsonl, read_jsonl, write_jsonl_atomic
from swelego.trajectories.record import Trajectory
from verifier.prompt import JudgeFormatter

BALANCE_MODES = ("none", "downsample", "upsample")
TRAJECTORY_FILES = ("trajectories.jsonl", "samples.jsonl")


@dataclass
class LoadReport:
    """What reading trajectory files found besides trajectories."""

    files: int = 0
    bad_lines: list[str] = field(default_factory=list)  # "path:line: reason"
    duplicates: int = 0  # (instance, sample) seen before; the first is kept

    def to_dict(self) -> dict:
        return {"files": self.files, "bad_lines": len(self.bad_lines), "duplicates": self.duplicates,
                "bad_line_examples": self.bad_lines[:10]}


def trajectory_files(paths: Iterable[str | Path]) -> list[Path]:
    """JSONL files named directly, or the rollout file (`trajectories.jsonl` / `samples.jsonl`)
    of each directory."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / n for n in TRAJECTORY_FILES if (p / n).is_file()]
            if not found:
                raise FileNotFoundError(f"{p}: no {' or '.join(TRAJECTORY_FILES)} in this directory")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def sample_index(traj: Trajectory) -> int | None:
    value = (traj.sampling or {}).get("sample")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def load_trajectories(paths: Iterable[str | Path], report: LoadReport | None = None) -> list[Trajectory]:
    """Trajectories from JSONL files/directories. Unreadable lines are recorded in `report`
    (never raised); a trajectory without `sampling["sample"]` gets the next free index of its
    instance; a repeated (instance, sample) is dropped."""
    report = report if report is not None else LoadReport()
    out: list[Trajectory] = []
    seen: set[tuple[str, int]] = set()
    pending: list[Trajectory] = []
    for path in trajectory_files(paths):
        report.files += 1
        for n, rec in iter_jsonl(path):
            try:
                if isinstance(rec, ValueError):
                    raise rec
                traj = Trajectory.from_dict(rec)
                if not traj.instance_id:
                    raise ValueError("no instance_id")
            except Exception as e:
                report.bad_lines.append(f"{path}:{n}: {type(e).__name__}: {str(e)[:120]}")
                continue
            idx = sample_index(traj)
            if idx is None:
                pending.append(traj)
                continue
            if (traj.instance_id, idx) in seen:
                report.duplicates += 1
                continue
            seen.add((traj.instance_id, idx))
            traj.sampling = {**traj.sampling, "sample": idx}
            out.append(traj)
    for traj in pending:
        idx = 0
        while (traj.instance_id, idx) in seen:
            idx += 1
        seen.add((traj.instance_id, idx))
        traj.sampling = {**traj.sampling, "sample": idx}
        out.append(traj)
    return out


def split_by_instance(instance_ids: Iterable[str], eval_fraction: float, seed: int = 0) -> set[str]:
    """The instances that go to eval: a seeded hash order, the first `eval_fraction` of them
    (at least one when the fraction is positive and there are two or more instances)."""
    ids = sorted(set(instance_ids))
    if eval_fraction <= 0 or len(ids) < 2:
        return set()
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n = min(max(1, round(eval_fraction * len(ids))), len(ids) - 1)
    return set(ranked[:n])


def balance(examples: list[dict], mode: str, seed: int = 0) -> list[dict]:
    """`none`: as is; `downsample`: drop random examples of the larger class to the size of the
    smaller; `upsample`: repeat random examples of the smaller class up to the larger."""
    if mode not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {', '.join(BALANCE_MODES)}, not {mode!r}")
    pos = [e for e in examples if e["label"]]
    neg = [e for e in examples if not e["label"]]
    if mode == "none" or not pos or not neg or len(pos) == len(neg):
        return list(examples)
    rng = random.Random(seed)
    small, large = (pos, neg) if len(pos) < len(neg) else (neg, pos)
    if mode == "downsample":
        large = rng.sample(large, len(small))
    else:
        small = small + [rng.choice(small) for _ in range(len(large) - len(small))]
    out = small + large
    rng.shuffle(out)
    return out


@dataclass
class JudgeData:
    train: list[dict]
    eval: list[dict]
    stats: dict


def build_judge_data(trajectories: list[Trajectory], formatter: JudgeFormatter, *, eval_fraction: float = 0.1,
                     balance_mode: str = "none", seed: int = 0, drop_over_budget: bool = True,
                     load_report: LoadReport | None = None) -> JudgeData:
    """Judge examples for every labelled trajectory, split by instance; train is balanced."""
    skipped: Counter[str] = Counter()
    examples = []
    for traj in trajectories:
        if traj.resolved is None:
            skipped["no label (resolved is null)"] += 1
            continue
        ex = formatter.example(traj.messages, traj.patch or "", bool(traj.resolved))
        if ex["over_budget"] and drop_over_budget:
            skipped["patch longer than max_length"] += 1
            continue
        examples.append({"instance_id": traj.instance_id, "sample": sample_index(traj), "policy": traj.policy,
                         **ex})
    held = split_by_instance([e["instance_id"] for e in examples], eval_fraction, seed)
    train = [e for e in examples if e["instance_id"] not in held]
    evals = [e for e in examples if e["instance_id"] in held]
    train_raw = len(train)
    train_instances = len({e["instance_id"] for e in train})
    train = balance(train, balance_mode, seed)

    def labels(rows: list[dict]) -> dict:
        c = Counter(int(r["label"]) for r in rows)
        return {"yes": c[1], "no": c[0]}

    stats = {
        "trajectories": len(trajectories), "examples": len(examples), "skipped": dict(skipped),
        "instances": {"train": train_instances, "eval": len(held)},
        "train": {"examples": len(train), "before_balance": train_raw, **labels(train)},
        "eval": {"examples": len(evals), **labels(evals)},
        "trimmed": sum(1 for e in examples if e["omitted_messages"] or e["cut_messages"]),
        "balance": balance_mode, "eval_fraction": eval_fraction, "seed": seed,
        "max_length": formatter.max_length,
    }
    if load_report is not None:
        stats["input"] = load_report.to_dict()
    return JudgeData(train, evals, stats)


def write_judge_data(data: JudgeData, out: str | Path) -> Path:
    import datasets

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", data.train), ("eval", data.eval)):
        write_jsonl_atomic(out / f"{name}.jsonl", rows)
    features = datasets.Features({
        "instance_id": datasets.Value("string"), "sample": datasets.Value("int64"),
        "policy": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "label": datasets.Value("int64"), "omitted_messages": datasets.Value("int64"),
        "cut_messages": datasets.Value("int64"), "over_budget": datasets.Value("bool"),
    })
    datasets.DatasetDict({name: datasets.Dataset.from_list(rows, features=features)
                          for name, rows in (("train", data.train), ("eval", data.eval))}
                         ).save_to_disk(str(out / "dataset"))
    (out / "stats.json").write_text(json.dumps(data.stats, indent=2) + "\n")
    return out


def is_judge_data(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "train.jsonl").is_file()


def read_judge_split(path: str | Path, split: str) -> list[dict]:
    return read_jsonl(Path(path) / f"{split}.jsonl", missing_ok=True, strict=True)
