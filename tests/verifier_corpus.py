"""Real labelled trajectories for the verifier and TTS tests, built once per test session.

Six validated `toyshop` tasks (verifier.corpus) on one environment image under the session's
test namespace, and three graded oracle episodes per task with noise 0.5, so resolved and
unresolved outcomes mix. Memoised in-process so every test module of a session shares it.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conftest import TEST_NS

from swelego.agent import Trajectory
from swelego.schema import TaskInstance, save_jsonl

MODULES = ("stats", "temperature", "calendar", "percent", "clamp", "window")
SAMPLES = 3
NOISE = 0.5


@dataclass
class Corpus:
    root: Path
    tasks: list[TaskInstance]
    trajectories: list[Trajectory]

    @property
    def tasks_path(self) -> Path:
        return self.root / "tasks.jsonl"

    @property
    def trajectories_path(self) -> Path:
        return self.root / "trajectories.jsonl"


@functools.cache
def corpus(seed: int = 0) -> Corpus:
    from swelego.agent.rollout import RolloutConfig, load_trajectories, rollout
    from swelego.sandbox import docker_client
    from swelego.sandbox.images import ensure_base_image
    from verifier.corpus import BUGS, toyshop_tasks

    client = docker_client()
    ensure_base_image("bookworm", client=client)
    root = Path(tempfile.mkdtemp(prefix="swelego-verifier-corpus-"))
    atexit.register(shutil.rmtree, root, True)
    bugs = tuple(b for b in BUGS if b.module in MODULES)
    tasks = toyshop_tasks(namespace=TEST_NS, client=client, bugs=bugs)
    rollout(tasks, RolloutConfig(out=str(root / "rollout"), samples=SAMPLES, noise=NOISE, seed=seed, workers=2))
    trajs = [Trajectory.from_dict(r) for r in load_trajectories(root / "rollout")]
    order = {t.instance_id: i for i, t in enumerate(tasks)}  # finish order varies; keep task, sample order
    trajs.sort(key=lambda t: (order[t.instance_id], t.sampling["sample"]))
    save_jsonl(tasks, root / "tasks.jsonl")
    (root / "trajectories.jsonl").write_text("".join(t.to_json() + "\n" for t in trajs))
    return Corpus(root, tasks, trajs)
