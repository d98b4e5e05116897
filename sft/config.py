"""SFT run configuration: documented dataclasses, read from YAML and overridden from the CLI.

`load_config(cls, path, overrides)` turns a YAML file plus overrides (nested dicts or dotted
keys such as ``{"training.max_steps": 10}``) into a typed dataclass tree, refusing unknown keys
with the list of valid ones. Every field carries a ``help`` text in its metadata;
`describe_config(cls)` lists them (docs/sft.md and `swelego sft fields` print that list).

The same pieces serve other rooms: `ModelConfig` + `load_model_and_tokenizer` and
`TrainingConfig` + `sft_arguments` are what the verifier reuses to train on its own
pre-tokenized prompt -> completion examples.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, TypeVar

from swelego.config import (  # noqa: F401 - re-exported for the SFT API
    ConfigError,
    config_to_dict,
    describe_config,
    dump_config,
    load_config,
    merge,
)
from swelego.config import doc_field as _help
from swelego.difficulty import PASS_RATE_BUCKETS, TURN_BUCKETS, Bucket  # noqa: F401
from swelego.trajectories.labels import LabelRules

T = TypeVar("T")




# -- the SFT recipe ------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Which model and tokenizer to fine-tune, and how to load them."""

    name_or_path: str = _help(
        "A local directory or hub id of a causal LM, or `tiny` for the random-init tiny Qwen3 built offline "
        "(sft.tiny).", default="tiny")
    tokenizer: str | None = _help("Tokenizer directory or id; default: the model's.", default=None)
    tiny_size: dict = _help(
        "Size overrides for `tiny` (hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, "
        "head_dim, intermediate_size, max_position_embeddings).", default_factory=dict)
    attn_implementation: str = _help(
        "`auto` (flash_attention_2 when flash-attn is installed and a GPU is present, else sdpa), or any "
        "transformers value: sdpa, eager, flash_attention_2, flex_attention.", default="auto")
    dtype: str = _help("Weights dtype when loading: auto, bfloat16, float16 or float32.", default="auto")
    rope_scaling: dict | None = _help(
        "RoPE scaling written into the model config, e.g. {rope_type: yarn, factor: 4.0, "
        "original_max_position_embeddings: 32768} to reach 131072 tokens on Qwen3.", default=None)
    chat_template: str = _help(
        "`auto`: the tokenizer's template if it has `{% generation %}` markers, else TRL's training version of "
        "it (Qwen3 -> qwen3_training); or a path to a .jinja file.", default="auto")
    liger_kernel: bool = _help("Use Liger kernels (fused RMSNorm/RoPE/SwiGLU/cross-entropy) when installed.",
                               default=False)
    trust_remote_code: bool = _help("Allow model code from the checkpoint directory.", default=False)


@dataclass
class DataConfig:
    """Where the trajectories are and how they become tokens and labels."""

    paths: list[str] = _help(
        "Trajectory files or folders: JSONL of `Trajectory.to_json()` lines, `datasets.save_to_disk` folders, or "
        "SWE-Lego-format records (converted by swelego.trajectories.formats.from_swe_lego).", default_factory=list)
    max_length: int = _help("Longest tokenized trajectory kept (tokens).", default=131072)
    overlong: str = _help(
        "Policy for trajectories longer than max_length: `drop` them, or `keep_start` (truncate to the first "
        "max_length tokens; the cut turn keeps its trained tokens). Counts go to the run card.", default="drop")
    error_mask: bool = _help("Give error turns no loss (they stay in the context). Off = every assistant turn "
                             "is trained.", default=True)
    rules: LabelRules = _help("The error rules (swelego.trajectories.labels.LabelRules).", default_factory=LabelRules)
    mask_source: str = _help(
        "Which turns error masking masks: `rules` (the error rules above), `imported` (the masks the data "
        "shipped: SWE-Lego's per-message `turn_mask`, kept by the importers; trajectories without any train "
        "every turn, counted as without_imported_masks), or `both` (masked when either says so).",
        default="rules")
    only_resolved: bool = _help("Keep only trajectories with resolved or semi_resolved true (when recorded).",
                                default=False)
    reasoning: str = _help(
        "The thinking that reasoning endpoints return (assistant `reasoning_content`): `keep` trains on it "
        "(Qwen3-style templates render it as <think>...</think> before the content; a template that does not "
        "read reasoning_content gets it written into the content that way), `drop` removes it (Qwen3 then "
        "renders an empty think block, as `qwen3_nothink` training does).", default="keep")
    num_proc: int = _help("Processes for tokenization (1 = in process).", default=1)


@dataclass
class CurriculumStage:
    """One training stage: which buckets, for how many epochs."""

    buckets: list[str] = _help("Bucket names trained in this stage.", default_factory=list)
    epochs: float = _help("Passes over this stage's data.", default=1.0)




