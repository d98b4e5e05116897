"""`swelego data synth` and `swelego data audit` on real repositories and the real engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openai_server as fake_openai
import pytest
from conftest import TEST_NS, git

from data_gen.sanitize import audit_task, make_instance_image
from data_gen.synth.modifiers import MODIFIERS, find_entities, mutate, unified_diff
from swelego.harness import evaluate_official, make_eval_script, run_eval
from swelego.sandbox import DockerSandbox, gc_containers
from swelego.schema import TaskInstance, load_dataset

openai_server = fake_openai.openai_server
SWELEGO = str(Path(sys.executable).with_name("swelego"))
FLAKY = "tests/test_flaky.py::test_flaky_median"


def synth(out: Path, *sources: str, extra=(), timeout=900, env=None):
    cmd = [SWELEGO, "data", "synth", *sources, "--out", str(out), "--namespace", TEST_NS, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def store_lines(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "candidates").glob("*.jsonl")) for line in f.read_text().splitlines()]


@pytest.fixture(scope="module")
def toolz_run(tmp_path_factory, base_image):
    out = tmp_path_factory.mktemp("synth-toolz")
    r = synth(out, "pypi:toolz==1.0.0", extra=["--max-candidates", "6", "--workers", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


EXTRA_SRC = """\
    def clamp(x, lo, hi):
        if x < lo:
            return lo
        if x > hi:
            return hi
        return x


    def moving_sum(xs, k):
        out = []
        for i in range(len(xs) - k + 1):
            out.append(sum(xs[i:i + k]))
        return out


    def histogram(xs):
        counts = {}
        for x in xs:
            counts[x] = counts.get(x, 0) + 1
        return counts
    """

EXTRA_TESTS = """\
    from toycalc.extra import clamp, histogram, moving_sum


    def test_clamp():
        assert [clamp(x, 0, 10) for x in (-5, 5, 15)] == [0, 5, 10]


    def test_moving_sum():
        assert moving_sum([1, 2, 3, 4], 2) == [3, 5, 7]


    def test_histogram():
        assert histogram("abca") == {"a": 2, "b": 1, "c": 1}


    def test_histogram_empty():
        assert histogram([]) == {}
    """

FLAKY_TEST = """\
    import os

    from toycalc import median


    def test_flaky_median():
        # passes, fails, passes, ...: the counter lives outside the repository
        path = "/tmp/flaky-counter"
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        assert median([3, 1, 2]) == 2 and n % 2 == 0
    """


@pytest.fixture(scope="module")
def flaky_repo(tmp_path_factory, toy_repo):
    root = tmp_path_factory.mktemp("flaky") / "flakycalc"
    git("clone", "-q", str(toy_repo), str(root), cwd=root.parent)
    for rel, text in {"toycalc/extra.py": EXTRA_SRC, "tests/test_extra.py": EXTRA_TESTS,
                      "tests/test_flaky.py": FLAKY_TEST}.items():
        (root / rel).write_text(textwrap.dedent(text))
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "more functions and a flaky test", cwd=root)
    return root


def test_synth_on_a_real_package_yields_tasks_the_official_harness_grades(toolz_run, client, tmp_path):
    out, r = toolz_run
    rows = load_dataset(out)
    assert len(rows) >= 3
    assert "funnel by strategy" in r.stdout and "funnel by modifier" in r.stdout
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["funnel"]["all"]["all"]["kept"] == len(rows) == funnel["kept_rows"]
    for row in rows:
        assert row.source == "synthetic" and row.FAIL_TO_PASS and row.PASS_TO_PASS
        assert not set(row.FAIL_TO_PASS) & set(row.PASS_TO_PASS)
        for t in row.FAIL_TO_PASS:
            assert t not in row.problem_statement and t.split("::")[-1] not in row.problem_statement
    sample = rows[:2]
    gold = evaluate_official(sample, [{"instance_id": t.instance_id, "model_patch": t.patch} for t in sample],
                             run_id="synth-gold", workdir=tmp_path, max_workers=2)
    assert all(gold.resolved(t.instance_id) for t in sample), gold.summary
    empty = evaluate_official(sample, [{"instance_id": t.instance_id, "model_patch": ""} for t in sample],
                              run_id="synth-empty", workdir=tmp_path, model="empty")
    assert not any(empty.resolved(t.instance_id) for t in sample)
    # and actually run with no fix: the FAIL_TO_PASS tests fail in the shipped image
    with DockerSandbox(sample[0].image, client=client) as sb:
        unfixed = run_eval(sb, sample[0], "")
    assert not unfixed.resolved and set(unfixed.report["FAIL_TO_PASS"]["failure"]) == set(sample[0].FAIL_TO_PASS)


def test_audit_passes_on_the_generated_dataset(toolz_run):
    out, _ = toolz_run
    r = subprocess.run([SWELEGO, "data", "audit", str(out / "dataset"), "--json"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert results and all(x["ok"] for x in results)


def test_rerun_resumes_without_new_work(toolz_run):
    out, first = toolz_run
    before = store_lines(out)
    r = synth(out, "pypi:toolz==1.0.0", extra=["--max-candidates", "6", "--workers", "2"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert store_lines(out) == before  # nothing validated twice, nothing appended
    assert len(load_dataset(out)) == json.loads((out / "funnel.json").read_text())["kept_rows"]


def test_flaky_test_never_becomes_fail_to_pass(flaky_repo, tmp_path):
    r = synth(tmp_path, str(flaky_repo), extra=["--max-candidates", "12"])
    assert r.returncode == 0, r.stderr[-3000:]
    repo = json.loads((tmp_path / "funnel.json").read_text())["repos"][0]
    assert FLAKY in repo["baseline"]["flaky"]
    rows = load_dataset(tmp_path)
    assert rows, r.stdout
    assert any(row.metadata["entity"] == "median" for row in rows)  # bugs the flaky test notices too
    for row in rows:
        assert FLAKY not in row.FAIL_TO_PASS and FLAKY not in row.PASS_TO_PASS
    # combined bugs of one file are validated again as a whole, not assumed
    funnel = json.loads((tmp_path / "funnel.json").read_text())["funnel"]["strategy"]
    assert funnel["combine"]["candidates"] >= 1
    combos = [row for row in rows if row.strategy == "combine/combine"]
    singles = {row.metadata["candidate"]: row for row in rows if row.strategy != "combine/combine"}
    for row in combos:
        assert len(row.metadata["parts"]) >= 2
        assert row.patch.startswith(f"diff --git a/{row.metadata['file']} b/{row.metadata['file']}")
        parts = [singles[p] for p in row.metadata["parts"]]
        fixed_lines = {ln[1:] for ln in row.patch.splitlines() if ln.startswith("+") and not ln.startswith("+++")}
        for part in parts:  # every part's fix is inside the combined fix
            assert {ln[1:] for ln in part.patch.splitlines() if ln.startswith("+") and not ln.startswith("+++")} <= fixed_lines


def test_kill_and_resume_loses_and_duplicates_nothing(flaky_repo, tmp_path):
    cmd = [SWELEGO, "data", "synth", str(flaky_repo), "--out", str(tmp_path), "--namespace", TEST_NS,
           "--max-candidates", "12", "--strategies", "procedural"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        if sum(1 for x in store_lines(tmp_path) if "candidate" in x["value"]) >= 2:
            break
        time.sleep(0.2)
    assert p.poll() is None, "the run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    partial = {x["key"]: x["value"] for x in store_lines(tmp_path)}
    assert len(partial) >= 2
    assert gc_containers()  # the killed driver's sandbox is an orphan, and gc removes it
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = store_lines(tmp_path)
    keys = [x["key"] for x in lines]
    assert len(keys) == len(set(keys))  # each candidate validated exactly once
    final = dict(zip(keys, (x["value"] for x in lines), strict=True))
    assert all(final[k] == v for k, v in partial.items())  # what was recorded survived the kill
    generated = json.loads((tmp_path / "funnel.json").read_text())["funnel"]["all"]["all"]["candidates"]
    assert len([v for v in final.values() if "candidate" in v]) == generated > len(partial)


def test_audit_catches_a_leaky_image(toy_env, client):
    clean = client.containers.run(toy_env.image, ["cat", "toycalc/__init__.py"], remove=True, entrypoint=[]).decode()
    buggy = clean.replace("return s[len(s) // 2]", "return s[0]")
    bug, fix = unified_diff("toycalc/__init__.py", clean, buggy), unified_diff("toycalc/__init__.py", buggy, clean)
    verdicts = {}
    for reinit in (True, False):
        iid = f"toy__leak-{int(reinit)}"
        image, commit = make_instance_image(toy_env.image, bug, iid, namespace=TEST_NS, client=client, reinit=reinit)
        task = TaskInstance(instance_id=iid, repo="toycalc", base_commit=commit, patch=fix, image=image,
                            eval_script=make_eval_script(base_commit=commit, test_cmd=toy_env.test_cmd),
                            source="synthetic")
        verdicts[reinit] = audit_task(task, client=client)
    assert verdicts[True] == []
    leaky = " | ".join(verdicts[False])
    assert "2 commits reachable" in leaky and "fixed toycalc/__init__.py is in the object store" in leaky


def test_llm_strategy_and_issue_text_against_a_local_openai_server(flaky_repo, tmp_path, openai_server):
    buggy_median = "def median(xs):\n    s = sorted(xs)\n    return s[0]\n"

    def respond(request: dict) -> str:
        if request["messages"][0]["role"] == "system":  # the bug-writing prompt
            return f"Here is the function with a subtle change:\n```python\n{buggy_median}```\n"
        return "median() gives the smallest element\n\nFor [3, 1, 2] I expected 2 but got 1."

    openai_server.responder = respond
    r = synth(tmp_path, str(flaky_repo), extra=["--strategies", "llm_modify", "--max-candidates", "2",
                                                "--llm-base-url", openai_server.base_url, "--llm-model", "tiny"])
    assert r.returncode == 0, r.stderr[-3000:]
    rows = load_dataset(tmp_path)
    assert rows and all(row.strategy == "llm_modify/llm_modify" for row in rows)
    median_rows = [row for row in rows if row.metadata["entity"] == "median"]
    assert median_rows and median_rows[0].metadata["statement"] == "llm"
    assert median_rows[0].problem_statement.startswith("median() gives the smallest element")
    assert "return s[0]" in median_rows[0].patch or "return s[len(s) // 2]" in median_rows[0].patch
    assert all(req["model"] == "tiny" for req in openai_server.requests)


def test_ray_executor(toy_repo, tmp_path):
    r = synth(tmp_path, str(toy_repo), extra=["--executor", "ray", "--max-candidates", "3",
                                             "--strategies", "procedural"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_dataset(tmp_path)


def test_every_modifier_mutates_real_code():
    """Each procedural modifier on real code: the standard library's own sources."""
    import inspect
    import random

    modules = [__import__(m) for m in ("statistics", "textwrap", "fractions", "shlex", "difflib", "argparse")]
    sources = [inspect.getsource(m) for m in modules]
    for name, mod in MODIFIERS.items():
        found = None
        for src in sources:
            for ent in find_entities(src):
                out = mutate(src, ent, mod, random.Random(0))
                if out is not None:
                    found = out
                    break
            if found:
                break
        assert found is not None, f"{name} found nothing to mutate in the standard library"
        compile(found, name, "exec")
