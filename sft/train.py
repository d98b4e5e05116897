"""`swelego sft train`: error-masked, curriculum-staged SFT on TRL, and its run card.

Order of work: load the model and tokenizer, prepare (or reuse) the pre-tokenized data, plan
the stages, train, save `OUTPUT/model`, write `OUTPUT/run_card.json` + `run_card.md`.

Learning-rate schedule across stages (`curriculum.lr_schedule`):
- `global` (default): one trainer reads all stages in order (each stage's rows shuffled, repeated
  for its epochs, then the next stage), so warmup and decay span the whole curriculum and the
  optimizer state carries over. Stage boundaries are logged when training crosses them.
- `per_stage`: one trainer per stage, each starting from the previous stage's weights with a
  fresh optimizer, warmup and decay; each stage's model is saved under `OUTPUT/stage-K` and a
  rerun skips the stages already done.
With the curriculum off, one trainer reads the shuffled union of all trajectories for
`training.num_train_epochs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from sft.config import SFTRunConfig, config_to_dict, dump_config, load_config, merge
from sft.curriculum import StagePlan, plan_stages, single_stage
from sft.prepare import load_or_prepare
from sft.trainer import (
    load_model_and_tokenizer,
    pack_rows,
    resolve_packing,
    rows_per_step,
    sft_arguments,
    steps_for,
    train_tokenized,
)
from swelego.errors import SwelegoError

log = logging.getLogger("sft.train")


@dataclass
class RunResult:
    """What a run produced: where, its run card, and the logged training losses in order."""

    output_dir: Path
    run_card_path: Path
    losses: list[float]
    model_dir: Path | None = None
    stages: list[dict] = field(default_factory=list)


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


def _make_callbacks(sink: list[dict], stage_starts: list[int], announce: Callable[[int], None],
                    stage_index: int | None, step_offset: int):
    """A callback that records losses (with their stage) and announces stage boundaries."""
    base = _callback_base()

    class CurriculumProgress(base):
        def __init__(self):
            self.next = 0

        def _stage_at(self, step: int) -> int:
            if stage_index is not None:
                return stage_index
            k = 0
            for i, s in enumerate(stage_starts):
                if step >= s:
                    k = i
            return k

        def on_step_begin(self, args, state, control, **kw):
            while stage_index is None and self.next < len(stage_starts) and state.global_step >= stage_starts[self.next]:
                announce(self.next)
                self.next += 1

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                step = state.global_step
                sink.append({"step": step_offset + step, "loss": float(logs["loss"]),
                             "stage": self._stage_at(max(step - 1, 0)) + 1,
                             "learning_rate": float(logs.get("learning_rate", 0.0))})

    return CurriculumProgress()


def _repeat_block(block, epochs: float, seed: int):
    """`block` shuffled and repeated for `epochs` passes (a fractional last pass takes a prefix)."""
    from datasets import concatenate_datasets

    full = int(math.floor(epochs))
    parts = [block.shuffle(seed=seed + r) for r in range(full)]
    frac = epochs - full
    if frac > 1e-9 and len(block):
        n = max(1, round(frac * len(block)))
        parts.append(block.shuffle(seed=seed + full).select(range(n)))
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def share_out(sizes: list[int], budget: int) -> list[int]:
    """`budget` split in proportion to `sizes` (largest remainders; at least 1 for a non-empty size)."""
    total = sum(sizes)
    if total <= budget:
        return list(sizes)
    exact = [s * budget / total for s in sizes]
    out = [max(1, int(x)) if s else 0 for x, s in zip(exact, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    for i in order:
        if sum(out) >= budget:
            break
        if sizes[i] and out[i] < sizes[i]:
            out[i] += 1
    return out


def _scale_to_cap(sizes: list[int], cap_steps: int, per_step: int) -> list[int]:
    """Rows per block so that the whole run fits `cap_steps`, keeping the blocks' proportions."""
    if cap_steps <= 0:
        return sizes
    return share_out(sizes, cap_steps * per_step)


