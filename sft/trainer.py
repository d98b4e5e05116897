"""The training pieces other rooms reuse: load a model + tokenizer from a `ModelConfig`, map a
`TrainingConfig` onto `trl.SFTConfig`, and run TRL's `SFTTrainer` on a pre-tokenized dataset
(`input_ids` + `labels`, -100 = no loss).

The verifier trains through the same calls: `load_model_and_tokenizer`, its own examples from
`sft.tokens.render_prompt_completion`, then `train_tokenized`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from sft.config import ModelConfig, TrainingConfig
from sft.tokens import training_chat_template

log = logging.getLogger("sft.trainer")


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_attn_implementation(spec: str) -> str:
    """`auto` -> flash_attention_2 when flash-attn is importable and a GPU is present, else sdpa."""
    if spec != "auto":
        return spec
    from transformers.utils import is_flash_attn_2_available

    return "flash_attention_2" if has_gpu() and is_flash_attn_2_available() else "sdpa"


def resolve_packing(value: bool | str, attn: str | None = None) -> bool:
    """`training.packing` as a bool: `auto` = on when the attention is (or would be) flash_attention_2."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("true", "false"):
        return v == "true"
    if v != "auto":
        raise ValueError(f"training.packing must be true, false or auto, got {value!r}")
    return (attn or resolve_attn_implementation("auto")) == "flash_attention_2"


def _dtype(spec: str, on_gpu: bool):
    import torch

    if spec == "auto":
        # The checkpoint's dtype on GPU; float32 on CPU, where bf16 matmuls are slow and lossy.
        return "auto" if on_gpu else torch.float32
    try:
        return getattr(torch, spec)
    except AttributeError:
        raise ValueError(f"unknown dtype {spec!r}") from None


def model_path(cfg: ModelConfig, seed: int = 0) -> str:
    """The directory or id to load; `tiny` is built (once, cached) offline."""
    if cfg.name_or_path != "tiny":
        return cfg.name_or_path
    from sft.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer(None)
    return str(build_tiny_model(tok, None, seed=seed, **cfg.tiny_size))


def load_tokenizer(cfg: ModelConfig, path: str | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.tokenizer or path or model_path(cfg),
                                        trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(cfg: ModelConfig, *, use_cpu: bool = False, path: str | None = None):
    """(model, tokenizer, training chat template) for `cfg`; `path` overrides where the weights
    come from (a curriculum stage's output, a checkpoint)."""
    from transformers import AutoModelForCausalLM

    src = path or model_path(cfg)
    tokenizer = load_tokenizer(cfg, src if path is None or cfg.tokenizer else path)
    template = training_chat_template(tokenizer, cfg.chat_template)
    on_gpu = has_gpu() and not use_cpu
    config = model_config(cfg, src)
    attn = resolve_attn_implementation(cfg.attn_implementation)
    model = AutoModelForCausalLM.from_pretrained(src, config=config, dtype=_dtype(cfg.dtype, on_gpu),
                                                 attn_implementation=attn, trust_remote_code=cfg.trust_remote_code)
    model.config.use_cache = False
    return model, tokenizer, template


def model_config(cfg: ModelConfig, src: str | Path):
    """The model's config with the recipe's rope scaling (e.g. YaRN to 131072 tokens) applied."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(src, trust_remote_code=cfg.trust_remote_code)
    if cfg.rope_scaling:
        base = dict(getattr(config, "rope_parameters", None) or {})
        config.rope_parameters = {**base, **cfg.rope_scaling}
        target = cfg.rope_scaling.get("factor", 1.0) * cfg.rope_scaling.get(
            "original_max_position_embeddings", config.max_position_embeddings)
        config.max_position_embeddings = max(config.max_position_embeddings, int(target))
    return config


def rows_per_step(training: TrainingConfig) -> int:
    from accelerate import PartialState

    world = max(1, PartialState().num_processes)
    return training.per_device_train_batch_size * training.gradient_accumulation_steps * world


def steps_for(rows: int, epochs: float, training: TrainingConfig) -> int:
    """Optimizer steps that `epochs` passes over `rows` rows take."""
    return max(1, math.ceil(rows * epochs / rows_per_step(training))) if rows else 0


# TrainingConfig fields that sft_arguments adjusts instead of passing through.
_ADJUSTED = {"num_train_epochs", "max_steps", "warmup_ratio", "bf16", "gradient_checkpointing", "packing",
             "report_to", "use_cpu"}


def sft_arguments(training: TrainingConfig, output_dir: str | Path, *, max_length: int | None,
                  num_train_epochs: float | None = None, max_steps: int | None = None, ordered: bool = False,
                  liger_kernel: bool = False, run_name: str | None = None, **overrides: Any):
    """A `trl.SFTConfig` for a pre-tokenized dataset.

    ordered: read the dataset in its stored order (a curriculum in one run) instead of shuffling.
    CPU runs drop bf16 (with a warning) so one recipe file also starts on a laptop.
    """
    from trl import SFTConfig

    on_gpu = has_gpu() and not training.use_cpu
    packing = resolve_packing(training.packing)
    bf16 = training.bf16
    if bf16 and not on_gpu:
        log.warning("bf16 requested but no GPU is used: training in float32")
        bf16 = False
    if not 0 <= training.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {training.warmup_ratio}")
    trl_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    # TrainingConfig's fields are trl.SFTConfig's own names and pass through as they are; the
    # few that swelego adjusts (CPU fallbacks, packing auto, the warmup ratio) are set below.
    kwargs: dict[str, Any] = {f.name: getattr(training, f.name) for f in dataclasses.fields(training)
                              if f.name in trl_fields and f.name not in _ADJUSTED}
    kwargs.update(
        output_dir=str(output_dir),
        num_train_epochs=training.num_train_epochs if num_train_epochs is None else num_train_epochs,
        max_steps=training.max_steps if max_steps is None else max_steps,
        warmup_steps=training.warmup_ratio,  # a float below 1 is a ratio of the total steps
        bf16=bf16,
        activation_checkpointing=training.gradient_checkpointing,
        logging_first_step=True,
        report_to=list(training.report_to) or "none",
        use_cpu=not on_gpu,
        max_length=max_length,
        packing=packing,
        padding_free=packing,
        dataset_kwargs={"skip_prepare_dataset": True},
        shuffle_dataset=False,
        train_sampling_strategy="sequential" if ordered else "random",
        use_liger_kernel=liger_kernel,
        run_name=run_name,
    )
    unknown = [k for k in training.extra if k not in trl_fields]
    if unknown:
        from swelego.config import ConfigError

        raise ConfigError(f"training.extra.{unknown[0]} is not a trl.SFTConfig field")
    kwargs.update(training.extra)
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


def pack_rows(dataset, max_length: int, seed: int):
    """Padding-free packing (best-fit decreasing) of one block of rows; adds `seq_lengths`."""
    from trl.data_utils import pack_dataset

    return pack_dataset(dataset.select_columns(["input_ids", "labels"]).shuffle(seed=seed), max_length, "bfd")


def train_tokenized(model, tokenizer, dataset, args, *, callbacks=None, resume_from_checkpoint=None):
    """Run TRL's SFTTrainer on `dataset` (input_ids + labels [+ seq_lengths when packed]).
    Returns the trainer (its `state.log_history` holds the losses)."""
    from trl import SFTTrainer

    keep = [c for c in ("input_ids", "labels", "seq_lengths") if c in dataset.column_names]
    dataset = dataset.select_columns(keep)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=callbacks or [])
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer
