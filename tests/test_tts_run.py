"""`swelego tts run` then `swelego tts score` on a real validated task: k oracle samples in real
sandboxes, a real (tiny, untrained) verifier scoring each, the official harness grading the pick."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from swelego.cli import cli
from swelego.schema import save_jsonl


@pytest.fixture(scope="module")
def tiny_verifier(tmp_path_factory):
    from sft.tiny import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("verifier")
    tok = build_tiny_tokenizer(root / "tok")
    return build_tiny_model(tok, root / "model")


def test_tts_run_then_score(toy_task, tiny_verifier, tmp_path):
    ds = tmp_path / "tasks.jsonl"
    save_jsonl([toy_task], ds)
    run = tmp_path / "run"
    args = ["tts", "run", "--dataset", str(ds), "--policy", "oracle", "--noise", "0.5", "--samples", "3",
            "--verifier", str(tiny_verifier), "--out", str(run), "--workers", "2"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    scores = [json.loads(x) for x in (run / "scores.jsonl").read_text().splitlines()]
    assert sorted(s["sampling"]["sample"] for s in samples) == [0, 1, 2]
    assert all(s["policy"] == "oracle" and s["resolved"] is not None for s in samples)
    assert sorted(s["sample"] for s in scores) == [0, 1, 2] and all(0.0 < s["score"] < 1.0 for s in scores)
    assert json.loads((run / "tasks.jsonl").read_text().splitlines()[0])["instance_id"] == toy_task.instance_id
    assert "policy=oracle" in res.output
    # A rerun does no work: every sample and score is on disk already.
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "resuming: 3/3 samples already done" in again.output
    assert len((run / "samples.jsonl").read_text().splitlines()) == 3
    assert len((run / "scores.jsonl").read_text().splitlines()) == 3
    # Scoring: the top-scored sample goes to the official harness.
    scored = CliRunner().invoke(cli, ["tts", "score", str(run), "--k", "1,2,3"])
    assert scored.exit_code == 0, scored.output
    report = json.loads((run / "report.json").read_text())
    top = max(scores, key=lambda s: (s["score"], -s["sample"]))
    chosen = next(s for s in samples if s["sampling"]["sample"] == top["sample"])
    pred = json.loads((run / "predictions.jsonl").read_text().splitlines()[0])
    assert pred["model_patch"] == chosen["patch"]
    assert report["selected"]["resolved"] == int(bool(chosen["resolved"]))


def test_tts_run_bad_dataset_is_one_line(tmp_path, tiny_verifier):
    res = CliRunner().invoke(cli, ["tts", "run", "--dataset", str(tmp_path / "nope"), "--policy", "oracle",
                                   "--samples", "2", "--verifier", str(tiny_verifier), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0
    assert "cannot load dataset" in str(res.exception) or "cannot load dataset" in res.output


def test_exclude_instances_keeps_the_verifiers_training_instances_out(tmp_path, tiny_verifier):
    from swelego.errors import SwelegoError
    from swelego.schema import TaskInstance
    from tts.run import exclude_tasks

    tasks = [TaskInstance(instance_id=f"o__r-{i}", repo="o/r", base_commit="a" * 40, patch="", image="i",
                          eval_script="true") for i in range(4)]
    verifier = tmp_path / "verifier"
    verifier.mkdir()
    (verifier / "instances.json").write_text(json.dumps({"train": ["o__r-0", "o__r-2"], "eval": ["o__r-1"]}))
    assert [t.instance_id for t in exclude_tasks(tasks, str(verifier))] == ["o__r-1", "o__r-3"]
    ids = tmp_path / "ids.txt"
    ids.write_text("o__r-3\n\no__r-1\n")
    assert [t.instance_id for t in exclude_tasks(tasks, str(ids))] == ["o__r-0", "o__r-2"]
    (tmp_path / "ids.json").write_text(json.dumps(["o__r-0"]))
    assert len(exclude_tasks(tasks, str(tmp_path / "ids.json"))) == 3
    with pytest.raises(SwelegoError, match="no instances.json"):
        exclude_tasks(tasks, str(tmp_path))
    # through the command: everything excluded is one line, before any sampling
    ds = tmp_path / "tasks.jsonl"
    save_jsonl(tasks[:2], ds)
    (tmp_path / "both.txt").write_text("o__r-0\no__r-1\n")
    res = CliRunner().invoke(cli, ["tts", "run", "--dataset", str(ds), "--policy", "oracle", "--samples", "2",
                                   "--exclude-instances", str(tmp_path / "both.txt"), "--verifier",
                                   str(tiny_verifier), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0
    assert "every one of the 2 instances is excluded" in str(res.exception) + res.output