def ordered_curriculum(ds, plans: list[StagePlan], training, max_length: int):
    """The curriculum as one dataset read in order: for each stage, its rows (packed when
    `training.packing`) shuffled and repeated for its epochs; with `training.max_steps` set, every
    stage is cut in proportion so the whole curriculum fits. Returns (dataset, first row of each stage)."""
    from datasets import concatenate_datasets

    blocks = []
    for k, plan in enumerate(plans):
        block = ds.select(plan.rows)
        if training.packing:
            block = pack_rows(block, max_length, training.seed + k)
        blocks.append(_repeat_block(block, plan.epochs, training.seed + 1000 * k))
    sizes = _scale_to_cap([len(b) for b in blocks], training.max_steps, rows_per_step(training))
    blocks = [b.select(range(n)) if n < len(b) else b for b, n in zip(blocks, sizes, strict=True)]
    starts, acc = [], 0
    for b in blocks:
        starts.append(acc)
        acc += len(b)
    return concatenate_datasets(blocks), starts


def _run_key(cfg: SFTRunConfig, prep_key: str) -> str:
    d = config_to_dict(cfg)
    d.pop("output_dir", None)
    return hashlib.sha256(json.dumps([d, prep_key], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resolve(config: str | Path | SFTRunConfig, overrides: dict | None) -> SFTRunConfig:
    if isinstance(config, SFTRunConfig):
        if not overrides:
            return config
        from sft.config import _build

        return _build(SFTRunConfig, merge(config_to_dict(config), overrides))
    return load_config(SFTRunConfig, config, overrides or {})


@dataclass
class _Job:
    """One fine-tuning run in progress: what its steps share."""

    cfg: SFTRunConfig
    out: Path
    console: Console
    model: Any
    tokenizer: Any
    template: str
    training: Any  # the TrainingConfig with packing resolved
    liger: bool
    n_params: int
    run_key: str = ""
    losses: list[dict] = field(default_factory=list)
    stage_rows: list[dict] = field(default_factory=list)
    last_trainer: Any = None

    def announce(self, plan: StagePlan, k: int, n_stages: int, n_rows: int, a: int, b: int) -> None:
        msg = (f"stage {k + 1}/{n_stages} [{', '.join(plan.buckets)}]: {len(plan.rows)} trajectories, "
               f"{plan.epochs:g} epoch(s), {n_rows} rows, steps {a + 1}-{b}")
        log.info(msg)
        self.console.print(f"[bold cyan]{escape(msg)}[/]", highlight=False)


def _load_model(cfg: SFTRunConfig, out: Path, console: Console) -> _Job:
    model, tokenizer, template = load_model_and_tokenizer(cfg.model, use_cpu=cfg.training.use_cpu)
    attn = model.config._attn_implementation
    try:
        packing = resolve_packing(cfg.training.packing, attn)
    except ValueError as e:
        raise SwelegoError(str(e)) from None
    liger = cfg.model.liger_kernel
    if liger and importlib.util.find_spec("liger_kernel") is None:
        console.print("[yellow]warning:[/] model.liger_kernel is set but liger-kernel is not installed; off")
        liger = False
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"model {cfg.model.name_or_path}: {n_params:,} parameters, "
                  f"attention {model.config._attn_implementation}")
    return _Job(cfg=cfg, out=out, console=console, model=model, tokenizer=tokenizer, template=template,
                training=dataclasses.replace(cfg.training, packing=packing), liger=liger, n_params=n_params)


def _prepare(job: _Job):
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = job.console
    with Progress(SpinnerColumn(), TextColumn("preparing trajectories"), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("prepare", total=None)
        ds, stats, reused = load_or_prepare(
            job.out / "prepared", job.cfg.data, job.cfg.curriculum, job.tokenizer, job.template,
            progress=lambda n: bar.advance(task, n),
            warn=lambda line: console.print(f"[yellow]warning:[/] {line}", highlight=False))
    console.print(
        f"data: {stats['kept']} of {stats['read']} trajectories kept{' (reused)' if reused else ''}; "
        f"masked {stats['masked_turns']}/{stats['turns']} assistant turns "
        f"({100 * stats['masked_turn_share']:.1f}%), overlong dropped {stats['overlong_dropped']}, "
        f"truncated {stats['overlong_truncated']}, all-masked dropped {stats['all_masked_dropped']}")
    if len(ds) == 0:
        raise SwelegoError("no trainable trajectories after preparation (see the warnings above)")
    return ds, stats


def _stage_plans(job: _Job, ds) -> list[StagePlan]:
    cur = job.cfg.curriculum
    if not cur.enabled:
        return single_stage(len(ds), job.training.num_train_epochs)
    plans = plan_stages(list(ds["bucket"]), cur)
    for p in plans:
        if not p.rows:
            job.console.print(f"[yellow]warning:[/] stage {p.index + 1} ({', '.join(p.buckets)}) has no "
                              "trajectories; skipped")
    plans = [p for p in plans if p.rows]
    if not plans:
        raise SwelegoError("no curriculum stage has any trajectory; check curriculum.buckets and stages")
    return plans


def _resume_point(job: _Job) -> str | None:
    """The last checkpoint under OUTPUT/trainer when it belongs to this config and data, else None."""
    out, training = job.out, job.training
    resume = None
    stamp = out / "trainer" / ".run-key"
    if training.save_strategy != "no" and (out / "trainer").is_dir():
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(out / "trainer"))
        if last and stamp.is_file() and stamp.read_text().strip() == job.run_key:
            resume = last
            job.console.print(f"resuming from {resume}")
        elif last:
            job.console.print(f"[yellow]warning:[/] {escape(str(out / 'trainer'))} holds checkpoints of a different "
                              "config or data; starting over")
    (out / "trainer").mkdir(parents=True, exist_ok=True)
    stamp.write_text(job.run_key)
    return resume


def _train_global(job: _Job, ds, plans: list[StagePlan]) -> None:
    """One trainer over every stage in order: one warmup and decay (or one shuffled run)."""
    training, out, max_len, cur = job.training, job.out, job.cfg.data.max_length, job.cfg.curriculum
    per_step = rows_per_step(training)
    if cur.enabled:
        train_ds, starts = ordered_curriculum(ds, plans, training, max_len)
        sizes = [b - a for a, b in zip(starts, [*starts[1:], len(train_ds)], strict=True)]
        total_steps = steps_for(len(train_ds), 1.0, training)
        if training.max_steps > 0:
            total_steps = min(total_steps, training.max_steps)
        args = sft_arguments(training, out / "trainer", max_length=max_len, num_train_epochs=1.0,
                             max_steps=total_steps, ordered=True, liger_kernel=job.liger)
        starts = [a // per_step for a in starts]
    else:
        train_ds = pack_rows(ds, max_len, training.seed) if training.packing else ds
        sizes, starts = [len(train_ds)], [0]
        total_steps = steps_for(len(train_ds), plans[0].epochs, training)
        if training.max_steps > 0:
            total_steps = min(total_steps, training.max_steps)
        args = sft_arguments(training, out / "trainer", max_length=max_len, num_train_epochs=plans[0].epochs,
                             max_steps=training.max_steps, ordered=False, liger_kernel=job.liger)
    ends = [*starts[1:], total_steps]
    for k, plan in enumerate(plans):
        job.stage_rows.append({**plan.to_dict(), "rows": sizes[k], "start_step": starts[k] + 1,
                               "end_step": max(ends[k], starts[k] + 1)})
    cb = _make_callbacks(job.losses, starts,
                         lambda k: job.announce(plans[k], k, len(plans), sizes[k], starts[k],
                                                max(ends[k], starts[k] + 1)),
                         None, 0)
    resume = _resume_point(job)
    job.last_trainer = train_tokenized(job.model, job.tokenizer, train_ds, args, callbacks=[cb],
                                       resume_from_checkpoint=resume)
    if resume:  # the losses logged before the checkpoint belong to this run too
        state = json.loads((Path(resume) / "trainer_state.json").read_text())
        first_new = job.losses[0]["step"] if job.losses else 10**12
        earlier = [{"step": e["step"], "loss": float(e["loss"]),
                    "stage": 1 + max(i for i, s in enumerate(starts) if e["step"] - 1 >= s),
                    "learning_rate": float(e.get("learning_rate", 0.0))}
                   for e in state.get("log_history", []) if "loss" in e and e["step"] < first_new]
        job.losses[:0] = earlier


def _train_per_stage(job: _Job, ds, plans: list[StagePlan]) -> None:
    """A trainer per stage, each restarting warmup and decay from the previous stage's weights;
    a rerun skips the stages already trained for the same config and data."""
    training, out, max_len = job.training, job.out, job.cfg.data.max_length
    natural = [steps_for(len(p.rows), p.epochs, training) for p in plans]
    caps = share_out(natural, training.max_steps) if training.max_steps > 0 else natural
    offset = 0
    for k, plan in enumerate(plans):
        stage_dir = out / f"stage-{k + 1}"
        done = stage_dir / ".done"
        block = ds.select(plan.rows)
        if training.packing:
            block = pack_rows(block, max_len, training.seed + k)
        steps_k = min(caps[k], steps_for(len(block), plan.epochs, training))
        job.announce(plan, k, len(plans), len(block), offset, offset + steps_k)
        job.stage_rows.append({**plan.to_dict(), "rows": len(block), "start_step": offset + 1,
                               "end_step": offset + steps_k})
        if done.is_file() and done.read_text().strip() == job.run_key:
            job.console.print(f"stage {k + 1} already trained ({stage_dir}); loading its weights")
            job.model, job.tokenizer, job.template = load_model_and_tokenizer(
                job.cfg.model, use_cpu=training.use_cpu, path=str(stage_dir))
            offset += steps_k
            continue
        args = sft_arguments(training, out / "trainer" / f"stage-{k + 1}", max_length=max_len,
                             num_train_epochs=plan.epochs, max_steps=steps_k, ordered=False,
                             liger_kernel=job.liger, save_strategy="no", seed=training.seed + k)
        cb = _make_callbacks(job.losses, [0], lambda _k: None, k, offset)
        job.last_trainer = train_tokenized(job.model, job.tokenizer, block, args, callbacks=[cb])
        job.model = job.last_trainer.model
        job.last_trainer.save_model(str(stage_dir))
        job.tokenizer.save_pretrained(str(stage_dir))
        done.write_text(job.run_key)
        offset += steps_k


def _run_card(job: _Job, mode: str, stats: dict, model_dir: Path, seconds: float) -> dict:
    import torch

    cfg, cur, training = job.cfg, job.cfg.curriculum, job.training
    loss_values = [x["loss"] for x in job.losses]
    for s in job.stage_rows:
        mine = [x["loss"] for x in job.losses if x["stage"] == s["stage"]]
        s["first_loss"] = mine[0] if mine else None
        s["last_loss"] = mine[-1] if mine else None
    return {
        "run": {"output_dir": str(job.out), "model_dir": str(model_dir), "seconds": round(seconds, 1),
                "lr_schedule": mode if cur.enabled else "single", "error_mask": cfg.data.error_mask,
                "mask_source": cfg.data.mask_source,
                "curriculum": cur.enabled, "rows_per_step": rows_per_step(training), "packing": training.packing,
                "liger_kernel": job.liger,
                "sampling": "stages in order, shuffled within a stage" if cur.enabled else "shuffled union",
                "device": "cuda" if torch.cuda.is_available() and not training.use_cpu else "cpu"},
        "model": {"name_or_path": cfg.model.name_or_path, "parameters": job.n_params,
                  "attn_implementation": job.model.config._attn_implementation},
        "data": stats,
        "stages": job.stage_rows,
        "losses": {"first": loss_values[0] if loss_values else None,
                   "final": loss_values[-1] if loss_values else None,
                   "min": min(loss_values) if loss_values else None, "log": job.losses},
        "config": config_to_dict(cfg),
        "versions": _versions(),
    }


def train_from_config(config: str | Path | SFTRunConfig, overrides: dict | None = None, *,
                      console: Console | None = None) -> RunResult:
    """Run one fine-tuning job from a YAML path or config object, with dotted-key `overrides`:
    load the model, prepare (or reuse) the data, train the curriculum stages, save the model and
    write the run card."""
    from transformers import set_seed

    cfg = _resolve(config, overrides)
    console = console or Console(stderr=True)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    started = time.time()
    set_seed(cfg.training.seed)
    job = _load_model(cfg, out, console)
    ds, stats = _prepare(job)
    plans = _stage_plans(job, ds)
    mode = "per_stage" if cfg.curriculum.enabled and cfg.curriculum.lr_schedule == "per_stage" else "global"
    job.run_key = _run_key(cfg, json.loads((out / "prepared" / "prepare.json").read_text())["key"])
    (_train_global if mode == "global" else _train_per_stage)(job, ds, plans)

    model_dir = out / "model"
    if job.last_trainer is not None:
        job.last_trainer.save_model(str(model_dir))
    else:  # every stage was already trained
        job.model.save_pretrained(str(model_dir))
    job.tokenizer.chat_template = job.template  # generation renders prompts exactly as training did
    job.tokenizer.save_pretrained(str(model_dir))
    card = _run_card(job, mode, stats, model_dir, time.time() - started)
    card_path = out / "run_card.json"
    card_path.write_text(json.dumps(card, indent=2, default=str))
    (out / "run_card.md").write_text(render_run_card(card))
    console.print(f"done: model in {model_dir}, run card {card_path}; loss "
                  f"{card['losses']['first']} -> {card['losses']['final']}")
    return RunResult(output_dir=out, run_card_path=card_path, losses=[x["loss"] for x in job.losses],
                     model_dir=model_dir, stages=job.stage_rows)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "trl", "datasets", "accelerate", "deepspeed", "flash-attn", "liger-kernel"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


def render_run_card(card: dict) -> str:
    d, run = card["data"], card["run"]
    lines = [
        "# SFT run card", "",
        f"- model: `{card['model']['name_or_path']}` ({card['model']['parameters']:,} parameters, "
        f"{card['model']['attn_implementation']}, {run['device']})",
        f"- error masking: {'on (' + run.get('mask_source', 'rules') + ')' if run['error_mask'] else 'off'}"
        + (f", {d['without_imported_masks']} trajectories without imported masks"
           if d.get("without_imported_masks") else "") + "; curriculum: "
        f"{'on' if run['curriculum'] else 'off'} (schedule: {run['lr_schedule']})",
        f"- trajectories: {d['kept']} kept of {d['read']} read; dropped: {d['bad_records']} unreadable, "
        f"{d['render_errors']} unrenderable, {d['overlong_dropped']} over max_length, "
        f"{d['all_masked_dropped']} fully masked, {d['not_resolved']} unresolved; "
        f"{d['overlong_truncated']} truncated (keep_start)",
        f"- tokens: {d['tokens']:,} total, {d['trained_tokens']:,} trained; masked turns "
        f"{d['masked_turns']}/{d['turns']} ({100 * d['masked_turn_share']:.1f}%), masked assistant tokens "
        f"{100 * d['masked_token_share']:.1f}%",
        f"- loss: first {_fmt(card['losses']['first'])}, final {_fmt(card['losses']['final'])}, "
        f"min {_fmt(card['losses']['min'])}; {run['seconds']} s", "",
        "| stage | buckets | epochs | trajectories | rows | steps | first loss | last loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in card["stages"]:
        lines.append(f"| {s['stage']} | {', '.join(s['buckets'])} | {s['epochs']:g} | {s['trajectories']} | "
                     f"{s['rows']} | {s['start_step']}-{s['end_step']} | {_fmt(s['first_loss'])} | "
                     f"{_fmt(s['last_loss'])} |")
    lab = d.get("labels") or {}
    if lab.get("masked_by_rule"):
        lines += ["", "| rule | turns masked | fired |", "|---|---|---|"]
        for rule in sorted(set(lab["masked_by_rule"]) | set(lab.get("fired_by_rule", {}))):
            lines.append(f"| {rule} | {lab['masked_by_rule'].get(rule, 0)} | {lab['fired_by_rule'].get(rule, 0)} |")
    lines += ["", "Config: see config.yaml next to this card.", ""]
    return "\n".join(lines)
