"""Curriculum and config: bucket and stage membership, the order one trainer reads stages in,
epochs and step caps, pass-rate difficulty, and the YAML <-> dataclass round trip of the recipes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset

from sft.config import (
    Bucket,
    ConfigError,
    CurriculumConfig,
    CurriculumStage,
    SFTRunConfig,
    TrainingConfig,
    config_to_dict,
    describe_config,
    dump_config,
    load_config,
)
from sft.curriculum import bucket_of, failure_rates, plan_stages, single_stage
from sft.train import ordered_curriculum
from swelego.errors import SwelegoError
from swelego.trajectories.record import Trajectory

REPO = Path(__file__).resolve().parents[1]


def test_turn_buckets_follow_swe_lego_thresholds():
    buckets = CurriculumConfig().resolved_buckets()
    got = [bucket_of(v, buckets) for v in (0, 12, 49, 50, 69, 70, 100, 250)]
    assert got == ["easy", "easy", "easy", "medium", "medium", "hard", "hard", "hard"]
    assert bucket_of(None, buckets) is None
    gap = [Bucket("a", 0, 5), Bucket("b", 10, None)]
    assert bucket_of(7, gap) is None


def test_pass_rate_difficulty_from_samples_and_from_a_file(tmp_path):
    trajs = [Trajectory(instance_id=i, resolved=r) for i, r in
             [("x", True), ("x", True), ("x", True), ("y", True), ("y", False), ("y", False), ("z", False),
              ("w", None)]]
    rates = failure_rates(trajs)
    assert rates == pytest.approx({"x": 0.0, "y": 2 / 3, "z": 1.0})
    buckets = CurriculumConfig(measure="pass_rate").resolved_buckets()
    assert [bucket_of(rates[i], buckets) for i in ("x", "y", "z")] == ["easy", "hard", "hard"]
    f = tmp_path / "rates.json"
    f.write_text(json.dumps({"x": 0.5, "y": 0.9}))
    assert failure_rates([], str(f)) == pytest.approx({"x": 0.5, "y": 0.1})
    f2 = tmp_path / "rates.jsonl"
    f2.write_text('{"instance_id": "q", "pass_rate": 0.25}\n')
    assert failure_rates([], str(f2)) == pytest.approx({"q": 0.75})


def test_stage_membership_disjoint_and_cumulative():
    buckets = ["hard", "easy", "medium", "easy", None, "hard", "medium", "easy"]
    stages = [CurriculumStage(["easy"], 1), CurriculumStage(["medium"], 2), CurriculumStage(["hard"], 1)]
    disjoint = plan_stages(buckets, CurriculumConfig(stages=stages))
    assert [p.rows for p in disjoint] == [[1, 3, 7], [2, 6], [0, 5]]
    assert [p.epochs for p in disjoint] == [1, 2, 1]
    cumulative = plan_stages(buckets, CurriculumConfig(stages=stages, cumulative=True))
    assert [p.buckets for p in cumulative] == [["easy"], ["easy", "medium"], ["easy", "medium", "hard"]]
    assert [p.rows for p in cumulative] == [[1, 3, 7], [1, 2, 3, 6, 7], [0, 1, 2, 3, 5, 6, 7]]
    # a stage may also name several buckets, and a later stage may come back to an earlier bucket
    mixed = plan_stages(buckets, CurriculumConfig(stages=[CurriculumStage(["medium", "hard"]),
                                                          CurriculumStage(["easy"])]))
    assert [p.rows for p in mixed] == [[0, 2, 5, 6], [1, 3, 7]]
    assert single_stage(8, 3.0)[0].rows == list(range(8))
    with pytest.raises(SwelegoError, match="unknown bucket"):
        plan_stages(buckets, CurriculumConfig(stages=[CurriculumStage(["tricky"])]))


def test_one_trainer_reads_stages_in_order_with_their_epochs():
    buckets = ["easy"] * 6 + ["medium"] * 4 + ["hard"] * 2
    ds = Dataset.from_dict({"input_ids": [[i, i] for i in range(12)], "labels": [[i, i] for i in range(12)],
                            "bucket": buckets})
    cur = CurriculumConfig(stages=[CurriculumStage(["easy"], 1), CurriculumStage(["medium"], 2),
                                   CurriculumStage(["hard"], 1.5)])
    plans = plan_stages(buckets, cur)
    training = TrainingConfig(per_device_train_batch_size=2, gradient_accumulation_steps=1, seed=3)
    ordered, starts = ordered_curriculum(ds, plans, training, 64)
    seq = ordered["bucket"]
    assert starts == [0, 6, 14]
    assert seq == ["easy"] * 6 + ["medium"] * 8 + ["hard"] * 3
    ids = [row[0] for row in ordered["input_ids"]]
    assert sorted(ids[:6]) == list(range(6))
    assert Counter(ids[6:14]) == {i: 2 for i in range(6, 10)}  # two passes over medium
    assert ids[:6] != list(range(6)) or ids[6:10] != list(range(6, 10))  # shuffled within stages
    # a step cap keeps every stage, in order and in proportion
    capped, cstarts = ordered_curriculum(ds, plans, TrainingConfig(per_device_train_batch_size=2,
                                                                   gradient_accumulation_steps=1, max_steps=4), 64)
    assert len(capped) <= 8 and capped["bucket"][0] == "easy" and capped["bucket"][-1] == "hard"
    assert capped["bucket"] == sorted(capped["bucket"], key=["easy", "medium", "hard"].index)
    assert cstarts[0] == 0 and cstarts == sorted(cstarts) and len(set(cstarts)) == 3


def test_every_config_field_is_documented():
    rows = describe_config(SFTRunConfig)
    assert len(rows) > 40
    undocumented = [name for name, _tp, _d, help_ in rows if not help_.strip()]
    assert undocumented == []
    names = {r[0] for r in rows}
    assert {"data.rules.traceback_blame", "curriculum.lr_schedule", "training.max_steps", "data.overlong"} <= names
    docs = (REPO / "docs/sft.md").read_text()
    assert [n for n in names if f"`{n}`" not in docs] == []  # the docs table is current


def test_yaml_round_trip_overrides_and_errors(tmp_path):
    cfg = load_config(SFTRunConfig, REPO / "configs/sft/tiny-cpu.yaml",
                      {"training.max_steps": "7", "data": {"paths": ["a.jsonl"]}, "data.rules.enabled": "timeout,editor_error"})
    assert cfg.training.max_steps == 7 and cfg.data.paths == ["a.jsonl"]
    assert cfg.data.rules.enabled == ["timeout", "editor_error"]
    assert [b.name for b in cfg.curriculum.buckets] == ["easy", "medium", "hard"]
    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(SFTRunConfig, tmp_path / "c.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    with pytest.raises(ConfigError, match=r"unknown config key training\.learnin_rate \(valid keys: learning_rate"):
        load_config(SFTRunConfig, None, {"training.learnin_rate": 1})
    with pytest.raises(ConfigError, match="training.max_steps: expected an integer"):
        load_config(SFTRunConfig, None, {"training.max_steps": "many"})
    with pytest.raises(ConfigError, match="unknown label rule"):
        load_config(SFTRunConfig, None, {"data.rules.enabled": ["nope"]})
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SFTRunConfig, tmp_path / "bad.yaml")


@pytest.mark.parametrize("name,lr", [("qwen3-8b", 1e-4), ("qwen3-32b", 5e-5)])
def test_recipes_mirror_swe_lego(name, lr):
    cfg = load_config(SFTRunConfig, REPO / f"configs/sft/{name}.yaml")
    t = cfg.training
    assert t.learning_rate == lr and t.lr_scheduler_type == "cosine" and t.warmup_ratio == 0.1
    assert (t.weight_decay, t.max_grad_norm, t.per_device_train_batch_size, t.gradient_accumulation_steps) == \
        (0.01, 1.0, 1, 8)
    assert t.bf16 and t.num_train_epochs == 4 and t.packing == "auto"
    assert cfg.data.max_length == 131072 and cfg.model.rope_scaling["rope_type"] == "yarn"
    assert cfg.model.attn_implementation == "auto"
    assert [(b.name, b.min, b.max) for b in cfg.curriculum.buckets] == [
        ("easy", 0, 50), ("medium", 50, 70), ("hard", 70, None)]
    assert [s.buckets for s in cfg.curriculum.stages] == [["easy"], ["medium"], ["hard"]]
    ds = json.loads((REPO / "configs/sft/accelerate/ds_zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert "ds_zero3.json" in (REPO / "configs/sft/accelerate/zero3.yaml").read_text()
