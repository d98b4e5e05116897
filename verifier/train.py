"""`swelego verifier train`: fine-tune a verifier on judge examples.

Generative (the paper's): TRL `SFTTrainer`, through the SFT room's `sft_arguments` and
`train_tokenized`, on pre-tokenized prompt -> completion examples
whose loss covers only the answer (`YES</judgement>` or `NO</judgement>` and the end of turn).
The prompt ends with the opening `<judgement>` tag and is tokenized on its own, so the
training prefix is token for token the prefix `verifier score` reads the verdict after.

Regressive: a scalar head (`AutoModelForSequenceClassification`, one output) on the same
prompts, trained with binary cross-entropy against the labels by a `transformers.Trainer`.

The run directory gets the model and tokenizer, `verifier.json` (kind, max_length, chat
template kwargs; read back by `verifier score`), `run.yaml` (the resolved config),
`data/` (the judge data used), `metrics.json` (loss curve, held-out AUC and accuracy) and
`instances.json` (`{"train": [...], "eval": [...]}`: the instance ids it learned from and was
evaluated on), which `tts run --exclude-instances` and `tts score`'s overlap check read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.config import ModelConfig, TrainingConfig, dump_config
from swelego.config import doc_field as _help
from swelego.errors import SwelegoError
from verifier.data import (
    BALANCE_MODES,
    JudgeData,
    LoadReport,
    build_judge_data,
    is_judge_data,
    load_trajectories,
    read_judge_split,
    write_judge_data,
)
from verifier.prompt import JudgeFormatter
from verifier.score import KINDS, META_FILE, LocalScorer, accuracy, roc_auc

INSTANCES_FILE = "instances.json"


def trained_instances(path: str | Path) -> set[str]:
    """The instance ids a verifier was trained on, or any list of ids: a verifier directory (its
    `instances.json`), that file itself (its `train` list), a JSON list, or a text / JSONL file
    with one id (or one object with `instance_id`) per line. SwelegoError when unreadable."""
    p = Path(path)
    if p.is_dir():
        if not (p / INSTANCES_FILE).is_file():
            raise SwelegoError(f"{p}: no {INSTANCES_FILE} (verifiers trained before it was written do not say "
                               "which instances they saw; retrain, or pass a file of ids)")
        p = p / INSTANCES_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SwelegoError(f"cannot read instance ids from {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("train"), list):
        return {str(x) for x in data["train"]}
    if isinstance(data, list):
        return {str(x.get("instance_id")) if isinstance(x, dict) else str(x) for x in data}
    ids = set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                line = str(json.loads(line)["instance_id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SwelegoError(f"{p}:{n}: not an instance id nor an object with instance_id") from None
        ids.add(line)
    return ids


@dataclass
class VerifierDataConfig:
    """The examples a verifier learns from."""

    paths: list[str] = _help(
        "Trajectory JSONL files / rollout folders (judge examples are built on the fly), or one folder written "
        "by `swelego verifier data` (its train/eval splits are used as they are).", default_factory=list)
    max_length: int = _help("Token budget of a judge prompt plus its answer; long logs are trimmed in the "
                            "middle, the patch never. SWE-Lego: 131072.", default=131072)
    eval_fraction: float = _help("Share of instances held out for evaluation (split by instance).", default=0.1)
    balance: str = _help("Class balance of the training split: none, downsample or upsample.", default="none")
    seed: int = _help("Seed of the instance split and the balancing.", default=0)
    chat_template_kwargs: dict = _help(
        "Passed to the chat template when rendering the judge prompt; Qwen3: {enable_thinking: false} so the "
        "prompt ends with the empty think block.", default_factory=lambda: {"enable_thinking": False})


@dataclass
class VerifierRunConfig:
    """`swelego verifier train`: one verifier training run."""

    output_dir: str = _help("Where the verifier, its data and metrics go.", default="runs/verifier")
    kind: str = _help("generative (YES/NO judgement tokens) or regressive (scalar head, BCE).",
                      default="generative")
    model: ModelConfig = _help("The base model (sft.config.ModelConfig; `tiny` builds the offline tiny Qwen3).",
                               default_factory=ModelConfig)
    data: VerifierDataConfig = _help("The judge data (VerifierDataConfig).", default_factory=VerifierDataConfig)
    training: TrainingConfig = _help("The optimiser (sft.config.TrainingConfig).", default_factory=TrainingConfig)
    eval_batch_size: int = _help("Prompts per batch when scoring the held-out split after training.", default=4)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise SwelegoError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.data.balance not in BALANCE_MODES:
            raise SwelegoError(f"data.balance must be one of {', '.join(BALANCE_MODES)}, not {self.data.balance!r}")
        if not self.data.paths:
            raise SwelegoError("no training data: set data.paths in the config or pass --data")
        if self.data.max_length < 64:
            raise SwelegoError(f"data.max_length {self.data.max_length} is too small for a judge prompt")


@dataclass
class TrainResult:
    output_dir: Path
    losses: list[float] = field(default_factory=list)  # logged training losses, in order
    metrics: dict[str, Any] = field(default_factory=dict)


# -- model loading (the SFT room's pieces; the verifier renders with the tokenizer's own template) --


def load_base(model: ModelConfig, kind: str, *, seed: int, use_cpu: bool):
    """(model, tokenizer) for a verifier run: a causal LM (generative) or the same checkpoint with
    a one-output classification head (regressive); `tiny` is built offline by the SFT room."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from sft.trainer import has_gpu, load_tokenizer, model_config, model_path, resolve_attn_implementation

    src = model_path(model, seed)
    tokenizer = load_tokenizer(model, src)
    if model.chat_template not in ("auto", ""):
        tokenizer.chat_template = Path(model.chat_template).read_text(encoding="utf-8")
    config = model_config(model, src)
    on_gpu = has_gpu() and not use_cpu
    dtype = ("auto" if on_gpu else torch.float32) if model.dtype == "auto" else getattr(torch, model.dtype)
    kwargs = {"config": config, "dtype": dtype, "attn_implementation": resolve_attn_implementation(
        model.attn_implementation), "trust_remote_code": model.trust_remote_code}
    if kind == "generative":
        net = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    else:
        config.num_labels = 1
        config.pad_token_id = tokenizer.pad_token_id
        net = AutoModelForSequenceClassification.from_pretrained(src, **kwargs)
    net.config.use_cache = False
    return net, tokenizer


