"""Real training on CPU: `tiny-cpu.yaml` runs TRL steps through the CLI, the loss falls, stage
boundaries are logged in order, the saved model reloads and generates; per-stage schedules
restart and resume; --no-curriculum / --no-error-mask train the shuffled union of every turn."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sft.synthetic import compact_tools, synthetic_dataset, synthetic_episode, write_jsonl

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/sft/tiny-cpu.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """32 short episodes spread over the tiny preset's buckets, plus one that is all errors."""
    eps = synthetic_dataset(32, seed=11, turns=(7, 16), mistakes=(0, 2), tools=compact_tools())
    hopeless = synthetic_episode(991, turns=5, mistakes=0, tools=compact_tools())
    hopeless.trajectory.instance_id = "hopeless__all-errors"
    for m in hopeless.trajectory.messages:
        for c in m.get("tool_calls") or []:
            c["function"]["name"] = "execute_bash"
            c["function"]["arguments"] = json.dumps({"command": "nosuchtool"})
        if m["role"] == "tool":
            m["content"] = "bash: line 1: nosuchtool: command not found\n[exit code: 127]"
    for s in hopeless.trajectory.steps:
        s.tool, s.exit_code = "execute_bash", 127
    path = tmp_path_factory.mktemp("sft-data") / "trajectories.jsonl"
    write_jsonl([*eps, hopeless], path)
    return path


def _bucket_counts(path: Path) -> dict[str, int]:
    counts = {"easy": 0, "medium": 0, "hard": 0}
    for line in path.read_text().splitlines():
        turns = sum(1 for m in json.loads(line)["messages"] if m["role"] == "assistant")
        if json.loads(line)["instance_id"].startswith("hopeless"):
            continue
        counts["easy" if turns < 10 else "medium" if turns < 13 else "hard"] += 1
    return counts


