"""`tts score` on real graded trajectories: the top-scored patch of each instance goes to the official
swebench harness as a prediction swebench accepts unmodified, a rerun reuses every grading, and bad
input is counted and reported without stopping the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from verifier_corpus import corpus

from swelego.schema import save_jsonl
from tts.cli import tts as tts_cli
from tts.score import ScoreConfig, patch_sha, tts_score

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _scores(c) -> dict[tuple[str, int], float]:
    """Hand-set verifier scores: per instance, the highest goes to an unresolved sample with a patch
    when there is one (so the selection visibly follows the score, not the label)."""
    out = {}
    by_instance: dict[str, list] = {}
    for t in c.trajectories:
        by_instance.setdefault(t.instance_id, []).append(t)
    for iid, trajs in by_instance.items():
        pick = next((t for t in trajs if not t.resolved and t.patch.strip()), trajs[-1])
        for t in trajs:
            out[(iid, t.sampling["sample"])] = 0.9 if t is pick else 0.1 + 0.1 * t.sampling["sample"]
    return out


def _write_run(c, root: Path) -> dict:
    root.mkdir(parents=True)
    save_jsonl(c.tasks, root / "tasks.jsonl")
    shutil.copy(c.trajectories_path, root / "samples.jsonl")
    scores = _scores(c)
    (root / "scores.jsonl").write_text("".join(
        json.dumps({"instance_id": i, "sample": s, "score": v}) + "\n" for (i, s), v in scores.items()))
    return scores


def _run_dirs(root: Path) -> set[str]:
    base = root / "grading" / "logs" / "run_evaluation"
    return {p.name for p in base.iterdir()} if base.is_dir() else set()


@pytest.fixture(scope="module")
def graded_run(tmp_path_factory):
    c = corpus()
    root = tmp_path_factory.mktemp("tts") / "run"
    scores = _write_run(c, root)
    result = tts_score(ScoreConfig(dir=str(root), ks=(1, 2, 3, 16), bootstrap=300), log=lambda m: None)
    return c, root, scores, result


def test_selected_patches_are_graded_by_the_official_harness(graded_run):
    c, root, scores, result = graded_run
    preds = [json.loads(x) for x in (root / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == len(c.tasks) and all(set(p) == {"instance_id", "model_name_or_path", "model_patch"}
                                              for p in preds)
    by_key = {(t.instance_id, t.sampling["sample"]): t for t in c.trajectories}
    for p in preds:
        (iid, sample), _ = max(((k, v) for k, v in scores.items() if k[0] == p["instance_id"]), key=lambda kv: kv[1])
        assert p["model_patch"] == by_key[(iid, sample)].patch
    sel = result["selected"]
    assert sel["instances"] == len(c.tasks) and result["grading"]["graded_now"] > 0
    gradings = {json.loads(x)["instance_id"] + "@" + json.loads(x)["patch_sha"]: json.loads(x)
                for x in (root / "gradings.jsonl").read_text().splitlines()}
    for p in preds:
        if not p["model_patch"].strip():
            continue  # empty patches are unresolved without a container
        g = gradings[f"{p['instance_id']}@{patch_sha(p['model_patch'])}"]
        t = next(t for t in c.trajectories if t.instance_id == p["instance_id"] and t.patch == p["model_patch"])
        assert g["resolved"] == t.resolved  # the official harness agrees with the episode's own grading
    assert sel["official_vs_rollout_agreement"] == 1.0
    assert sel["resolved"] == sum(1 for p in preds if p["model_patch"].strip() and
                                  gradings[f"{p['instance_id']}@{patch_sha(p['model_patch'])}"]["resolved"])


def test_report_files_and_metrics(graded_run):
    c, root, _, result = graded_run
    m = result["metrics"]
    assert result["ks"] == [1, 2, 3] and result["dropped_ks"] == [16] and result["demo"] is True
    assert m["tts"]["1"]["value"] == pytest.approx(m["pass@1"]["value"])
    for k in ("1", "2", "3"):
        assert m["tts"][k]["value"] <= m["oracle"][k]["value"] + 1e-9
        for name in ("tts", "oracle", "random", "majority"):
            lo, hi = m[name][k]["ci"]
            assert lo <= m[name][k]["value"] <= hi
    # the hand-set verifier prefers broken samples, so its pick is worse than a random one
    assert m["auc"]["value"] < 0.5 and m["tts"]["3"]["value"] <= m["random"]["3"]["value"]
    assert (root / "tts_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (root / "report.md").read_text()
    assert "Pipeline demonstration" in md and "| 3 |" in md and "policy: `oracle`" in md
    assert json.loads((root / "report.json").read_text())["metrics"]["ks"] == [1, 2, 3]


def test_rerun_reuses_every_grading(graded_run):
    _, root, _, first = graded_run
    before = _run_dirs(root)
    res = CliRunner().invoke(tts_cli, ["score", str(root), "--k", "1,2,3", "--bootstrap", "300"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    again = json.loads((root / "report.json").read_text())
    assert again["grading"]["graded_now"] == 0 and again["grading"]["runs"] == []
    assert again["grading"]["reused"] == first["grading"]["requested"]
    assert _run_dirs(root) == before  # no new harness run, so no container
    assert "0 new" in res.output and "pipeline demonstration" in res.output


def test_predictions_file_is_accepted_by_swebench_unmodified(graded_run, tmp_path):
    _, root, _, _ = graded_run
    preds = [json.loads(x) for x in (root / "predictions.jsonl").read_text().splitlines()]
    pick = next(p for p in preds if p["model_patch"].strip())
    cmd = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(root / "tasks.jsonl"),
           "--predictions_path", str(root / "predictions.jsonl"), "--instance_ids", pick["instance_id"],
           "--run_id", "direct", "--max_workers", "1", "--report_dir", str(tmp_path)]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("*.direct.json")).read_text())
    assert report["completed_instances"] == 1 and report["error_instances"] == 0
    graded = json.loads((root / "report.json").read_text())
    gradings = {json.loads(x)["instance_id"]: json.loads(x) for x in (root / "gradings.jsonl").read_text().splitlines()
                if json.loads(x)["patch_sha"] == patch_sha(pick["model_patch"])}
    assert (pick["instance_id"] in report["resolved_ids"]) == gradings[pick["instance_id"]]["resolved"]
    assert graded["selected"]["graded"] >= 1


def test_bad_input_is_counted_and_reported_never_fatal(graded_run, tmp_path):
    c, root, _, _ = graded_run
    bad = tmp_path / "bad"
    shutil.copytree(root, bad, ignore=shutil.ignore_patterns("report.*", "*.png"))
    traj = c.trajectories[0]
    gold = c.tasks[0]
    with (bad / "samples.jsonl").open("a") as f:
        f.write(traj.to_json() + "\n")  # a duplicate (instance, sample)
        f.write(json.dumps({**traj.to_dict(), "instance_id": "nobody__nothing-1"}) + "\n")  # unknown instance
        f.write("{this is not json\n")
        f.write(json.dumps({"instance_id": gold.instance_id, "model_patch": gold.patch}) + "\n")  # unlabelled
        f.write(json.dumps({"instance_id": gold.instance_id, "model_patch": "", "sample": 7}) + "\n")  # empty
    with (bad / "scores.jsonl").open("a") as f:
        f.write(json.dumps({"instance_id": "nobody__nothing-1", "sample": 0, "score": 0.5}) + "\n")
        f.write("[1, 2]\n")
    result = tts_score(ScoreConfig(dir=str(bad), ks=(1, 2, 4)), log=lambda m: None)
    inp = result["input"]
    assert inp["duplicate_samples"] == 1 and inp["samples_of_unknown_instances"] == 1
    assert inp["unknown_instance_ids"] == ["nobody__nothing-1"] and inp["bad_sample_lines"] == 1
    assert inp["scores_for_unknown_samples"] == 1 and inp["bad_score_lines"] == 1
    assert inp["unscored_samples"] == 2 and inp["unlabelled_samples"] == 0
    empties = sum(1 for t in c.trajectories if not t.patch.strip()) + 1
    assert inp["empty_patches"] == empties
    # the unlabelled prediction line (the gold patch, next free index 3) was graded officially: resolved
    line = next(s for s in result["per_instance"][gold.instance_id]["samples"] if s["sample"] == 3)
    assert line["label"] is True and line["label_source"] == "official" and line["score"] is None
    known = (root / "gradings.jsonl").read_text()
    assert result["grading"]["graded_now"] == (0 if patch_sha(gold.patch) in known else 1)
    assert result["samples"] == len(c.trajectories) + 2
    md = (bad / "report.md").read_text()
    assert "| duplicate samples | 1 |" in md and "`nobody__nothing-1`" in md