# -- data -----------------------------------------------------------------------------------------


def judge_data_for(cfg: VerifierRunConfig, formatter: JudgeFormatter) -> JudgeData:
    """The judge examples: read from a `verifier data` folder, or built from trajectories."""
    paths = cfg.data.paths
    if len(paths) == 1 and is_judge_data(paths[0]):
        train, evals = read_judge_split(paths[0], "train"), read_judge_split(paths[0], "eval")
        return JudgeData(train, evals, {"source": str(paths[0]), "train": {"examples": len(train)},
                                        "eval": {"examples": len(evals)}})
    report = LoadReport()
    try:
        trajs = load_trajectories(paths, report)
    except FileNotFoundError as e:
        raise SwelegoError(str(e)) from None
    return build_judge_data(trajs, formatter, eval_fraction=cfg.data.eval_fraction, balance_mode=cfg.data.balance,
                            seed=cfg.data.seed, load_report=report)


def tokenize_split(rows: list[dict], formatter: JudgeFormatter, kind: str, max_length: int
                   ) -> tuple[list[dict], int]:
    """Token rows for one split, and how many examples were over max_length (dropped)."""
    out, dropped = [], 0
    for row in rows:
        ex = formatter.tokenize_example(row["messages"], bool(row["label"]))
        if len(ex["input_ids"]) > max_length:
            dropped += 1
            continue
        n_prompt = ex["completion_mask"].index(1)
        if kind == "regressive":
            ex = {"input_ids": ex["input_ids"][:n_prompt], "labels": float(row["label"])}
        else:
            ex = {"input_ids": ex["input_ids"], "labels": [-100] * n_prompt + ex["input_ids"][n_prompt:]}
        out.append(ex)
    return out, dropped


# -- training -------------------------------------------------------------------------------------


