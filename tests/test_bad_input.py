"""Bad input never crashes, through the real `swelego` command: a malformed row is one line
naming file:line and the good rows go on; zero candidates is an empty dataset, a summary and
exit 0. The good rows here point at images that do not exist, so no test needs a built image:
they prove the rows were attempted, which is all a loader can decide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_NS

from swelego.schema import TaskInstance, load_dataset, save_dataset

SWELEGO = str(Path(sys.executable).with_name("swelego"))


def swelego(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([SWELEGO, *args], capture_output=True, text=True, timeout=timeout)


def task(i: int) -> TaskInstance:
    return TaskInstance(instance_id=f"toy__missing-{i}", repo="toy/missing", base_commit="0" * 40,
                        patch="diff --git a/a.py b/a.py\n", image=f"{TEST_NS}/no-such-image:{i}",
                        eval_script="#!/bin/bash\ntrue\n", problem_statement="it breaks")


def rows_with_a_bad_line(path: Path, bad: str = '{"instance_id": "toy__half", "repo": \n') -> Path:
    """Good row, malformed line (line 2), good row, a valid JSON object that is no task (line 4)."""
    lines = [json.dumps(task(1).to_row()), bad.rstrip("\n"), json.dumps(task(2).to_row()),
             json.dumps({"instance_id": "toy__no-image", "repo": "toy/x"})]
    path.write_text("\n".join(lines) + "\n")
    return path


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]


def test_empty_dataset_saves_and_loads(tmp_path):
    save_dataset([], tmp_path)
    assert load_dataset(tmp_path) == [] and load_dataset(tmp_path / "dataset") == []
    assert (tmp_path / "tasks.jsonl").read_text() == ""


def test_rollout_reports_malformed_rows_by_line_and_runs_the_rest(tmp_path):
    ds = rows_with_a_bad_line(tmp_path / "tasks.jsonl")
    out = tmp_path / "ro"
    r = swelego("data", "rollout", str(ds), "--out", str(out))
    no_traceback(r)
    bad = [ln for ln in r.stderr.splitlines() if f"{ds}:" in ln]
    assert len(bad) == 2 and f"{ds}:2: not a task row (not valid JSON" in bad[0], r.stderr
    assert f"{ds}:4: not a task row (" in bad[1] and "image" in bad[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 2 and summary["planned"] == 2 and len(summary["bad_rows"]) == 2
    # both good rows were attempted: their (missing) images are the reason they failed
    assert sorted(summary["errors"]) == ["toy__missing-1#0", "toy__missing-2#0"]
    assert all("no-such-image" in e for e in summary["errors"].values())
    assert "skipped 2 malformed row(s)" in r.stdout
    assert r.returncode == 1  # no episode could run (the images are missing), not the bad rows


def test_rollout_of_a_dataset_with_no_good_row_is_one_line(tmp_path):
    ds = tmp_path / "junk.jsonl"
    ds.write_text("[1, 2]\nnot json\n")
    r = swelego("data", "rollout", str(ds), "--out", str(tmp_path / "ro"))
    no_traceback(r)
    assert r.returncode == 2 and "holds no tasks (2 malformed row(s))" in r.stderr
    assert f"{ds}:1: not a task row (a JSON list, not an object)" in r.stderr


def test_rollout_duplicate_ids_are_one_line(tmp_path):
    ds = tmp_path / "dup.jsonl"
    ds.write_text(json.dumps(task(1).to_row()) + "\n" + json.dumps(task(1).to_row()) + "\n")
    r = swelego("data", "rollout", str(ds), "--out", str(tmp_path / "ro"))
    no_traceback(r)
    assert r.returncode == 1 and "duplicate instance ids in the dataset: toy__missing-1" in r.stderr


@pytest.fixture(scope="module")
def tiny_verifier(tmp_path_factory):
    from sft.tiny import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("verifier")
    return build_tiny_model(build_tiny_tokenizer(root / "tok"), root / "model")


def test_tts_run_reports_malformed_rows_by_line_and_samples_the_rest(tmp_path, tiny_verifier):
    ds = rows_with_a_bad_line(tmp_path / "tasks.jsonl")
    run = tmp_path / "run"
    r = swelego("tts", "run", "--dataset", str(ds), "--policy", "oracle", "--samples", "1",
                "--verifier", str(tiny_verifier), "--out", str(run))
    no_traceback(r)
    assert r.returncode == 0, r.stderr[-2000:]
    bad = [ln for ln in r.stderr.splitlines() if f"{ds}:" in ln]
    assert len(bad) == 2 and f"{ds}:2: not a task row" in bad[0] and f"{ds}:4: not a task row" in bad[1]
    assert [json.loads(x)["instance_id"] for x in (run / "tasks.jsonl").read_text().splitlines()] == [
        "toy__missing-1", "toy__missing-2"]
    assert "2 instances × 1 samples" in r.stdout and "skipped 2 malformed row(s)" in r.stdout
    # a verifier that does not exist is said before any sampling
    r = swelego("tts", "run", "--dataset", str(ds), "--policy", "oracle", "--verifier", str(tmp_path / "nope"),
                "--out", str(tmp_path / "run2"))
    no_traceback(r)
    assert r.returncode == 1 and "no verifier at" in r.stderr and not (tmp_path / "run2" / "samples.jsonl").exists()


def test_tts_score_reports_malformed_lines_and_scores_the_rest(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows_with_a_bad_line(run / "tasks.jsonl")
    samples = [{"instance_id": f"toy__missing-{i}", "model_patch": "", "sample": 0} for i in (1, 2)]
    (run / "samples.jsonl").write_text(json.dumps(samples[0]) + "\n{oops\n" + json.dumps(samples[1]) + "\n")
    (run / "scores.jsonl").write_text('{"instance_id": "toy__missing-1", "sample": 0, "score": 0.25}\n[3]\n')
    r = swelego("tts", "score", str(run), "--k", "1")
    no_traceback(r)
    assert r.returncode == 0, r.stderr[-2000:]
    for where in ("tasks.jsonl:2: ", "tasks.jsonl:4: ", "samples.jsonl:2: ", "scores.jsonl:2: "):
        assert sum(ln.startswith(where) for ln in r.stderr.splitlines()) == 1, (where, r.stderr)
    report = json.loads((run / "report.json").read_text())
    assert report["tasks"] == 2 and report["instances"] == 2 and report["samples"] == 2
    assert report["per_instance"]["toy__missing-1"]["samples"][0]["score"] == 0.25


def candidate(i: int, source: Path) -> dict:
    return {"instance_id": f"gone__repo-{i}", "repo": "gone/repo", "source": str(source), "base_commit": "0" * 40,
            "patch": "diff --git a/a.py b/a.py\n", "test_patch": "diff --git a/tests/t.py b/tests/t.py\n",
            "problem_statement": "", "origin": "commit", "ref": f"{i:040d}", "statement_origin": "tests"}


def test_validate_reports_malformed_candidates_by_line_and_validates_the_rest(tmp_path):
    cands = tmp_path / "candidates.jsonl"
    gone = tmp_path / "gone"  # no such repository: the good candidates end as source_error, one each
    cands.write_text("\n".join([json.dumps(candidate(1, gone)), '{"instance_id": ', json.dumps(candidate(2, gone)),
                                json.dumps({**candidate(3, gone), "patch": 7}), "[]"]) + "\n")
    out = tmp_path / "out"
    r = swelego("data", "validate", str(cands), "--out", str(out))
    no_traceback(r)
    assert r.returncode == 0, r.stderr[-2000:]
    bad = [ln for ln in r.stderr.splitlines() if f"{cands}:" in ln]
    assert [b.removeprefix("✗ ").split(": ", 1)[0] for b in bad] == [f"{cands}:2", f"{cands}:4", f"{cands}:5"], r.stderr
    assert "patch must be text" in bad[1] and "not an object" in bad[2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["funnel"]["candidates"] == 2 and summary["statuses"]["source_error"] == 2
    assert len(summary["bad_rows"]) == 3 and "skipped 3 malformed candidate line(s)" in r.stdout
    assert load_dataset(out / "dataset") == [] and "0 task(s)" in r.stdout


@pytest.mark.parametrize("content", ["", "\n", "not json at all\n"])
def test_validate_with_zero_candidates_writes_an_empty_dataset_and_exits_0(tmp_path, content):
    cands = tmp_path / "candidates.jsonl"
    cands.write_text(content)
    out = tmp_path / "out"
    r = swelego("data", "validate", str(cands), "--out", str(out))
    no_traceback(r)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no valid candidates to validate: wrote an empty dataset and its summary" in r.stdout
    assert load_dataset(out / "dataset") == [] and (out / "tasks.jsonl").read_text() == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept_rows"] == 0 and summary["funnel"]["candidates"] == 0


def test_mine_git_without_fixes_then_validate_is_an_empty_dataset(tmp_path):
    repo = tmp_path / "plain"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    (repo / "a.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Initial import"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    assert swelego("data", "mine-git", str(repo), "--out", str(tmp_path / "mined")).returncode == 0
    r = swelego("data", "validate", str(tmp_path / "mined"), "--out", str(tmp_path / "tasks"))
    no_traceback(r)
    assert r.returncode == 0 and "0 task(s)" in r.stdout, r.stderr[-2000:]
    assert load_dataset(tmp_path / "tasks") == []
