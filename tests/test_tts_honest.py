"""TTS numbers that survive review, without a container: every task counts (no usable sample =
unresolved, listed), each label says where it came from, within-instance AUC and ECE sit beside
pooled AUC, and `tts score` warns when the verifier was trained on scored instances.

Official gradings come from the run's own `gradings.jsonl` cache (what an earlier harness run
wrote); a sample the cache lacks is sent to the harness, which fails here (no engine), and the
report must say so instead of guessing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from swelego.schema import TaskInstance, save_jsonl
from swelego.trajectories.record import Trajectory
from tts.cli import tts as tts_cli
from tts.metrics import Sample, expected_calibration_error, summarize, within_instance_auc
from tts.score import ScoreConfig, patch_sha, tts_score


def test_within_instance_auc_ranks_inside_each_instance_and_ece_measures_calibration():
    groups = [
        [Sample(True, 0.9), Sample(False, 0.1)],  # ranked right: 1.0
        [Sample(True, 0.2), Sample(False, 0.8)],  # ranked wrong: 0.0
        [Sample(True, 0.95), Sample(True, 0.97)],  # one outcome: cannot be ranked, left out
    ]
    w = within_instance_auc(groups, n_boot=200)
    assert w["value"] == pytest.approx(0.5) and w["instances"] == 2
    # a verifier that only knows which instance is easy: perfect pooled AUC, chance within
    easy_hard = [[Sample(True, 0.9), Sample(True, 0.9)], [Sample(False, 0.1), Sample(True, 0.1), Sample(False, 0.1)]]
    m = summarize({"e": easy_hard[0], "h": easy_hard[1]}, [1], n_boot=200)
    assert m["auc"]["value"] > 0.8 and m["within_instance_auc"]["value"] == pytest.approx(0.5)
    assert expected_calibration_error([0.8, 0.8, 0.2, 0.2], [True, False, False, False]) == pytest.approx(0.25)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == pytest.approx(0.0)
    assert m["ece"]["value"] is not None and m["ece"]["bins"] == 10


def test_instances_without_usable_samples_are_unresolved_in_every_metric():
    full = {"a": [Sample(True, 0.9), Sample(False, 0.1)], "b": [Sample(True, 0.5)]}
    with_empty = {**full, "c": [], "d": []}
    m, m2 = summarize(full, [1, 2], n_boot=100), summarize(with_empty, [1, 2], n_boot=100)
    assert m2["instances"] == 4 and m2["unusable_instances"] == ["c", "d"]
    for name in ("tts", "oracle", "random", "majority"):
        for k in ("1", "2"):
            assert m2[name][k]["value"] == pytest.approx(m[name][k]["value"] * 2 / 4)
    assert m2["pass@1"]["value"] == pytest.approx((0.5 + 1.0) / 4)
    assert m2["auc"]["value"] == m["auc"]["value"]  # no samples: nothing to rank


def _traj(iid: str, sample: int, patch: str, resolved: bool | None) -> dict:
    return Trajectory(instance_id=iid, patch=patch, resolved=resolved, policy="openai", model="m",
                      sampling={"sample": sample}, exit_reason="finish").to_dict()


def _task(iid: str, **extra) -> TaskInstance:
    return TaskInstance(instance_id=iid, repo="o/r", base_commit="a" * 40, patch="gold", image="img:latest",
                        eval_script="#!/bin/bash\ntrue\n", FAIL_TO_PASS=["t::x"], **extra)


@pytest.fixture
def run_dir(tmp_path):
    """a: two sandbox-labelled samples, the selected one graded officially (cached); b: one sample,
    graded officially (cached); c: no samples; d: one sample the harness errors on (unresolved, as
    SWE-bench counts errors)."""
    root = tmp_path / "run"
    root.mkdir()
    verified = {"environment_setup_commit": "b" * 40, "difficulty": "<15 min fix",
                "image_assets": json.dumps({"test_patch": []})}
    # d's row names a log parser swebench does not have: the real harness reports it as an error
    save_jsonl([_task("a", **verified), _task("b"), _task("c"), _task("d", log_parser="parse_log_nonexistent")],
               root / "tasks.jsonl")
    samples = [_traj("a", 0, "pa0", True), _traj("a", 1, "pa1", False), _traj("b", 0, "pb0", True),
               {"instance_id": "d", "model_patch": "pd0", "sample": 0}]
    (root / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    scores = [("a", 0, 0.2), ("a", 1, 0.7), ("b", 0, 0.6), ("d", 0, 0.5)]
    (root / "scores.jsonl").write_text("".join(json.dumps({"instance_id": i, "sample": s, "score": v}) + "\n"
                                               for i, s, v in scores))
    # the harness graded a's selected patch (pa1: resolved, unlike its sandbox label) and b's before
    graded = [("a", "pa1", True), ("b", "pb0", False)]
    (root / "gradings.jsonl").write_text("".join(json.dumps(
        {"instance_id": i, "patch_sha": patch_sha(p), "resolved": r, "status": "x", "run_id": "old"}) + "\n"
        for i, p, r in graded))
    return root, _HarnessInput(root / "grading")


class _HarnessInput:
    """The rows the real `evaluate_official` handed to swebench (it writes them to
    `<run_id>.dataset.jsonl` before running the harness). The rows' image does not exist, so
    the unmodified harness fails those gradings, as it would for any image it cannot get."""

    def __init__(self, workdir):
        self.workdir, self.seen = workdir, set()

    def rows(self) -> list[dict]:
        out = []
        for f in sorted(self.workdir.glob("*.dataset.jsonl")) if self.workdir.exists() else []:
            if f.name not in self.seen:
                self.seen.add(f.name)
                out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        return out

    def clear(self) -> None:
        self.rows()


def test_every_task_counts_and_every_label_names_its_source(run_dir):
    root, sent = run_dir
    r = tts_score(ScoreConfig(dir=str(root), ks=(1, 2), bootstrap=100), log=lambda m: None)
    m = r["metrics"]
    assert m["instances"] == 4 and r["unusable_instances"] == {"c": "no samples"}
    # a: official True (selected) + sandbox True -> 1.0; b: official False -> 0; c, d: 0
    assert m["pass@1"]["value"] == pytest.approx(1.0 / 4)
    assert r["selected"]["resolved"] == 1 and r["selected"]["resolve_rate"] == pytest.approx(1 / 4)
    assert r["metric_labels"] == {"official": 3, "sandbox": 1}
    src = {(i, s["sample"]): s["label_source"] for i, v in r["per_instance"].items() for s in v["samples"]}
    assert src == {("a", 0): "sandbox", ("a", 1): "official", ("b", 0): "official", ("d", 0): "official"}
    assert [row["instance_id"] for row in sent.rows()] == ["d"]  # only the uncached sample went to the harness
    md = (root / "report.md").read_text()
    assert "Instances without a usable sample (1, counted unresolved)" in md and "`c`: no samples" in md
    assert "within instance" in md and "ECE" in md and "1 sandbox" in md

    # --grade all: every label official; a's sandbox label no longer counts, its patch goes to the harness
    sent.clear()
    r = tts_score(ScoreConfig(dir=str(root), ks=(1, 2), bootstrap=100, grade="all"), log=lambda m: None)
    assert r["metric_labels"] == {"official": 4}
    rows = sent.rows()
    assert sorted(row["instance_id"] for row in rows) == ["a"]  # d's error grading is cached
    a_row = next(row for row in rows if row["instance_id"] == "a")  # the official row reached the harness whole
    assert a_row["difficulty"] == "<15 min fix" and a_row["environment_setup_commit"] == "b" * 40
    a_samples = {s["sample"]: s for s in r["per_instance"]["a"]["samples"]}
    # the row's image does not exist here: the harness errors, which counts as unresolved
    assert a_samples[0]["label"] is False and a_samples[0]["label_source"] == "official"
    assert a_samples[1]["label_source"] == "official"
    assert r["unusable_instances"] == {"c": "no samples"}


def test_score_warns_loudly_when_the_verifier_saw_scored_instances(run_dir, tmp_path):
    root, _ = run_dir
    verifier = tmp_path / "verifier"
    verifier.mkdir()
    (verifier / "instances.json").write_text(json.dumps({"train": ["a", "zz"], "eval": ["b"]}))
    (root / "tts_run.json").write_text(json.dumps({"verifier": str(verifier)}))
    logged: list[str] = []
    r = tts_score(ScoreConfig(dir=str(root), ks=(1,), bootstrap=50), log=logged.append)
    assert r["verifier_check"]["status"] == "overlap" and r["verifier_check"]["overlap"] == ["a"]
    assert any(line.startswith("WARNING: the verifier") and "1 of the 4" in line for line in logged)
    assert "**WARNING: the verifier" in (root / "report.md").read_text()
    res = CliRunner().invoke(tts_cli, ["score", str(root), "--k", "1", "--bootstrap", "50"])
    assert "WARNING: the verifier was trained on 1 of the scored instances" in res.output

    (verifier / "instances.json").write_text(json.dumps({"train": ["zz"], "eval": ["a"]}))
    r = tts_score(ScoreConfig(dir=str(root), ks=(1,), bootstrap=50), log=logged.append)
    assert r["verifier_check"] == {"status": "disjoint", "verifier": str(verifier), "trained_instances": 1,
                                   "overlap": []}
    ids = tmp_path / "ids.txt"
    ids.write_text("b\nd\n")
    r = tts_score(ScoreConfig(dir=str(root), ks=(1,), bootstrap=50, verifier=str(ids)), log=lambda m: None)
    assert r["verifier_check"]["overlap"] == ["b", "d"]
    (root / "tts_run.json").write_text(json.dumps({"verifier": "served-verifier-name"}))
    r = tts_score(ScoreConfig(dir=str(root), ks=(1,), bootstrap=50), log=lambda m: None)
    assert r["verifier_check"]["status"] == "unknown" and "served" in r["verifier_check"]["why"]
    assert Path(root / "report.md").read_text().count("unknown (") == 1