def test_tiny_cpu_recipe_trains_reloads_and_generates(data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    res = subprocess.run(
        [sys.executable, "-m", "swelego.cli", "sft", "train", str(TINY), "--data", str(data), "--output-dir",
         str(out), "--max-steps", "16", "--set", "data.max_length=1024"],
        capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stderr
    assert "hopeless__all-errors" in log and "every assistant turn is masked" in log
    positions = [log.find(f"stage {k}/3 [") for k in (1, 2, 3)]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), log[-2000:]
    assert "stage 1/3 [easy]" in log and "stage 3/3 [hard]" in log

    card = json.loads((out / "run_card.json").read_text())
    counts = _bucket_counts(data)
    assert [s["buckets"] for s in card["stages"]] == [["easy"], ["medium"], ["hard"]]
    assert [s["trajectories"] for s in card["stages"]] == [counts["easy"], counts["medium"], counts["hard"]]
    assert card["data"]["all_masked_dropped"] == 1 and card["data"]["kept"] == 32
    assert 0 < card["data"]["masked_turn_share"] < 0.5
    losses = [x["loss"] for x in card["losses"]["log"]]
    assert len(losses) == 16
    assert [x["stage"] for x in card["losses"]["log"]] == sorted(x["stage"] for x in card["losses"]["log"])
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.5, losses
    assert (out / "run_card.md").read_text().startswith("# SFT run card")

    model_dir = out / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tok.apply_chat_template([{"role": "system", "content": "You fix bugs."},
                                      {"role": "user", "content": "Fix parse_token in /testbed/pkg1."}],
                                     tools=compact_tools(), add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)
    with torch.no_grad():
        gen = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    new = gen[0, prompt["input_ids"].shape[1]:]
    assert 0 < len(new) <= 12 and int(new.max()) < len(tok)

    # the reloaded weights are the trained ones: they fit a training trajectory better than the init
    from sft.tiny import build_tiny_model, build_tiny_tokenizer

    init = AutoModelForCausalLM.from_pretrained(build_tiny_model(build_tiny_tokenizer(None)))
    row = json.loads(data.read_text().splitlines()[0])
    msgs = [{k: v for k, v in m.items() if v is not None} for m in row["messages"]]
    ex = tok.apply_chat_template(msgs, tools=row["tools"], return_dict=True, return_tensors="pt",
                                 return_assistant_tokens_mask=True)
    labels = ex["input_ids"].clone()
    labels[ex["assistant_masks"] == 0] = -100
    with torch.no_grad():
        trained_loss = model(input_ids=ex["input_ids"][:, :1024], labels=labels[:, :1024]).loss.item()
        init_loss = init(input_ids=ex["input_ids"][:, :1024], labels=labels[:, :1024]).loss.item()
    assert trained_loss < init_loss - 0.5


def test_per_stage_schedule_restarts_and_resumes(data, tmp_path, caplog):
    from sft.train import train_from_config

    caplog.set_level(logging.INFO, logger="sft.train")
    over = {"data.paths": [str(data)], "output_dir": str(tmp_path / "ps"), "curriculum.lr_schedule": "per_stage",
            "training.max_steps": 6, "training.warmup_ratio": 0.0, "training.lr_scheduler_type": "linear",
            "data.max_length": 768}
    res = train_from_config(TINY, over)
    stage_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage ")]
    assert [line.split(" [")[0] for line in stage_lines] == ["stage 1/3", "stage 2/3", "stage 3/3"]
    log = json.loads(res.run_card_path.read_text())["losses"]["log"]
    assert [x["stage"] for x in log] == [1, 1, 2, 2, 3, 3]
    lrs = [x["learning_rate"] for x in log]
    assert lrs[0] == lrs[2] == lrs[4] > lrs[1]  # each stage restarts its decay from the peak
    for k in (1, 2, 3):
        assert (tmp_path / "ps" / f"stage-{k}" / ".done").is_file()
    caplog.clear()
    again = train_from_config(TINY, over)  # resumes: every stage is already trained
    assert again.losses == []
    assert (tmp_path / "ps" / "model" / "model.safetensors").is_file()


def test_no_curriculum_and_no_error_mask_train_the_shuffled_union(data, tmp_path):
    from sft.train import train_from_config

    res = train_from_config(TINY, {"data.paths": [str(data)], "output_dir": str(tmp_path / "abl"),
                                   "curriculum.enabled": False, "data.error_mask": False, "training.max_steps": 3,
                                   "data.max_length": 768})
    card = json.loads(res.run_card_path.read_text())
    assert card["run"]["sampling"] == "shuffled union" and card["run"]["curriculum"] is False
    assert [s["buckets"] for s in card["stages"]] == [["all"]]
    assert card["stages"][0]["trajectories"] == 33  # every trajectory, the all-error one included
    assert card["data"]["masked_turns"] == 0 and card["data"]["all_masked_dropped"] == 0
    assert len(res.losses) == 3


def test_packing_is_padding_free_and_trains_on_cpu(data, tmp_path):
    from sft.config import CurriculumConfig, DataConfig
    from sft.prepare import prepare_dataset
    from sft.tiny import build_tiny_tokenizer
    from sft.tokens import training_chat_template
    from sft.train import train_from_config
    from sft.trainer import pack_rows

    tok = build_tiny_tokenizer(None)
    ds, _ = prepare_dataset(DataConfig(paths=[str(data)], max_length=4096), CurriculumConfig(), tok,
                            training_chat_template(tok), warn=lambda _: None)
    packed = pack_rows(ds, 4096, seed=0)
    assert len(packed) < len(ds)
    assert sum(sum(x) for x in packed["seq_lengths"]) == sum(ds["n_tokens"])
    assert all(sum(s) == len(ids) <= 4096 for s, ids in zip(packed["seq_lengths"], packed["input_ids"], strict=True))
    trained = sorted(x for row in packed["labels"] for x in row if x != -100)
    assert trained == sorted(x for row in ds["labels"] for x in row if x != -100)

    res = train_from_config(TINY, {"data.paths": [str(data)], "output_dir": str(tmp_path / "pk"),
                                   "training.packing": True, "data.max_length": 1024, "training.max_steps": 3})
    card = json.loads(res.run_card_path.read_text())
    assert card["run"]["packing"] is True and len(res.losses) == 3
    assert [s["stage"] for s in card["stages"]] == [1, 2, 3]


def test_global_schedule_resumes_from_its_checkpoint(data, tmp_path):
    from sft.train import train_from_config

    over = {"data.paths": [str(data)], "output_dir": str(tmp_path / "g"), "training.max_steps": 4,
            "training.save_strategy": "steps", "training.save_steps": 2, "data.max_length": 768}
    first = train_from_config(TINY, over)
    assert (tmp_path / "g" / "trainer" / "checkpoint-4").is_dir() and len(first.losses) == 4
    again = train_from_config(TINY, over)  # finished: resumes at step 4, trains nothing new
    assert again.losses == pytest.approx(first.losses)
    changed = train_from_config(TINY, {**over, "training.learning_rate": 1e-3})  # another config starts over
    assert len(changed.losses) == 4 and changed.losses[1:] != pytest.approx(first.losses[1:])
