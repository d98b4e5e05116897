"""Rollouts: run a policy on every task of a dataset, k samples each, one fresh sandbox per
episode, and record the trajectories.

Output directory layout:
- ``trajectories.jsonl``: one `Trajectory` JSON per line, the sample index in
  ``sampling["sample"]``. Lines are appended and fsynced as episodes finish, so a killed
  run loses only the episodes in flight; a rerun skips every (instance, sample) already
  there and never writes one twice.
- ``errors.jsonl``: episodes that could not run (missing image, endpoint down, ...), one line
  each with the reason; they are retried on the next run.
- ``summary.json``: the counts printed at the end.

Containers left by a killed driver are removed when the next run starts (they carry the
driver's pid; see `swelego.sandbox.docker.gc_containers`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swelego.agent import OraclePolicy, run_episode
from swelego.agent.openai_policy import SamplingParams
from swelego.agent.tools import ToolBox
from swelego.config import doc_field
from swelego.executor import ExecutorOptions
from swelego.records import append_jsonl, read_jsonl
from swelego.schema import TaskInstance
from swelego.store import ResultStore

POLICIES = ("oracle", "openai", "hf")
TOOL_FORMATS = ("native", "openhands")


@dataclass
class RolloutConfig(ExecutorOptions):
    """How to roll out a dataset: the policy, its sampling, the episode and the sandbox, and where
    the trajectories go. The one definition of these options: `data rollout`, `tts run` (its
    `rollout` part) and the data build (its `teacher` part) all read this class.

    One flat class, not nested policy/sandbox/episode parts: the fields are few, every caller
    reads them by name (`cfg.max_tokens`), and rollout_config.json / `--set teacher.samples=2`
    keep the shape users have."""

    out: str = doc_field("Output directory: trajectories.jsonl, errors.jsonl, summary.json (`--out`; the data "
                         "build sets it to OUT/trajectories).", default="")
    trajectories_file: str = doc_field("Name of the trajectory file in `out` (test-time scaling uses "
                                       "samples.jsonl).", default="trajectories.jsonl")
    # the policy
    policy: str = doc_field("`openai`: any OpenAI-compatible endpoint (vLLM, SGLang, hosted); `hf`: a local "
                            "transformers model directory in `model`, generating in this process (no server); "
                            "`oracle`: replays the gold patch through the tools (demos and smoke tests; labelled "
                            "policy=oracle, never model output).", default="oracle")
    base_url: str | None = doc_field("Endpoint root for policy openai, e.g. http://localhost:8000/v1.", default=None)
    model: str | None = doc_field("Model name served at base_url; with policy hf, a local model directory (e.g. "
                                  "OUTPUT/model of `swelego sft train`).", default=None)
    api_key_env: str = doc_field("Environment variable with the endpoint's key.", default="OPENAI_API_KEY")
    tool_format: str = doc_field("`native` tool calls (text <function=…>/<tool_call> calls are parsed too), or "
                                 "`openhands` text calls in the prompt.", default="native")
    temperature: float = doc_field("Sampling temperature.", default=SamplingParams.temperature)
    top_p: float | None = doc_field("Nucleus sampling; null = the endpoint's default.", default=None)
    max_tokens: int = doc_field("Completion tokens per turn (policy hf: new tokens per turn).",
                                 default=SamplingParams.max_tokens)
    device: str = doc_field("Policy hf: auto (cuda when available, else cpu), cpu, cuda or cuda:N.", default="auto")
    dtype: str = doc_field("Policy hf: weights dtype, auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, "
                           "float16.", default="auto")
    noise: float = doc_field("Oracle only: probability that a gold hunk becomes a corrupted edit.", default=0.0)
    seed: int = doc_field("Base seed; sample i of a task gets a seed derived from (seed, instance, i).", default=0)
    # the episodes
    samples: int = doc_field("Episodes per task (k); sample i of a task is independent of the others.", default=1)
    max_turns: int = doc_field("Assistant turns per episode before it is stopped (SWE-Lego: 100).", default=100)
    max_context_tokens: int | None = doc_field("Stop an episode once its prompt exceeds this many tokens (null: no "
                                               "limit; policy hf also stops at its model's context length).",
                                               default=None)
    command_timeout: float = doc_field("Default seconds per shell command (execute_bash).", default=120.0)
    max_observation: int = doc_field("Characters of a tool result kept (head and tail).", default=30_000)
    grade: bool = doc_field("Grade each final patch with the task's hidden tests (resolved / semi_resolved).",
                            default=True)
    # the sandboxes and where they run
    memory: str = doc_field("Memory limit of each episode's sandbox.", default="2g")
    cpus: float = doc_field("CPU limit of each episode's sandbox.", default=1.0)
    pids: int = doc_field("Process limit of each episode's sandbox.", default=512)
    workers: int = doc_field("Episodes running at once on this machine (local executor).", default=1)

    def validate(self) -> None:
        from swelego.errors import SwelegoError

        if self.policy not in POLICIES:
            raise SwelegoError(f"unknown policy {self.policy!r} (one of {', '.join(POLICIES)})")
        if self.policy == "openai" and not (self.base_url and self.model):
            raise SwelegoError("--policy openai needs --base-url and --model")
        if self.policy == "hf":
            from swelego.agent.hf_policy import DTYPES, check_model_dir, resolve_device

            if not self.model:
                raise SwelegoError("--policy hf needs --model (a local model directory, e.g. OUTPUT/model of "
                                   "`swelego sft train`)")
            self.model = check_model_dir(self.model)
            resolve_device(self.device)
            if self.dtype not in DTYPES:
                raise SwelegoError(f"unknown dtype {self.dtype!r} (one of {', '.join(DTYPES)})")
        if self.samples < 1:
            raise SwelegoError("--samples-per-task must be at least 1")
        if self.tool_format not in TOOL_FORMATS:
            raise SwelegoError(f"unknown tool_format {self.tool_format!r} (one of {', '.join(TOOL_FORMATS)})")


@dataclass
class RolloutSummary:
    tasks: int = 0
    planned: int = 0
    skipped: int = 0  # already on disk from an earlier run
    ran: int = 0
    failed: int = 0
    resolved: int = 0  # over all trajectories on disk
    semi_resolved: int = 0
    trajectories: int = 0
    exit_reasons: dict[str, int] = field(default_factory=dict)
    mean_turns: float = 0.0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    bad_rows: list[str] = field(default_factory=list)  # input rows skipped as malformed, `file:N: why`

    def to_dict(self) -> dict:
        return asdict(self)


def sample_key(instance_id: str, sample: int) -> str:
    return f"{instance_id}#{sample}"


def trajectory_key(record: dict) -> str:
    return sample_key(record["instance_id"], int((record.get("sampling") or {}).get("sample", 0)))


def rollout_options(cls: type, prefix: str = "", samples_flag: str = "--samples"):
    """The rollout flags of a command whose config `cls` holds a RolloutConfig at `prefix`
    (`data rollout`: "", `tts run`: "rollout."): one definition, each flag's help the field's."""
    import click

    from swelego.config import config_flags
    from swelego.executor import EXECUTOR_FLAGS

    flags = [
        ("policy", "--policy", {"type": click.Choice(POLICIES)}),
        ("base_url", "--base-url", {}),
        ("model", "--model", {}),
        ("device", "--device", {}),
        ("dtype", "--dtype", {"type": click.Choice(["auto", "float32", "bfloat16", "float16"])}),
        ("api_key_env", "--api-key-env", {}),
        ("tool_format", "--tool-format", {"type": click.Choice(TOOL_FORMATS)}),
        ("samples", samples_flag, {}),
        ("temperature", "--temperature", {}),
        ("top_p", "--top-p", {}),
        ("max_tokens", "--max-tokens", {}),
        ("max_turns", "--max-turns", {}),
        ("max_context_tokens", "--max-context-tokens", {}),
        ("command_timeout", "--command-timeout", {}),
        ("noise", "--noise", {}),
        ("seed", "--seed", {}),
        ("workers", "--workers", {}),
        *EXECUTOR_FLAGS,
        ("grade", "--grade/--no-grade", {}),
    ]
    return config_flags(cls, flags, prefix)


def current_trajectories(records: list[dict], instance_ids: set[str], samples: int) -> list[dict]:
    """The latest record per (instance, sample) of `records` whose task is in `instance_ids` and
    whose sample < `samples`, in file order: a rollout store may still hold samples of tasks, or
    sample counts, that a config change removed."""
    latest: dict[str, dict] = {}
    for rec in records:
        sample = int((rec.get("sampling") or {}).get("sample", 0))
        if rec.get("instance_id") in instance_ids and sample < samples:
            latest[trajectory_key(rec)] = rec
    return list(latest.values())


def trajectory_store(out: str | Path, name: str = "trajectories.jsonl") -> ResultStore:
    return ResultStore(Path(out) / name, key_of=trajectory_key)


def sample_seed(seed: int, instance_id: str, sample: int) -> int:
    digest = hashlib.sha256(f"{seed}:{instance_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_policy(cfg: RolloutConfig, task: TaskInstance, sample: int):
    seed = sample_seed(cfg.seed, task.instance_id, sample)
    if cfg.policy == "oracle":
        return OraclePolicy(task, noise=cfg.noise, seed=seed)
    from swelego.agent.openai_policy import OpenAIPolicy, SamplingParams

    if cfg.policy == "hf":
        from swelego.agent.hf_policy import HFPolicy

        return HFPolicy(cfg.model, tool_format=cfg.tool_format, device=cfg.device, dtype=cfg.dtype,
                        context_window=cfg.max_context_tokens,
                        sampling=SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p,
                                                max_tokens=cfg.max_tokens, seed=seed))

    return OpenAIPolicy(
        cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, tool_format=cfg.tool_format,
        sampling=SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=seed),
    )


def run_sample(item: tuple[dict, int], cfg: RolloutConfig) -> dict:
    """One episode of `cfg.policy` on a task row; returns the trajectory as a dict."""
    from swelego.sandbox import DockerSandbox, SandboxLimits

    row, sample = item
    task = TaskInstance.from_row(row)
    policy = make_policy(cfg, task, sample)
    limits = SandboxLimits(memory=cfg.memory, cpus=cfg.cpus, pids=cfg.pids,
                           exec_timeout=max(600.0, cfg.command_timeout * 2))
    with DockerSandbox(task.image, limits=limits, labels={"swelego.rollout": task.instance_id}) as sb:
        tools = ToolBox(sb, command_timeout=cfg.command_timeout, max_observation=cfg.max_observation)
        traj = run_episode(task, sb, policy, max_turns=cfg.max_turns, grade=cfg.grade, toolbox=tools,
                           max_context_tokens=cfg.max_context_tokens)
    traj.sampling = {**traj.sampling, "sample": sample, "seed": policy_seed(policy)}
    if cfg.policy == "oracle":
        traj.sampling["noise"] = cfg.noise
    return traj.to_dict()


def policy_seed(policy) -> int | None:
    return getattr(policy, "seed", None) or getattr(getattr(policy, "params", None), "seed", None)


def rollout(tasks: list[TaskInstance], cfg: RolloutConfig,
            on_result: Callable[[dict | None, str | None, RolloutSummary], None] | None = None,
            on_start: Callable[[RolloutSummary], None] | None = None,
            bad_rows: list[str] | tuple[str, ...] = ()) -> RolloutSummary:
    """Roll out `cfg.samples` episodes per task into `cfg.out`, skipping finished ones.

    `on_start(summary)` is called once the plan is known; `on_result(trajectory, error, summary)`
    after each episode (trajectory None and error set when it could not run). `bad_rows`: the
    input rows the caller skipped as malformed (see `load_tasks`), recorded in the summary."""
    from functools import partial

    from swelego.executor import run_tasks
    from swelego.sandbox.docker import gc_containers

    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rollout_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    try:
        gc_containers()  # what a killed earlier run left behind
    except Exception:  # noqa: BLE001 - no engine: the episodes will say so one by one
        pass
    t0 = time.monotonic()
    summary = RolloutSummary(tasks=len(tasks), bad_rows=list(bad_rows))
    ids = [t.instance_id for t in tasks]
    if len(set(ids)) != len(ids):
        from swelego.errors import SwelegoError

        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise SwelegoError(f"duplicate instance ids in the dataset: {', '.join(dup[:5])}")
    store = trajectory_store(out, cfg.trajectories_file)
    todo: list[tuple[dict, int]] = []
    for task in tasks:
        for s in range(cfg.samples):
            summary.planned += 1
            if store.has(sample_key(task.instance_id, s)):
                summary.skipped += 1
            else:
                todo.append((task.to_row(), s))
    if on_start:
        on_start(summary)
    wanted = {sample_key(i, s) for i in ids for s in range(cfg.samples)}
    errors_path = out / "errors.jsonl"
    try:
        work = partial(run_sample, cfg=cfg)
        for (row, s), result in run_tasks(work, todo, executor=cfg.executor, ray_address=cfg.ray_address,
                                          workers=cfg.workers):
            key = sample_key(row["instance_id"], s)
            if isinstance(result, BaseException):
                summary.failed += 1
                reason = str(result).strip().splitlines()[0][:300] if str(result).strip() else type(result).__name__
                summary.errors[key] = reason
                append_jsonl(errors_path, [{"key": key, "error": reason, "at": time.time()}], ensure_ascii=True)
                if on_result:
                    on_result(None, reason, summary)
                continue
            store.put(key, result)
            summary.ran += 1
            _tally(summary, [result])
            if on_result:
                on_result(result, None, summary)
    finally:
        store.close()
    final = trajectory_store(out, cfg.trajectories_file)
    done = [rec for key, rec in final if key in wanted]
    final.close()
    summary.resolved = summary.semi_resolved = 0
    summary.exit_reasons = {}
    _tally(summary, done)
    summary.trajectories = len(done)
    summary.mean_turns = round(sum(r.get("turns", 0) for r in done) / max(1, len(done)), 2)
    summary.seconds = round(time.monotonic() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary


def _tally(summary: RolloutSummary, records: list[dict]) -> None:
    for r in records:
        summary.resolved += bool(r.get("resolved"))
        summary.semi_resolved += bool(r.get("semi_resolved"))
        reason = r.get("exit_reason", "error")
        summary.exit_reasons[reason] = summary.exit_reasons.get(reason, 0) + 1


def load_rollout_tasks(dataset: str | Path,
                       log: Callable[[str], None] = lambda m: None) -> tuple[list[TaskInstance], list[str]]:
    """(the task rows of `dataset`, one `file:N: why` line per malformed row): a bad row is
    logged and skipped so the rest of the batch still runs; SwelegoError when nothing is there."""
    from swelego.errors import SwelegoError
    from swelego.schema import load_dataset

    problems: list[str] = []
    try:
        tasks = load_dataset(dataset, problems=problems)
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as e:
        raise SwelegoError(f"{dataset}: {e}") from None
    for line in problems:
        log(line)
    return tasks, problems


def load_trajectories(path: str | Path) -> list[dict]:
    """Trajectory records from a JSONL file or a rollout directory (torn last line ignored)."""
    p = Path(path)
    if p.is_dir():
        p = p / "trajectories.jsonl"
    if not p.exists():
        from swelego.errors import SwelegoError

        raise SwelegoError(f"no trajectories at {path} (expected a JSONL file or a rollout directory)")
    return read_jsonl(p)  # a torn line from a killed writer is dropped


def policy_label(records: list[dict]) -> str:
    """The policies behind `records`, as reports must name them (oracle runs are not model output)."""
    names = sorted({(r.get("policy") or "?") + (f" ({r['model']})" if r.get("model") not in (None, "", r.get("policy")) else "") for r in records})
    return ", ".join(names) or "none"


def describe(cfg: RolloutConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if v is not None}


def progress_hooks(progress, bar, console) -> tuple[Callable, Callable]:
    """`on_start` / `on_result` callbacks of `rollout` that drive a rich progress bar (with a
    `note` field showing the running resolve rate) and print one line per failed episode."""
    from rich.markup import escape

    def on_start(s: RolloutSummary) -> None:
        progress.update(bar, total=s.planned - s.skipped)
        if s.skipped:
            console.print(f"resuming: {s.skipped}/{s.planned} samples already done")

    def on_result(traj: dict | None, error: str | None, s: RolloutSummary) -> None:
        if error:
            console.print(f"[red]✗[/] {escape(error)}", highlight=False)
        note = f"resolved {s.resolved}/{s.ran} ({100 * s.resolved / s.ran:.0f}%)" if s.ran else ""
        progress.update(bar, advance=1, note=note)

    return on_start, on_result
