"""`swelego data build` end to end on the real engine: a real PyPI package (synthetic tasks) and a
local git history (real tasks) through every stage, a build killed mid-rollout that resumes, a
rerun that does no work, a deleted output that reruns only its stage, a config change that reruns
only the stages it affects, and a dataset card whose numbers match the rows."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import TEST_NS

from data_gen.build import STAGE_NAMES, BuildConfig, load_build_config
from swelego.config import describe_config

SWELEGO = str(Path(sys.executable).with_name("swelego"))
REPO_ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "name": "build-test",
    "namespace": TEST_NS,
    "synthetic": {"sources": ["pypi:inflection==0.5.1"], "strategies": ["procedural"], "max_candidates": 3,
                  "baseline_runs": 1, "test_timeout": 120},
    "real": {"example_repo": True, "validate": {"baseline_runs": 1, "confirm_runs": 1, "test_timeout": 120}},
    "teacher": {"policy": "oracle", "noise": 0.3, "max_turns": 30, "samples": 1},
    "filter": {"keep": ["resolved", "semi_resolved"]},
    "export": {"formats": ["trajectories", "sharegpt"], "dataset_name": "build_test"},
}


def build(config: Path, out: Path, *extra: str, env: dict | None = None, timeout: int = 600):
    return subprocess.run([SWELEGO, "data", "build", str(config), "--out", str(out), *extra], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def last_run(out: Path) -> dict:
    return json.loads((out / "state" / "runs.jsonl").read_text().splitlines()[-1])


def actions(out: Path) -> dict[str, str]:
    return {name: s["action"] for name, s in last_run(out)["stages"].items()}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def created_containers(client, since: float, until: float) -> list[str]:
    """Images of the containers of this test session created between the two times."""
    events = client.events(since=int(since), until=int(until) + 1, decode=True,
                           filters={"type": "container", "event": "create"})
    return [e["Actor"]["Attributes"].get("image", "") for e in events
            if e["Actor"]["Attributes"].get("image", "").startswith(TEST_NS + "/")]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("build-config") / "build.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, config_file, base_image, client):
    """Build once, killed as soon as the first trajectory is on disk; resume; rerun; delete one output."""
    out = tmp_path_factory.mktemp("build") / "out"
    traj = out / "trajectories" / "trajectories.jsonl"
    proc = subprocess.Popen([SWELEGO, "data", "build", str(config_file), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if traj.exists() and traj.read_text().endswith("\n") and traj.read_text().strip():
            break
        time.sleep(0.1)
    if proc.poll() is not None:
        pytest.fail(f"the build ended before its first trajectory: {proc.communicate()[1][-3000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before_kill = jsonl(traj)
    assert len(before_kill) >= 1
    killed_state = json.loads((out / "state" / "rollout.json").read_text())

    resumed = build(config_file, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after_resume = actions(out)
    files = {rel: (out / rel).read_bytes() for rel in ("trajectories/trajectories.jsonl", "README.md", "card.json",
                                                        "tasks/tasks.jsonl", "sft/sharegpt.json")}
    states = {n: (out / "state" / f"{n}.json").read_text() for n in STAGE_NAMES}

    t0 = time.time()
    again = build(config_file, out)
    t1 = time.time()
    assert again.returncode == 0, again.stderr[-3000:]
    again_actions = actions(out)
    containers = created_containers(client, t0, t1)
    files_again = {rel: (out / rel).read_bytes() for rel in files}
    states_again = {n: (out / "state" / f"{n}.json").read_text() for n in STAGE_NAMES}

    kept_before = (out / "trajectories" / "kept" / "kept.jsonl").read_bytes()
    shutil.rmtree(out / "trajectories" / "kept")
    deleted = build(config_file, out)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    return {"out": out, "before_kill": before_kill, "killed_state": killed_state, "resumed": after_resume,
            "resumed_stdout": resumed.stdout, "files": files, "states": states, "again": again_actions,
            "again_stdout": again.stdout, "containers": containers, "files_again": files_again,
            "states_again": states_again, "deleted": actions(out), "kept_before": kept_before}


def test_a_killed_build_resumes_mid_rollout_without_losing_or_repeating_episodes(built, client):
    out = built["out"]
    assert built["killed_state"]["complete"] is False
    assert built["resumed"] == {"synth": "skipped", "real": "skipped", "tasks": "skipped", "rollout": "resumed",
                                "filter": "ran", "export": "ran", "card": "ran"}
    rows = jsonl(out / "tasks" / "tasks.jsonl")
    trajs = jsonl(out / "trajectories" / "trajectories.jsonl")
    keys = [(t["instance_id"], t["sampling"]["sample"]) for t in trajs]
    assert len(keys) == len(set(keys)) == len(rows)  # one sample per task, none twice
    by_id = {t["instance_id"]: t for t in trajs}
    for t in built["before_kill"]:  # episodes finished before the kill are kept as they were
        assert by_id[t["instance_id"]] == t
    state = json.loads((out / "state" / "rollout.json").read_text())
    assert state["complete"] and state["attempts"] == 2
    leftovers = [c for c in client.containers.list(all=True, filters={"label": "swelego.rollout"})
                 if (c.image.tags or [""])[0].startswith(TEST_NS + "/")]
    assert not leftovers, "the resumed build removes the containers the killed one left"
    assert "dataset card:" in built["resumed_stdout"]


def test_every_stage_produced_its_output(built):
    out = built["out"]
    rows = jsonl(out / "tasks" / "tasks.jsonl")
    sources = Counter(r["source"] for r in rows)
    assert sources["synthetic"] >= 1 and sources["real"] >= 1, sources
    assert all(r["image"].startswith(TEST_NS + "/") for r in rows)
    assert (out / "tasks" / "dataset" / "dataset_info.json").exists()
    kept = jsonl(out / "trajectories" / "kept" / "kept.jsonl")
    resolved = jsonl(out / "trajectories" / "kept" / "resolved.jsonl")
    semi = jsonl(out / "trajectories" / "kept" / "semi_resolved.jsonl")
    assert kept and len(kept) == len(resolved) + len(semi)
    assert all(t["policy"] == "oracle" for t in kept)
    # sft/: our format is the kept trajectories; sharegpt has a turn_mask on every assistant turn
    assert jsonl(out / "sft" / "trajectories.jsonl") == kept
    share = json.loads((out / "sft" / "sharegpt.json").read_text())
    assert [r["instance_id"] for r in share] == [t["instance_id"] for t in kept]
    for rec in share:
        roles = [m["role"] for m in rec["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert all(isinstance(m["turn_mask"], bool) for m in rec["messages"] if m["role"] == "assistant")
        assert all("turn_mask" not in m for m in rec["messages"] if m["role"] != "assistant")
    info = json.loads((out / "sft" / "dataset_info.json").read_text())
    assert info["build_test"]["file_name"] == "sharegpt.json" and info["build_test"]["formatting"] == "sharegpt"
    assert info["build_test"]["columns"] == {"messages": "messages"}
    log = (out / "logs" / "build.log").read_text()
    assert "[rollout] resuming" in log and "[synth] skipped" in log
    assert yaml.safe_load((out / "config.yaml").read_text())["namespace"] == TEST_NS


def test_a_second_build_does_no_work(built):
    assert set(built["again"].values()) == {"skipped"}, built["again"]
    assert built["containers"] == [], "no container may be created by a build with nothing to do"
    assert built["files_again"] == built["files"]
    assert built["states_again"] == built["states"]
    assert "skipped" in built["again_stdout"]


def test_deleting_one_stage_output_reruns_only_that_stage(built):
    out = built["out"]
    assert built["deleted"] == {"synth": "skipped", "real": "skipped", "tasks": "skipped", "rollout": "skipped",
                                "filter": "ran", "export": "skipped", "card": "skipped"}
    # the same inputs and config give the same kept trajectories, so nothing downstream changed
    assert (out / "trajectories" / "kept" / "kept.jsonl").read_bytes() == built["kept_before"]


def _funnel_table(readme: str) -> dict[str, list[int]]:
    table = {}
    for m in re.finditer(r"^\| (candidates|valid|tasks|rolled out|resolved|kept) \| (\d+) \| (\d+) \| (\d+) \|$",
                         readme, re.MULTILINE):
        table[m.group(1)] = [int(m.group(i)) for i in (2, 3, 4)]
    return table


def test_the_card_numbers_match_the_dataset_rows(built):
    out = built["out"]
    card = json.loads((out / "card.json").read_text())
    readme = (out / "README.md").read_text()
    rows = jsonl(out / "tasks" / "tasks.jsonl")
    trajs = jsonl(out / "trajectories" / "trajectories.jsonl")
    kept = jsonl(out / "trajectories" / "kept" / "kept.jsonl")
    source = {r["instance_id"]: r["source"] for r in rows}

    # counts per source, strategy and modifier, from the rows
    assert card["tasks"]["total"] == len(rows)
    assert {k: v["tasks"] for k, v in card["tasks"]["by_source"].items()} == dict(Counter(source.values()))
    strategies = Counter(r["strategy"].split("/")[0] for r in rows)
    assert {k: v["tasks"] for k, v in card["tasks"]["by_strategy"].items()} == dict(strategies)
    modifiers = Counter((r["strategy"].split("/") + ["-"])[1] for r in rows)
    assert {k: v["tasks"] for k, v in card["tasks"]["by_modifier"].items()} == dict(modifiers)
    assert sum(v["kept"] for v in card["tasks"]["by_source"].values()) == len(kept)

    # the funnel, from the stores, rows and trajectories
    synth_candidates = set()
    for f in (out / "tasks" / "synthetic" / "candidates").glob("*.jsonl"):
        synth_candidates |= {json.loads(line)["key"] for line in f.read_text().splitlines()}
    real_candidates = jsonl(out / "tasks" / "real" / "mined-git" / "candidates.jsonl")
    want = {
        "candidates": [len(synth_candidates), len(real_candidates)],
        "tasks": [source_n for source_n in (sum(s == "synthetic" for s in source.values()),
                                            sum(s == "real" for s in source.values()))],
        "rolled out": [sum(source[t["instance_id"]] == s for t in trajs) for s in ("synthetic", "real")],
        "resolved": [sum(bool(t["resolved"]) and source[t["instance_id"]] == s for t in trajs)
                     for s in ("synthetic", "real")],
        "kept": [sum(source[t["instance_id"]] == s for t in kept) for s in ("synthetic", "real")],
    }
    table = _funnel_table(readme)
    for stage, (syn, real) in want.items():
        assert table[stage] == [syn, real, syn + real], (stage, table[stage])
        assert card["funnel"][stage.replace(" ", "_")] == syn + real
    assert table["valid"][2] >= table["tasks"][2]
    assert len(json.loads((out / "sft" / "sharegpt.json").read_text())) == card["funnel"]["kept"]

    # environments: one synthetic repository, one group of real tasks
    env = card["environments"]
    assert env["by_stage"]["synthetic"] == {"tried": 1, "built": 1}
    assert env["by_stage"]["real"]["tried"] >= 1
    assert f"**{env['built']} of {env['tried']}**" in readme

    # difficulty: turns per trajectory, SWE-Lego's thresholds, resolve rate per bucket
    d = card["difficulty"]
    assert d["thresholds"] == [50, 70]
    turns = [sum(m["role"] == "assistant" for m in t["messages"]) for t in trajs]
    easy = [t for t, n in zip(trajs, turns, strict=True) if n < 50]
    assert [b["trajectories"] for b in d["by_bucket"]] == [len(easy), sum(50 <= n < 70 for n in turns),
                                                          sum(n >= 70 for n in turns)]
    assert d["by_bucket"][0]["resolved"] == sum(bool(t["resolved"]) for t in easy)
    assert sum(b["resolved"] + b["semi_resolved"] + b["unresolved"] for b in d["bins"]) == len(trajs)
    for name in card["plots"]:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(plots/{name})" in readme

    # time and container-hours per stage, as the stage records say
    for name, s in card["stages"].items():
        st = json.loads((out / "state" / f"{name}.json").read_text())
        assert s["seconds"] == round(st["seconds"], 1)
        assert s["container_hours"] == round(st["container_seconds"] / 3600, 4)
    assert card["stages"]["rollout"]["container_hours"] > 0 and card["stages"]["synth"]["container_hours"] > 0

    # front matter and the config used
    front = yaml.safe_load(readme.split("---\n")[1])
    assert {c["config_name"] for c in front["configs"]} == {"tasks", "trajectories", "sft_sharegpt"}
    assert "oracle-policy" in front["tags"] and "Oracle trajectories" in readme
    assert card["config"]["namespace"] == TEST_NS and f"namespace: {TEST_NS}" in readme


def test_a_changed_filter_reruns_only_filter_export_and_card(built, config_file):
    out = built["out"]
    r = build(config_file, out, "--set", "filter.max_turns=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert actions(out) == {"synth": "skipped", "real": "skipped", "tasks": "skipped", "rollout": "skipped",
                            "filter": "ran", "export": "ran", "card": "ran"}
    card = json.loads((out / "card.json").read_text())
    n = len(jsonl(out / "trajectories" / "trajectories.jsonl"))
    assert card["funnel"]["kept"] == 0 and card["filter"]["input"] == n
    assert card["filter"]["dropped"]["over_turns"] + card["filter"]["dropped"]["not_kept"] == n
    assert json.loads((out / "sft" / "sharegpt.json").read_text()) == []


# -- no Docker needed ------------------------------------------------------------------------------------


def test_shipped_configs_load():
    demo = load_build_config(REPO_ROOT / "configs" / "data" / "demo.yaml")
    assert demo.teacher.policy == "oracle" and demo.executor == "local"
    assert demo.synthetic.sources and all(s.startswith("pypi:") for s in demo.synthetic.sources)
    assert demo.real.example_repo
    lego = load_build_config(REPO_ROOT / "configs" / "data" / "swe-lego.yaml")
    assert lego.teacher.policy == "openai" and lego.teacher.max_turns == 100 and lego.teacher.base_url
    assert set(lego.synthetic.strategies) == {"procedural", "llm_rewrite", "llm_modify", "combine"}
    assert lego.real.github and lego.filter.keep == ["resolved", "semi_resolved"]


def test_every_config_field_is_documented():
    for name, _tp, _default, text in describe_config(BuildConfig):
        assert text.strip(), f"{name} has no documentation"


@pytest.mark.parametrize("text,message", [
    ("synthetic:\n  sourcez: [x]\n", "unknown config key synthetic.sourcez"),
    ("teacher:\n  policy: gpt\n", "teacher.policy"),
    ("teacher:\n  policy: openai\n", "needs teacher.base_url"),
    ("real:\n  validate: {nope: 1}\n", "unknown config key real.validate.nope"),
    ("filter:\n  keep: [everything]\n", "filter.keep"),
])
def test_a_bad_config_is_one_line_error_before_any_work(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    r = build(cfg, tmp_path / "out")
    assert r.returncode == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_push_to_hub_without_access_fails_before_building(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = build(cfg, tmp_path / "out", "--push-to-hub", "someone/data",
              env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_not_a_token", "HF_HUB_OFFLINE": "0"})
    assert r.returncode == 1
    assert "--push-to-hub someone/data" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()
    r = build(cfg, tmp_path / "out", "--push-to-hub", "someone/data",
              env={"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 1 and "no Hugging Face token" in r.stderr


def test_only_and_from_refuse_a_stage_whose_inputs_were_never_built(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    r = build(cfg, tmp_path / "out", "--only", "rollout")
    assert r.returncode == 1 and "reads the output of stage tasks" in r.stderr, r.stderr
