"""Supervised fine-tuning on trajectories, with error masking and a difficulty curriculum (TRL).

Public API: `swelego.trajectories.labels.label_trajectory` (per-turn error labels, shared with
the exports), `sft.tokens` (rendering to
input_ids + labels), `sft.curriculum` (buckets and stages), `sft.config` (YAML <-> dataclasses),
`sft.trainer` (model loading, SFTConfig mapping, training on pre-tokenized data),
`sft.train.train_from_config` (a whole run) and `sft.tiny` (the offline tiny model for CPU runs).
"""