def _bce_trainer_class():
    import torch.nn.functional as F
    from transformers import Trainer

    class BCETrainer(Trainer):
        """A Trainer whose loss is binary cross-entropy on the model's single output logit."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels").float()
            outputs = model(**inputs)
            logits = outputs.logits.squeeze(-1).float()
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            return (loss, outputs) if return_outputs else loss

    return BCETrainer


def train_verifier(cfg: VerifierRunConfig, log=print) -> TrainResult:
    """Train a verifier as `cfg` says; returns the losses and the held-out metrics."""
    import datasets

    cfg.validate()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "run.yaml")
    model, tokenizer = load_base(cfg.model, cfg.kind, seed=cfg.training.seed, use_cpu=cfg.training.use_cpu)
    formatter = JudgeFormatter(tokenizer, max_length=cfg.data.max_length,
                               chat_template_kwargs=cfg.data.chat_template_kwargs)
    data = judge_data_for(cfg, formatter)
    write_judge_data(data, out / "data")
    # which instances it learns from, so a TTS run can be kept disjoint from them (tts score checks)
    seen = {"train": sorted({str(r["instance_id"]) for r in data.train}),
            "eval": sorted({str(r["instance_id"]) for r in data.eval})}
    (out / INSTANCES_FILE).write_text(json.dumps(seen, indent=1) + "\n")
    train_rows, train_dropped = tokenize_split(data.train, formatter, cfg.kind, cfg.data.max_length)
    if not train_rows:
        raise SwelegoError(f"no training examples left (data stats: {json.dumps(data.stats)[:300]})")
    labels = [int(r["label"]) for r in data.train]
    log(f"judge data: {len(train_rows)} train ({sum(labels)} YES / {len(labels) - sum(labels)} NO), "
        f"{len(data.eval)} eval; {train_dropped} over max_length dropped")
    train_ds = datasets.Dataset.from_list(train_rows)
    ckpt_dir = out / "checkpoints"
    if cfg.kind == "generative":
        from sft.trainer import pack_rows, resolve_packing, sft_arguments, train_tokenized

        args = sft_arguments(cfg.training, ckpt_dir, max_length=cfg.data.max_length,
                             liger_kernel=cfg.model.liger_kernel)
        if resolve_packing(cfg.training.packing):
            train_ds = pack_rows(train_ds, cfg.data.max_length, cfg.training.seed)
        trainer = train_tokenized(model, tokenizer, train_ds, args)
    else:
        from transformers import DataCollatorWithPadding

        from sft.trainer import sft_arguments

        args = sft_arguments(cfg.training, ckpt_dir, max_length=None, packing=False, padding_free=False)
        trainer = _bce_trainer_class()(model=model, args=args, train_dataset=train_ds,
                                       data_collator=DataCollatorWithPadding(tokenizer),
                                       processing_class=tokenizer)
        trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    meta = {"kind": cfg.kind, "max_length": cfg.data.max_length,
            "chat_template_kwargs": cfg.data.chat_template_kwargs, "base_model": cfg.model.name_or_path}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    metrics: dict[str, Any] = {"kind": cfg.kind, "train_examples": len(train_rows), "train_dropped": train_dropped,
                               "steps": trainer.state.global_step, "losses": losses, "data": data.stats}
    if losses:
        n = max(1, min(5, len(losses) // 4))
        metrics["loss_start"] = sum(losses[:n]) / n
        metrics["loss_end"] = sum(losses[-n:]) / n
    if data.eval:
        scorer = LocalScorer(out, batch_size=cfg.eval_batch_size)
        verdicts = scorer.score([row["messages"][:2] for row in data.eval])
        scored = [(v.score, bool(r["label"])) for v, r in zip(verdicts, data.eval, strict=True)
                  if v.score is not None and math.isfinite(v.score)]
        s, y = [p[0] for p in scored], [p[1] for p in scored]
        metrics["eval"] = {"examples": len(data.eval), "scored": len(scored), "auc": roc_auc(s, y),
                           "accuracy": accuracy(s, y)}
        metrics["eval_scores"] = [{"instance_id": r["instance_id"], "sample": r.get("sample"), "label": r["label"],
                                   "score": v.score} for v, r in zip(verdicts, data.eval, strict=True)]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return TrainResult(out, losses, metrics)
