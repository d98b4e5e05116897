"""Training the tiny CPU verifier on real trajectories (oracle episodes in Docker, some of them
deliberately broken by the oracle's noise, labelled by their own grading): the loss falls and the
checkpoint scores every held-out trajectory, for the generative and the regressive kind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from verifier_corpus import corpus

from verifier.cli import verifier as verifier_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TINY = str(Path(__file__).resolve().parents[1] / "configs" / "verifier" / "tiny-cpu.yaml")


@pytest.fixture(scope="module")
def trajectories():
    c = corpus()
    labels = [t.resolved for t in c.trajectories]
    assert all(v is not None for v in labels) and True in labels and False in labels
    return c


def _invoke(args: list[str]):
    res = CliRunner().invoke(verifier_cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _held_out(c, eval_ids: set[str], path: Path) -> list:
    held = [t for t in c.trajectories if t.instance_id in eval_ids]
    path.write_text("".join(t.to_json() + "\n" for t in held))
    return held


def test_generative_verifier_trains_and_scores_held_out_trajectories(trajectories, tmp_path):
    from sft.tiny import build_tiny_tokenizer

    build_tiny_tokenizer(tmp_path / "tok")
    data = tmp_path / "judge"
    _invoke(["data", str(trajectories.trajectories_path), "--out", str(data), "--tokenizer", str(tmp_path / "tok"),
             "--max-length", "768", "--eval-fraction", "0.34", "--balance", "upsample"])
    train_ids = {json.loads(x)["instance_id"] for x in (data / "train.jsonl").read_text().splitlines()}
    eval_ids = {json.loads(x)["instance_id"] for x in (data / "eval.jsonl").read_text().splitlines()}
    assert len(eval_ids) == 2 and len(train_ids) == 4 and not train_ids & eval_ids

    run = tmp_path / "run"
    out = _invoke(["train", TINY, "--data", str(data), "--output-dir", str(run), "--max-steps", "20"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == "generative" and metrics["steps"] == 20
    assert metrics["loss_end"] < 0.8 * metrics["loss_start"], metrics["losses"]
    assert "held-out" in out and (run / "verifier.json").is_file()
    # it says which instances it learned from, for `tts run --exclude-instances` and `tts score`'s check
    assert json.loads((run / "instances.json").read_text()) == {"train": sorted(train_ids), "eval": sorted(eval_ids)}

    held = _held_out(trajectories, eval_ids, tmp_path / "held.jsonl")
    scored = tmp_path / "scored"
    out = _invoke(["score", "--model", str(run), str(tmp_path / "held.jsonl"), "--out", str(scored)])
    rows = [json.loads(x) for x in (scored / "scores.jsonl").read_text().splitlines()]
    assert {(r["instance_id"], r["sample"]) for r in rows} == {(t.instance_id, t.sampling["sample"]) for t in held}
    assert all(0.0 < r["score"] < 1.0 and math.isfinite(r["logit_yes"]) for r in rows)
    summary = json.loads((scored / "summary.json").read_text())
    assert summary["scored"] == len(held) and summary["failed"] == 0 and "AUC" in out
    print(f"\ntiny generative verifier, held-out: {summary['labelled']} trajectories, AUC {summary['auc']}, "
          f"accuracy {summary['accuracy']}")


def test_regressive_verifier_trains_from_trajectories_directly(trajectories, tmp_path):
    run = tmp_path / "reg"
    _invoke(["train", TINY, "--kind", "regressive", "--data", str(trajectories.trajectories_path),
             "--output-dir", str(run), "--max-steps", "24", "--set", "data.eval_fraction=0.34",
             "--set", "training.learning_rate=3e-3", "--set", "training.logging_steps=1"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == "regressive" and json.loads((run / "verifier.json").read_text())["kind"] == "regressive"
    # BCE on a handful of examples is noisy step to step: compare the first and last quarters.
    losses = metrics["losses"]
    assert len(losses) == 24 and sum(losses[-6:]) < sum(losses[:6]), losses
    eval_ids = {json.loads(x)["instance_id"] for x in (run / "data" / "eval.jsonl").read_text().splitlines()}
    held = _held_out(trajectories, eval_ids, tmp_path / "held.jsonl")
    _invoke(["score", "--model", str(run), str(tmp_path / "held.jsonl"), "--out", str(tmp_path / "s")])
    rows = [json.loads(x) for x in (tmp_path / "s" / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == len(held) > 0
    for r in rows:  # regressive: P(YES) = sigmoid(head logit)
        assert r["score"] == pytest.approx(1 / (1 + math.exp(-r["logit_yes"]))) and r["logit_no"] == 0.0