@dataclass
class CurriculumConfig:
    """Difficulty buckets and the order of training stages (SWE-Lego: easy -> medium -> hard)."""

    enabled: bool = _help("Train in stages; off = one run on the shuffled union of all data.", default=True)
    measure: str = _help(
        "`turns`: number of assistant turns of the trajectory; `pass_rate`: the teacher's failure rate "
        "1 - resolved/k over the k trajectories of the same instance (or from pass_rates_file).", default="turns")
    buckets: list[Bucket] | None = _help(
        "Buckets on the measure; null = SWE-Lego's for turns (easy [0,50), medium [50,70), hard [70,inf)) or "
        "thirds of the failure rate for pass_rate.", default=None)
    pass_rates_file: str | None = _help(
        "JSON or JSONL giving {instance_id: pass rate in [0,1]} for measure pass_rate.", default=None)
    stages: list[CurriculumStage] = _help(
        "Stages in training order.", default_factory=lambda: [
            CurriculumStage(["easy"]), CurriculumStage(["medium"]), CurriculumStage(["hard"])])
    cumulative: bool = _help("Each stage also re-trains the buckets of all earlier stages (else disjoint).",
                             default=False)
    lr_schedule: str = _help(
        "`global`: one warmup + decay over all stages (a single trainer reads the stages in order); "
        "`per_stage`: each stage restarts warmup + decay and its optimizer from the previous stage's weights.",
        default="global")

    def resolved_buckets(self) -> list[Bucket]:
        if self.buckets is not None:
            return self.buckets
        return copy.deepcopy(PASS_RATE_BUCKETS if self.measure == "pass_rate" else TURN_BUCKETS)


@dataclass
class TrainingConfig:
    """Optimisation and logging: trl.SFTConfig's own fields under their own names (passed through by
    `sft_arguments`; only the defaults swelego chooses are listed here), `extra` for any other
    trl.SFTConfig field."""

    learning_rate: float = _help("Peak learning rate.", default=1e-4)
    num_train_epochs: float = _help("Epochs when the curriculum is off (stages carry their own).", default=1.0)
    max_steps: int = _help("Cap on optimizer steps over the whole run (-1 = none); with per-stage schedules the "
                           "cap is shared out in proportion to each stage's steps.", default=-1)
    per_device_train_batch_size: int = _help("Sequences per device per micro-batch.", default=1)
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step.", default=8)
    lr_scheduler_type: str = _help("transformers scheduler name (cosine, linear, constant_with_warmup, ...).",
                                   default="cosine")
    warmup_ratio: float = _help("Share of steps spent warming up (0 <= r < 1).", default=0.1)
    weight_decay: float = _help("AdamW weight decay.", default=0.01)
    max_grad_norm: float = _help("Gradient clipping norm.", default=1.0)
    optim: str = _help("transformers optimizer name.", default="adamw_torch")
    bf16: bool = _help("bfloat16 mixed precision (GPU).", default=False)
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass to save memory.",
                                         default=False)
    packing: bool | str = _help(
        "Pack several trajectories per row, padding-free (best-fit decreasing, per curriculum stage): true, "
        "false, or `auto` = on when the attention is flash_attention_2. sdpa/eager are also correct with "
        "packing (transformers builds a block-diagonal mask from position_ids) but slower.", default=False)
    logging_steps: int = _help("Log every N optimizer steps.", default=1)
    save_strategy: str = _help(
        "`no`, `steps`, `epoch`: checkpoints under OUTPUT/trainer, from which a rerun resumes (lr_schedule global). "
        "The final model is always saved to OUTPUT/model; with lr_schedule per_stage each stage's model goes to "
        "OUTPUT/stage-K and a rerun skips finished stages.", default="no")
    save_steps: int = _help("Steps between checkpoints with save_strategy steps.", default=500)
    save_total_limit: int | None = _help("Checkpoints kept.", default=2)
    report_to: list[str] = _help("Extra loggers: tensorboard, wandb (console always).", default_factory=list)
    seed: int = _help("Random seed (model init of tiny, shuffling, dropout).", default=42)
    use_cpu: bool = _help("Train on CPU even when a GPU exists.", default=False)
    deepspeed: str | None = _help("DeepSpeed JSON config (e.g. configs/sft/accelerate/ds_zero3.json).",
                                  default=None)
    dataloader_num_workers: int = _help("DataLoader worker processes.", default=0)
    extra: dict = _help("More trl.SFTConfig arguments, passed through verbatim.", default_factory=dict)


@dataclass
class SFTRunConfig:
    """`swelego sft train`: one fine-tuning run."""

    output_dir: str = _help("Where the model, stages, logs and run card go.", default="runs/sft")
    model: ModelConfig = _help("The model (ModelConfig).", default_factory=ModelConfig)
    data: DataConfig = _help("The data (DataConfig).", default_factory=DataConfig)
    curriculum: CurriculumConfig = _help("The curriculum (CurriculumConfig).", default_factory=CurriculumConfig)
    training: TrainingConfig = _help("The optimiser (TrainingConfig).", default_factory=TrainingConfig)


# -- YAML <-> dataclass ----------------------------------------------------------------------------


_TRAINING_API = {
    "load_model_and_tokenizer": "sft.trainer",
    "sft_arguments": "sft.trainer",
    "train_tokenized": "sft.trainer",
    "train_from_config": "sft.train",
    "RunResult": "sft.train",
}


def __getattr__(name: str) -> Any:
    # The training entry points, importable from here without loading torch on `import sft.config`.
    if name in _TRAINING_API:
        import importlib

        return getattr(importlib.import_module(_TRAINING_API[name]), name)
    raise AttributeError(f"module 'sft.config' has no attribute {name!r}")
