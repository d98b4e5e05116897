"""`swelego data build CONFIG.yaml`: one config from repositories to a training-ready dataset.

The build runs the data stages in order, each a thin call into its own room's public API:

    synth    synthetic tasks (data_gen.synth.pipeline)        -> tasks/synthetic/
    real     real tasks mined from git / GitHub, validated    -> tasks/real/
    tasks    merge, de-duplicate, decontaminate               -> tasks/ (HF dataset + tasks.jsonl)
    rollout  teacher (or oracle) episodes (swelego.agent.rollout)  -> trajectories/trajectories.jsonl
    filter   keep resolved / semi-resolved (data_gen.filter)  -> trajectories/kept/
    export   our format + LLaMA-Factory sharegpt (formats)    -> sft/
    card     the Hugging Face dataset card (data_gen.card)    -> README.md, card.json, plots/

What this module adds is orchestration: which stages need to run, a record of what each did
(state/<stage>.json), one progress display, logs and the card.

Skip and resume rule. A stage's *key* hashes the config it reads and the content (sha256) of
the upstream outputs it reads. A stage is complete when its state file holds the same key,
says it finished without failed items, and its outputs are on disk with the recorded hashes;
a complete stage is skipped. Otherwise it runs: in place, so the stage's own stores skip the
work already done (a killed build resumes mid-stage), unless the part of its config that
invalidates earlier work (its *reset* config: images, test timeouts, the policy, ...) changed
since, in which case its working files are cleared first. Downstream stages see upstream
outputs by content, so they rerun only when what they read really changed: deleting a stage's
output reruns that stage, and the next stages only if its new output differs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_gen.real.filters import FilterConfig as RealFilters
from swelego.config import ConfigError, config_to_dict, describe_config, dump_config, load_config, parse_sets
from swelego.difficulty import Bucket
from swelego.errors import SwelegoError

FORMAT = 1  # bump when the layout of a stage's outputs changes: every key changes with it


def _doc(text: str, **kw) -> Any:
    """A dataclass field with its documentation (listed by `swelego data build --fields`)."""
    return field(metadata={"help": text}, **kw)


# -- configuration ---------------------------------------------------------------------------------


@dataclass
class LLMConfig:
    """An OpenAI-compatible endpoint for the LLM bug strategies and for problem statements written
    from a diff. Without one the LLM strategies are skipped and statements are templated."""

    base_url: str | None = _doc("Endpoint root, e.g. http://localhost:8000/v1; null = no LLM.", default=None)
    model: str | None = _doc("Model name served at base_url.", default=None)
    api_key_env: str = _doc("Environment variable holding the API key.", default="OPENAI_API_KEY")


@dataclass
class SyntheticConfig:
    """Synthetic tasks: bugs injected into real repositories and validated against their tests."""

    enabled: bool = _doc("Run this stage (off: no synthetic tasks).", default=True)
    sources: list[str] = _doc(
        "Repositories: `pypi:NAME==VERSION` (a release's sdist), a git URL[@commit] or a local path[@rev].",
        default_factory=list)
    strategies: list[str] = _doc("Any of procedural, llm_rewrite, llm_modify, combine.",
                                 default_factory=lambda: ["procedural", "combine"])
    max_candidates: int = _doc("Candidate bugs per repository and strategy.", default=30)
    modifiers: list[str] = _doc("Restrict the procedural modifiers to these names (empty: all).",
                                default_factory=list)
    workers: int = _doc("Warm sandboxes per repository validating candidates in parallel.", default=1)
    seed: int = _doc("Seed of candidate generation (same seed, same candidates).", default=0)
    test_selection: bool = _doc("Run the tests covering a candidate's function before the full suite.",
                                default=True)
    test_timeout: float = _doc("Seconds for one test-suite run; a hanging candidate is a `timeout`.",
                               default=600.0)
    baseline_runs: int = _doc("Clean-suite runs; a test whose status changes between them is flaky.", default=3)


@dataclass
class RealConfig:
    """Real tasks: fixes mined from a repository's git history or from merged GitHub pull requests,
    validated in an inferred environment."""

    enabled: bool = _doc("Run this stage (off: no real tasks).", default=True)
    git: list[str] = _doc("Local paths or git URLs whose history is mined (`data mine-git`).",
                          default_factory=list)
    rev_range: str | None = _doc("Commits to examine in each git source, e.g. v1.0..main (null: all).",
                                 default=None)
    max_commits: int | None = _doc("Examine only the newest N commits of each git source.", default=None)
    issues: str | None = _doc("Local issue texts (JSON/JSONL file or directory) for commits that cite #N.",
                              default=None)
    merges: bool = _doc("Examine merge commits of git sources too (first-parent history); by default they "
                        "are skipped. A commit's statement is its issue text, else written from the failing "
                        "tests (LLM when `llm` is configured, else a template), never its message.", default=False)
    github: list[str] = _doc("OWNER/REPO repositories whose merged pull requests are mined (`data mine-prs`).",
                             default_factory=list)
    api_url: str = _doc("GitHub REST root (GitHub Enterprise: https://HOST/api/v3).",
                        default="https://api.github.com")
    token_env: str = _doc("Environment variable with the GitHub token.", default="GITHUB_TOKEN")
    since: str | None = _doc("Only pull requests created on or after this date (YYYY-MM-DD).", default=None)
    max_prs: int | None = _doc("Merged pull requests examined per repository, newest first.", default=None)
    filters: RealFilters = _doc("Which mined changes become candidates (data_gen.real.filters.FilterConfig: "
                                "min_files, max_files, require_tests, require_code, min_statement_chars, "
                                "allow_binary).", default_factory=RealFilters)
    example_repo: bool = _doc("Also mine the example repository of data_gen.real.demo (a small package "
                              "whose history holds fixes with tests), created under tasks/real/example-repo.",
                              default=False)
    validate: dict = _doc("Options of data_gen.real.validate.ValidateConfig: workers, test_timeout, "
                          "baseline_runs, confirm_runs, repair_attempts, verify, max_tasks.",
                          default_factory=dict)


@dataclass
class DecontaminationConfig:
    """Overlap with SWE-bench: repositories of SWE-bench Verified (list shipped with the package)
    and patches matching a task of the swebench dataset files given here are dropped."""

    allow_contaminated: bool = _doc("Keep overlapping repositories and tasks.", default=False)
    swebench_datasets: list[str] = _doc("Local swebench dataset files (.json/.jsonl/.parquet) whose "
                                        "patches no task may match.", default_factory=list)


@dataclass
class TeacherConfig:
    """The policy that rolls out trajectories on every task (SWE-Lego: Qwen3-Coder-480B in a
    four-tool OpenHands scaffold, up to 100 turns)."""

    policy: str = _doc("`openai`: any OpenAI-compatible endpoint (vLLM, SGLang, hosted); `oracle`: "
                       "replays the gold patch through the tools (demos and smoke tests; labelled "
                       "policy=oracle, never model output).", default="oracle")
    base_url: str | None = _doc("Endpoint root for policy openai.", default=None)
    model: str | None = _doc("Model name for policy openai.", default=None)
    api_key_env: str = _doc("Environment variable with the endpoint's key.", default="OPENAI_API_KEY")
    tool_format: str = _doc("`native` tool calls, or `openhands` text calls in the prompt.", default="native")
    temperature: float = _doc("Sampling temperature.", default=0.7)
    top_p: float | None = _doc("Nucleus sampling; null = the endpoint's default.", default=None)
    max_tokens: int = _doc("Completion tokens per turn.", default=4096)
    samples: int = _doc("Episodes per task (k).", default=1)
    max_turns: int = _doc("Assistant turns per episode.", default=100)
    max_context_tokens: int | None = _doc("Stop an episode past this prompt size.", default=None)
    command_timeout: float = _doc("Default seconds per shell command.", default=120.0)
    max_observation: int = _doc("Characters of a tool result kept (head and tail).", default=30_000)
    memory: str = _doc("Memory limit of each episode's sandbox.", default="2g")
    cpus: float = _doc("CPU limit of each episode's sandbox.", default=1.0)
    workers: int = _doc("Episodes at once (local executor).", default=1)
    noise: float = _doc("Oracle only: probability that a gold hunk becomes a corrupted edit.", default=0.0)
    seed: int = _doc("Base seed; each sample derives its own.", default=0)


@dataclass
class TrajectoryFilterConfig:
    """Which trajectories are kept for training (data_gen.filter)."""

    keep: list[str] = _doc("Outcomes kept: resolved, semi_resolved (right files, tests failing), unresolved.",
                           default_factory=lambda: ["resolved", "semi_resolved"])
    max_turns: int | None = _doc("Drop episodes with more assistant turns (null: no limit).", default=None)
    max_tokens: int | None = _doc("Drop episodes longer than this many tokens (characters / 4).", default=None)
    drop_git_mining: bool = _doc("Drop episodes that searched git history for the fix.", default=True)
    drop_test_tampering: bool = _doc("Drop episodes whose patch touches tests or test infrastructure.", default=True)


@dataclass
class ExportConfig:
    """Training files written to sft/."""

    formats: list[str] = _doc(
        "`trajectories`: kept trajectories in our format (input of `swelego sft`); `sharegpt`: LLaMA-Factory "
        "sharegpt with per-turn `turn_mask` (SWE-Lego's training format) + dataset_info.json; `openhands`: "
        "OpenHands text-call transcripts.", default_factory=lambda: ["trajectories", "sharegpt"])
    error_mask: bool = _doc("sharegpt: flag error turns (swelego.agent.labels rules) with turn_mask=true.", default=True)
    dataset_name: str = _doc("Name of the entry in sft/dataset_info.json.", default="swelego")


@dataclass
class CardConfig:
    """The dataset card (README.md with Hugging Face YAML front matter)."""

    pretty_name: str | None = _doc("Title of the card; null = the build's name.", default=None)
    description: str = _doc("A paragraph placed under the title.", default="")
    license: str = _doc("License id for the front matter (the repositories' own licenses still apply).",
                        default="other")
    tags: list[str] = _doc("Extra Hub tags.", default_factory=list)
    difficulty_buckets: list[Bucket] | None = _doc(
        "Buckets of turns per trajectory for the difficulty plots; null = SWE-Lego's curriculum "
        "(easy [0,50), medium [50,70), hard [70,inf)).", default=None)


@dataclass
class BuildConfig:
    """`swelego data build`: repositories in, tasks + trajectories + SFT files + card out."""

    name: str = _doc("Dataset name (card title, Hub config names).", default="swelego-dataset")
    out: str = _doc("Output directory (`--out` overrides).", default="data-build")
    namespace: str = _doc("Prefix of every Docker image the build creates.", default="swelego")
    base: str = _doc("Base image of environment builds (bookworm, bullseye, trixie or any image).",
                     default="bookworm")
    executor: str = _doc("`local` threads or `ray` tasks for repositories and episodes (`--executor`).",
                         default="local")
    ray_address: str | None = _doc("Ray cluster to join (e.g. auto); null = start a local one.", default=None)
    llm: LLMConfig = _doc("LLM endpoint for bug strategies and issue text.", default_factory=LLMConfig)
    synthetic: SyntheticConfig = _doc("Synthetic tasks.", default_factory=SyntheticConfig)
    real: RealConfig = _doc("Real tasks.", default_factory=RealConfig)
    decontamination: DecontaminationConfig = _doc("SWE-bench overlap checks.",
                                                  default_factory=DecontaminationConfig)
    teacher: TeacherConfig = _doc("Rollout policy and sampling.", default_factory=TeacherConfig)
    filter: TrajectoryFilterConfig = _doc("Trajectory filtering.", default_factory=TrajectoryFilterConfig)
    export: ExportConfig = _doc("SFT exports.", default_factory=ExportConfig)
    card: CardConfig = _doc("Dataset card.", default_factory=CardConfig)


EXPORT_FORMATS = ("trajectories", "sharegpt", "openhands")


def load_build_config(path: str | Path, overrides: dict | None = None) -> BuildConfig:
    """The build config in the YAML file at `path`, with overrides (dotted keys allowed), checked."""
    cfg = load_config(BuildConfig, path, overrides)
    check_config(cfg)
    return cfg


def check_config(cfg: BuildConfig) -> None:
    """Refuse a config that would fail hours into the build, with the field to fix."""
    from data_gen.filter import OUTCOMES
    from data_gen.synth.pipeline import STRATEGIES
    from swelego.agent.rollout import POLICIES

    def bad(where: str, value: Any, allowed) -> None:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}")

    if cfg.executor not in ("local", "ray"):
        bad("executor", cfg.executor, ("local", "ray"))
    for s in cfg.synthetic.strategies:
        if s not in STRATEGIES:
            bad("synthetic.strategies", s, STRATEGIES)
    from data_gen.real.validate import ValidateConfig

    allowed = [f for f in ValidateConfig.__dataclass_fields__ if f not in _VALIDATE_SET_BY_BUILD]
    for k in cfg.real.validate:
        if k not in allowed:
            raise ConfigError(f"unknown config key real.validate.{k} (valid keys: {', '.join(allowed)})")
    t = cfg.teacher
    if t.policy not in POLICIES:
        bad("teacher.policy", t.policy, POLICIES)
    if t.policy == "openai" and not (t.base_url and t.model):
        raise ConfigError("teacher.policy openai needs teacher.base_url and teacher.model")
    if t.tool_format not in ("native", "openhands"):
        bad("teacher.tool_format", t.tool_format, ("native", "openhands"))
    if t.samples < 1 or t.max_turns < 1:
        raise ConfigError("teacher.samples and teacher.max_turns must be at least 1")
    if not cfg.filter.keep:
        raise ConfigError("filter.keep is empty: no trajectory would be kept")
    for k in cfg.filter.keep:
        if k not in OUTCOMES:
            bad("filter.keep", k, OUTCOMES)
    for f in cfg.export.formats:
        if f not in EXPORT_FORMATS:
            bad("export.formats", f, EXPORT_FORMATS)


# -- stage records -------------------------------------------------------------------------------------


@dataclass
class StageState:
    """What `state/<stage>.json` records about a stage's last run."""

    stage: str
    key: str = ""
    reset_hash: str = ""
    complete: bool = False  # finished, and without failed items
    outputs: dict[str, str] = field(default_factory=dict)  # path under OUT -> sha256 (read downstream)
    artifacts: list[str] = field(default_factory=list)  # further paths that must exist
    seconds: float = 0.0  # wall time of the attempts that produced the outputs
    container_seconds: float = 0.0  # sandbox time, summed from the stage's own records
    failed: int = 0
    summary: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    attempts: int = 0

    @classmethod
    def load(cls, path: Path) -> StageState | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


@dataclass
class StageResult:
    """What a stage's run function hands back."""

    outputs: list[str]  # paths under OUT whose content downstream stages read
    artifacts: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    container_seconds: float = 0.0
    failed: int = 0  # items that failed: the stage stays incomplete and a rerun retries them


class StageBar:
    """The stage's line in the build's progress display."""

    def __init__(self, progress: Progress | None, task_id: int | None):
        self._p, self._t = progress, task_id

    def update(self, completed: float | None = None, total: float | None = None, status: str | None = None,
               advance: float | None = None) -> None:
        if self._p is None:
            return
        kw: dict[str, Any] = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if advance is not None:
            kw["advance"] = advance
        if status is not None:
            kw["status"] = status
        self._p.update(self._t, **kw)
        task = next((t for t in self._p.tasks if t.id == self._t), None)
        if task is not None:
            total_text = "?" if task.total is None else f"{int(task.total)}"
            self._p.update(self._t, count=f"{int(task.completed)}/{total_text}")


@dataclass
class Context:
    """Everything a stage's run function may use."""

    cfg: BuildConfig
    out: Path
    bar: StageBar
    log: Callable[[str], None]
    states: dict[str, StageState]

    @property
    def executor(self) -> str:
        return self.cfg.executor


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]  # stages whose outputs this one reads
    paths: tuple[str, ...]  # its working files under OUT, cleared on reset
    config: Callable[[BuildConfig], Any]  # the config its key hashes
    reset: Callable[[BuildConfig], Any] | None  # config that invalidates partial work; None: always start clean
    run: Callable[[Context], StageResult]
    doc: str


# -- helpers ---------------------------------------------------------------------------------------------


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(config_to_dict(obj), sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:300] if text else type(e).__name__)


def _seconds_between(start: str, end: str) -> float:
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (TypeError, ValueError):
        return 0.0


def _write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _write_jsonl(path: Path, records) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of a killed writer
    return out


def wanted_trajectories(out: Path, samples: int) -> list[dict]:
    """The rollouts of the current tasks (sample < samples), one per (instance, sample), in file order.

    The rollout store may still hold samples of tasks a config change removed."""
    from swelego.agent.rollout import trajectory_key

    ids = {r["instance_id"] for r in _read_jsonl(out / "tasks" / "tasks.jsonl")}
    latest: dict[str, dict] = {}
    for rec in _read_jsonl(out / "trajectories" / "trajectories.jsonl"):
        sample = int((rec.get("sampling") or {}).get("sample", 0))
        if rec.get("instance_id") in ids and sample < samples:
            latest[trajectory_key(rec)] = rec
    return list(latest.values())


# -- stage: synthetic tasks ----------------------------------------------------------------------------


def synth_source(source: str, cfg, progress=None) -> dict:
    """One repository: its environment image first (so a failed build is told apart from the
    rest), then `synthesize_repo`. Never raises: failures come back in the record."""
    from data_gen.synth.pipeline import ENV_EXTRA_DEPS, synthesize_repo
    from swelego.sandbox.images import build_env_image

    t0 = time.monotonic()
    try:
        env = build_env_image(source, base=cfg.base, namespace=cfg.namespace, extra_deps=ENV_EXTRA_DEPS,
                              log=lambda m: None)
    except Exception as e:  # noqa: BLE001 - reported per source
        return {"source": source, "env": {"source": source, "ok": False, "error": _first_line(e),
                                          "seconds": round(time.monotonic() - t0, 2)}}
    rec: dict[str, Any] = {"source": source, "env": {
        "source": source, "ok": True, "repo": env.repo, "version": env.version, "image": env.image,
        "python": env.python, "built": env.built, "seconds": round(env.build_seconds, 2)}}
    try:
        rec["report"] = synthesize_repo(source, cfg, progress)
    except Exception as e:  # noqa: BLE001
        rec["error"] = _first_line(e)
    return rec


def run_synth(ctx: Context) -> StageResult:
    from data_gen.synth.pipeline import SynthConfig, report_dict
    from swelego.executor import run_tasks
    from swelego.schema import TaskInstance, save_jsonl

    sc, c = ctx.cfg.synthetic, ctx.cfg
    out = ctx.out / "tasks" / "synthetic"
    out.mkdir(parents=True, exist_ok=True)
    sources = list(dict.fromkeys(sc.sources)) if sc.enabled else []
    from data_gen.validate import ValidateConfig

    scfg = SynthConfig(out=str(out), strategies=tuple(sc.strategies), max_candidates=sc.max_candidates,
                       workers=sc.workers, seed=sc.seed, namespace=c.namespace,
                       validate=ValidateConfig(test_selection=sc.test_selection, test_timeout=sc.test_timeout,
                                               baseline_runs=sc.baseline_runs),
                       base=c.base, llm_base_url=c.llm.base_url, llm_model=c.llm.model,
                       llm_key_env=c.llm.api_key_env, executor=c.executor, ray_address=c.ray_address,
                       modifiers=tuple(sc.modifiers))
    if scfg.llm() is None and {"llm_rewrite", "llm_modify"} & set(sc.strategies):
        ctx.log("notice: llm_rewrite / llm_modify are skipped: no llm.base_url and llm.model configured")
    counts: dict[str, tuple[int, int]] = {}
    ctx.bar.update(total=len(sources) or 0, status=f"{len(sources)} repositories")

    def on_progress(repo: str, done: int, total: int) -> None:
        counts[repo] = (done, total)
        ctx.bar.update(completed=sum(d for d, _ in counts.values()), total=sum(t for _, t in counts.values()),
                       status=f"validating candidates ({len(counts)}/{len(sources)} repositories)")

    envs, reports, errors = [], [], {}
    work = partial(synth_source, cfg=scfg, progress=on_progress if ctx.executor == "local" else None)
    for done, (source, res) in enumerate(run_tasks(work, sources, executor=ctx.executor,
                                                   ray_address=c.ray_address), 1):
        if ctx.executor != "local":  # Ray workers cannot report candidates: count repositories
            ctx.bar.update(completed=done, total=len(sources), status="repositories (ray)")
        if isinstance(res, BaseException):
            res = {"source": source, "env": {"source": source, "ok": None}, "error": _first_line(res)}
        envs.append(res["env"])
        if not res["env"].get("ok"):
            errors[source] = "environment build failed: " + res["env"].get("error", "")
        elif "error" in res:
            errors[source] = res["error"]
        if "report" in res:
            reports.append(res["report"])
            for n in res["report"].notices:
                ctx.log(f"notice: {source}: {n}")
        if source in errors:
            ctx.log(f"✗ synth {source}: {errors[source]}")
    # The rows of this config's candidates only: the store may hold candidates of earlier configs.
    rows = sorted((TaskInstance.from_row(r["row"]) for rep in reports for r in rep.records
                   if r.get("status") == "kept" and "row" in r), key=lambda t: t.instance_id)
    save_jsonl(rows, out / "tasks.jsonl")
    summary = report_dict(reports, errors)
    summary["kept_rows"] = len(rows)
    summary["envs"] = envs
    # Sandbox time from the records: the clean-suite runs (median x runs, + the coverage run), every
    # candidate's validation, and image builds made now.
    suite_runs = sc.baseline_runs + int(sc.test_selection)
    summary["container_seconds"] = round(sum(
        float(rep.baseline.get("seconds", 0)) * suite_runs + sum(float(r.get("seconds", 0)) for r in rep.records)
        for rep in reports) + sum(float(e.get("seconds", 0)) for e in envs if e.get("built")), 2)
    _write_json(out / "funnel.json", summary)
    total = summary["funnel"]["all"].get("all", {})
    return StageResult(outputs=["tasks/synthetic/tasks.jsonl", "tasks/synthetic/funnel.json"],
                       summary={"repositories": len(sources), "errors": errors, "rows": len(rows),
                                "candidates": total.get("candidates", 0), "valid": total.get("valid", 0)},
                       container_seconds=summary["container_seconds"], failed=len(errors))


# -- stage: real tasks -----------------------------------------------------------------------------------


# Fields of data_gen.real.validate.ValidateConfig that the build sets itself.
_VALIDATE_SET_BY_BUILD = ("out", "namespace", "llm_base_url", "llm_model", "llm_key_env", "executor", "ray_address",
                          "allow_contaminated", "swebench_datasets")


def run_real(ctx: Context) -> StageResult:
    import os

    from data_gen.real.filters import load_candidates
    from data_gen.real.mine_git import mine_git
    from data_gen.real.mine_prs import mine_prs
    from data_gen.real.validate import validate
    from swelego.schema import load_jsonl, save_jsonl

    rc, dc, c = ctx.cfg.real, ctx.cfg.decontamination, ctx.cfg
    out = ctx.out / "tasks" / "real"
    out.mkdir(parents=True, exist_ok=True)
    git_sources = list(dict.fromkeys(rc.git)) if rc.enabled else []
    github = list(dict.fromkeys(rc.github)) if rc.enabled else []
    issues = rc.issues
    if rc.enabled and rc.example_repo:
        from data_gen.real.demo import make_demo_repo, write_issues

        example = out / "example-repo" / "minicalc"
        if not (example / ".git").is_dir():
            shutil.rmtree(example, ignore_errors=True)
            make_demo_repo(example)
        git_sources.append(str(example))
        issues = issues or str(write_issues(out / "example-repo" / "issues"))
    summary: dict[str, Any] = {"mined": {}, "validated": {}, "funnel": {"candidates": 0, "valid": 0, "kept": 0},
                               "envs": {}, "container_seconds": 0.0}
    if not (git_sources or github):
        save_jsonl([], out / "tasks.jsonl")
        _write_json(out / "summary.json", summary)
        ctx.bar.update(total=0, status="no git or github sources")
        return StageResult(outputs=["tasks/real/tasks.jsonl", "tasks/real/summary.json"],
                           summary={"rows": 0, "candidates": 0, "valid": 0})
    decon = {"allow_contaminated": dc.allow_contaminated, "swebench_datasets": tuple(dc.swebench_datasets)}
    mined: dict[str, tuple[int, int]] = {}

    def on_mined(repo: str, done: int, total: int | None = None) -> None:
        mined[repo] = (done, total if total is not None else done)
        ctx.bar.update(completed=sum(d for d, _ in mined.values()), total=sum(t for _, t in mined.values()),
                       status=f"mining {len(mined)}/{len(git_sources) + len(github)} repositories")

    candidates = []
    failed = 0
    if git_sources:
        s = mine_git(git_sources, out / "mined-git", log=ctx.log, progress=on_mined, rev_range=rc.rev_range,
                     max_commits=rc.max_commits, issues=issues, merges=rc.merges,
                     filters=rc.filters, **decon)
        summary["mined"]["git"] = s
        failed += len(s.get("errors", {}))
        candidates += load_candidates(out / "mined-git")
    if github:
        s = mine_prs(github, out / "mined-prs", log=ctx.log, progress=on_mined, api_url=rc.api_url,
                     token=os.environ.get(rc.token_env) or None, since=rc.since, max_prs=rc.max_prs,
                     filters=rc.filters, **decon)
        summary["mined"]["github"] = s
        failed += len(s.get("errors", {}))
        candidates += load_candidates(out / "mined-prs")
    ids = {cand.instance_id for cand in candidates}
    ctx.bar.update(completed=0, total=len(candidates), status=f"validating {len(candidates)} candidates")
    v = validate(candidates, out / "validated", progress=lambda _iid, n=1: ctx.bar.update(advance=n), log=ctx.log,
                 namespace=c.namespace, llm_base_url=c.llm.base_url, llm_model=c.llm.model,
                 llm_key_env=c.llm.api_key_env, executor=c.executor, ray_address=c.ray_address,
                 **decon, **rc.validate)
    failed += len(v.get("errors", {}))
    # The rows of the current candidates only: the validation store may hold earlier ones.
    rows = [t for t in load_jsonl(out / "validated" / "tasks.jsonl") if t.instance_id in ids]
    save_jsonl(rows, out / "tasks.jsonl")
    summary["validated"] = v
    summary["funnel"] = {"candidates": len(candidates), "valid": int(v.get("funnel", {}).get("fail_to_pass", 0)),
                         "kept": len(rows)}
    summary["envs"] = v.get("envs", {})
    # Validation runs in sandboxes for most of each repository's time: its wall time is the sandbox time.
    summary["container_seconds"] = round(sum(float(r.get("seconds", 0)) for r in v.get("repos", [])), 2)
    _write_json(out / "summary.json", summary)
    return StageResult(outputs=["tasks/real/tasks.jsonl", "tasks/real/summary.json"],
                       summary={"rows": len(rows), **summary["funnel"]},
                       container_seconds=summary["container_seconds"], failed=failed)


# -- stage: merged task dataset ----------------------------------------------------------------------


def run_tasks_stage(ctx: Context) -> StageResult:
    from data_gen.real.decontam import Decontaminator
    from swelego.schema import load_jsonl, save_dataset

    rows, dropped = [], []
    seen: set[str] = set()
    dc = ctx.cfg.decontamination
    decon = Decontaminator([Path(p) for p in dc.swebench_datasets], allow=dc.allow_contaminated)
    for part in ("synthetic", "real"):
        for t in load_jsonl(ctx.out / "tasks" / part / "tasks.jsonl"):
            if t.instance_id in seen:
                dropped.append({"instance_id": t.instance_id, "source": part, "reason": "duplicate instance_id"})
                continue
            why = decon.repo_reason(t.repo) or decon.patch_reason(t.patch, t.test_patch)
            if why:
                dropped.append({"instance_id": t.instance_id, "source": part, "reason": f"contaminated: {why}"})
                continue
            seen.add(t.instance_id)
            rows.append(t)
    for d in dropped:
        ctx.log(f"tasks: dropped {d['instance_id']}: {d['reason']}")
    import datasets

    datasets.disable_progress_bars()
    save_dataset(rows, ctx.out / "tasks")
    report = {"rows": len(rows), "dropped": dropped,
              "by_source": {s: sum(t.source == s for t in rows) for s in sorted({t.source for t in rows})}}
    _write_json(ctx.out / "tasks" / "report.json", report)
    ctx.bar.update(completed=len(rows), total=len(rows), status=f"{len(rows)} tasks, {len(dropped)} dropped")
    if not rows:
        ctx.log("warning: no tasks were produced; later stages have nothing to work on (see logs/build.log)")
    return StageResult(outputs=["tasks/tasks.jsonl"], artifacts=["tasks/dataset", "tasks/report.json"],
                       summary={"rows": len(rows), "dropped": len(dropped)})


# -- stage: rollouts -------------------------------------------------------------------------------------


def rollout_config(cfg: BuildConfig, out: Path):
    from swelego.agent.rollout import RolloutConfig

    t = cfg.teacher
    return RolloutConfig(out=str(out / "trajectories"), policy=t.policy, samples=t.samples, workers=t.workers,
                         executor=cfg.executor, ray_address=cfg.ray_address, max_turns=t.max_turns,
                         max_context_tokens=t.max_context_tokens, command_timeout=t.command_timeout,
                         max_observation=t.max_observation, memory=t.memory, cpus=t.cpus, grade=True,
                         noise=t.noise, seed=t.seed, base_url=t.base_url, model=t.model,
                         api_key_env=t.api_key_env, temperature=t.temperature, top_p=t.top_p,
                         max_tokens=t.max_tokens, tool_format=t.tool_format)


def run_rollout(ctx: Context) -> StageResult:
    from swelego.agent.rollout import rollout
    from swelego.schema import load_jsonl

    tasks = load_jsonl(ctx.out / "tasks" / "tasks.jsonl")
    rcfg = rollout_config(ctx.cfg, ctx.out)
    ctx.bar.update(status=f"{len(tasks)} tasks x {rcfg.samples} samples ({rcfg.policy})")

    def on_start(s) -> None:
        ctx.bar.update(completed=0, total=s.planned - s.skipped)
        if s.skipped:
            ctx.log(f"rollout: resuming, {s.skipped}/{s.planned} samples already done")

    def on_result(traj, error, s) -> None:
        if error:
            ctx.log(f"✗ rollout: {error}")
        rate = f"resolved {s.resolved}/{s.ran}" if s.ran else ""
        ctx.bar.update(advance=1, status=rate)

    summary = rollout(tasks, rcfg, on_result=on_result, on_start=on_start)
    # Keep trajectories.jsonl = the rollouts of the current tasks (a config change may have dropped some).
    path = ctx.out / "trajectories" / "trajectories.jsonl"
    kept = wanted_trajectories(ctx.out, rcfg.samples)
    if len(_read_jsonl(path)) != len(kept):
        _write_jsonl(path, kept)
    container = sum(_seconds_between(r.get("started_at", ""), r.get("finished_at", "")) for r in kept)
    return StageResult(outputs=["trajectories/trajectories.jsonl"], artifacts=["trajectories/summary.json"],
                       summary={"trajectories": summary.trajectories, "ran": summary.ran, "failed": summary.failed,
                                "resolved": summary.resolved, "semi_resolved": summary.semi_resolved,
                                "errors": summary.errors},
                       container_seconds=round(container, 2), failed=summary.failed)


# -- stage: filtering ------------------------------------------------------------------------------------


def run_filter(ctx: Context) -> StageResult:
    from data_gen.filter import FilterConfig, filter_trajectories, write_filtered

    f = ctx.cfg.filter
    records = wanted_trajectories(ctx.out, ctx.cfg.teacher.samples)
    fcfg = FilterConfig(keep=tuple(f.keep), max_turns=f.max_turns, max_tokens=f.max_tokens,
                        drop_git_mining=f.drop_git_mining, drop_test_tampering=f.drop_test_tampering)
    res = filter_trajectories(records, fcfg)
    report = write_filtered(res, ctx.out / "trajectories" / "kept", fcfg)
    ctx.bar.update(completed=len(records), total=len(records), status=f"kept {report['kept']}/{report['input']}")
    splits = [f"trajectories/kept/{o}.jsonl" for o in fcfg.keep]
    return StageResult(outputs=["trajectories/kept/kept.jsonl", "trajectories/kept/report.json", *splits],
                       artifacts=["trajectories/kept/dropped.jsonl"],
                       summary={"input": report["input"], "kept": report["kept"], "dropped": report["dropped"]})


# -- stage: SFT exports ----------------------------------------------------------------------------------


LLAMA_FACTORY_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                      "assistant_tag": "assistant", "system_tag": "system"}


def run_export(ctx: Context) -> StageResult:
    from swelego.agent.formats import to_openhands_messages, to_sharegpt
    from swelego.agent.labels import LabelSummary, label_trajectory
    from swelego.agent.trajectory import Trajectory

    e = ctx.cfg.export
    sft = ctx.out / "sft"
    sft.mkdir(parents=True, exist_ok=True)
    kept_path = ctx.out / "trajectories" / "kept" / "kept.jsonl"
    records = _read_jsonl(kept_path)
    ctx.bar.update(completed=0, total=len(records) * len(e.formats), status=", ".join(e.formats))
    outputs: list[str] = []
    summary: dict[str, Any] = {"records": len(records), "failed": {}}
    if "trajectories" in e.formats:
        shutil.copyfile(kept_path, sft / "trajectories.jsonl")
        outputs.append("sft/trajectories.jsonl")
        ctx.bar.update(advance=len(records))
    if "sharegpt" in e.formats:
        labels = LabelSummary()
        rows, failed = [], 0
        for rec in records:
            ctx.bar.update(advance=1)
            try:
                traj = Trajectory.from_dict(rec)
                masked: set[int] = set()
                if e.error_mask:
                    turn_labels = label_trajectory(traj)
                    labels.add(turn_labels)
                    masked = {lab.message_index for lab in turn_labels if lab.error}
                rows.append(to_sharegpt(traj, masked))
            except (ValueError, TypeError, KeyError) as err:
                failed += 1
                ctx.log(f"✗ export sharegpt {rec.get('instance_id', '?')}: {_first_line(err)}")
        _write_json(sft / "sharegpt.json", rows, indent=None)
        info = {e.dataset_name: {"file_name": "sharegpt.json", "formatting": "sharegpt",
                                 "columns": {"messages": "messages"}, "tags": LLAMA_FACTORY_TAGS}}
        _write_json(sft / "dataset_info.json", info)
        _write_json(sft / "labels.json", labels.to_dict())
        outputs += ["sft/sharegpt.json", "sft/dataset_info.json", "sft/labels.json"]
        summary["sharegpt"] = len(rows)
        summary["failed"]["sharegpt"] = failed
        summary["labels"] = labels.to_dict()
    if "openhands" in e.formats:
        rows, failed = [], 0
        for rec in records:
            ctx.bar.update(advance=1)
            try:
                t = Trajectory.from_dict(rec)
                rows.append({"instance_id": t.instance_id, "messages": to_openhands_messages(t), "tools": t.tools,
                             "resolved": t.resolved, "semi_resolved": t.semi_resolved, "policy": t.policy,
                             "model": t.model, "patch": t.patch})
            except (ValueError, TypeError, KeyError) as err:
                failed += 1
                ctx.log(f"✗ export openhands {rec.get('instance_id', '?')}: {_first_line(err)}")
        _write_jsonl(sft / "openhands.jsonl", rows)
        outputs.append("sft/openhands.jsonl")
        summary["openhands"] = len(rows)
        summary["failed"]["openhands"] = failed
    _write_json(sft / "export.json", summary)
    outputs.append("sft/export.json")
    return StageResult(outputs=outputs, summary=summary)


# -- stage: dataset card -------------------------------------------------------------------------------


def run_card(ctx: Context) -> StageResult:
    from data_gen.card import write_card

    ctx.bar.update(total=1, status="README.md")
    data = write_card(ctx.out, ctx.cfg, ctx.states)
    ctx.bar.update(completed=1)
    return StageResult(outputs=["README.md", "card.json"], artifacts=[f"plots/{p}" for p in data["plots"]],
                       summary={"tasks": data["tasks"]["total"], "kept": data["funnel"]["kept"]})


def _card_config(c: BuildConfig) -> dict:
    # The card prints the whole config, so it depends on all of it (except where the output goes).
    d = config_to_dict(c)
    d.pop("out", None)
    return d


STAGES: tuple[Stage, ...] = (
    Stage("synth", (), ("tasks/synthetic",),
          lambda c: {"synthetic": {k: v for k, v in config_to_dict(c.synthetic).items() if k != "workers"},
                     "llm": c.llm, "namespace": c.namespace, "base": c.base},
          lambda c: {"namespace": c.namespace, "base": c.base, "llm": c.llm, "test_timeout": c.synthetic.test_timeout,
                     "test_selection": c.synthetic.test_selection, "baseline_runs": c.synthetic.baseline_runs},
          run_synth, "synthetic tasks from the repositories in synthetic.sources"),
    Stage("real", (), ("tasks/real",),
          lambda c: {"real": c.real, "decontamination": c.decontamination, "llm": c.llm,
                     "namespace": c.namespace, "base": c.base},
          lambda c: {"namespace": c.namespace, "base": c.base, "llm": c.llm, "filters": c.real.filters,
                     "merges": c.real.merges, "validate": c.real.validate,
                     "decontamination": c.decontamination},
          run_real, "real tasks mined from real.git histories and real.github pull requests"),
    Stage("tasks", ("synth", "real"), ("tasks/tasks.jsonl", "tasks/dataset", "tasks/report.json"),
          lambda c: {"decontamination": c.decontamination}, None,
          run_tasks_stage, "one task dataset: de-duplicated and decontaminated"),
    Stage("rollout", ("tasks",), ("trajectories/trajectories.jsonl", "trajectories/errors.jsonl",
                                  "trajectories/summary.json", "trajectories/rollout_config.json"),
          lambda c: {k: v for k, v in config_to_dict(c.teacher).items() if k != "workers"},
          lambda c: {k: v for k, v in config_to_dict(c.teacher).items() if k not in ("workers", "samples")},
          run_rollout, "teacher episodes on every task"),
    Stage("filter", ("tasks", "rollout"), ("trajectories/kept",),
          lambda c: {"filter": c.filter, "samples": c.teacher.samples}, None,
          run_filter, "kept trajectories and drop reasons"),
    Stage("export", ("filter",), ("sft",), lambda c: {"export": c.export}, None,
          run_export, "SFT files: our format and LLaMA-Factory sharegpt"),
    Stage("card", ("synth", "real", "tasks", "rollout", "filter", "export"), ("README.md", "card.json", "plots"),
          _card_config, None, run_card, "the dataset card"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


# -- the runner ------------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    out: Path
    actions: dict[str, str]  # stage -> ran | resumed | skipped | not selected | failed
    states: dict[str, StageState]
    seconds: float


def state_path(out: Path, stage: str) -> Path:
    return out / "state" / f"{stage}.json"


def load_states(out: Path) -> dict[str, StageState]:
    states = {}
    for name in STAGE_NAMES:
        st = StageState.load(state_path(out, name))
        if st is not None:
            states[name] = st
    return states


def outputs_intact(out: Path, st: StageState) -> bool:
    """The recorded outputs are on disk with their recorded content, and the artifacts exist."""
    for rel, digest in st.outputs.items():
        p = out / rel
        if not p.is_file() or file_sha256(p) != digest:
            return False
    return all((out / rel).exists() for rel in st.artifacts)


def stage_key(stage: Stage, cfg: BuildConfig, states: dict[str, StageState]) -> str:
    inputs = {}
    for need in stage.needs:
        st = states.get(need)
        if st is None or not st.outputs:
            raise SwelegoError(f"stage {stage.name} reads the output of stage {need}, which has not run yet "
                               f"(run without --only / --from first)")
        inputs[need] = st.outputs
    return _hash({"format": FORMAT, "stage": stage.name, "config": stage.config(cfg), "inputs": inputs})


def _clear(out: Path, rels: tuple[str, ...]) -> None:
    for rel in rels:
        p = out / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def select_stages(only: list[str] | tuple[str, ...] | None = None, start: str | None = None) -> list[str]:
    for name in [*(only or ()), *([start] if start else [])]:
        if name not in STAGE_NAMES:
            raise SwelegoError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    if only and start:
        raise SwelegoError("--only and --from do not combine; use one of them")
    if only:
        return [s for s in STAGE_NAMES if s in only]
    if start:
        return list(STAGE_NAMES[STAGE_NAMES.index(start):])
    return list(STAGE_NAMES)


class BuildProgress:
    """One progress display for the whole build: a line per stage."""

    def __init__(self, console: Console, enabled: bool = True):
        self.progress = Progress(
            TextColumn("[bold]{task.description:<8}"), BarColumn(bar_width=30), TextColumn("{task.fields[count]:>9}"),
            TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=console, transient=False,
            disable=not enabled)
        self.ids = {name: self.progress.add_task(name, total=None, start=False, count="", status="waiting")
                    for name in STAGE_NAMES}

    def bar(self, name: str) -> StageBar:
        return StageBar(self.progress, self.ids[name])

    def start(self, name: str, status: str) -> None:
        self.progress.start_task(self.ids[name])
        self.progress.update(self.ids[name], status=status)

    def finish(self, name: str, status: str, done: bool = True) -> None:
        tid = self.ids[name]
        task = self.progress.tasks[tid]
        if done:
            total = task.total if task.total else 1
            self.progress.update(tid, total=total, completed=total)
        self.progress.update(tid, status=status)
        if task.started:
            self.progress.stop_task(tid)

    def __enter__(self) -> BuildProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


def run_build(cfg: BuildConfig, *, only: list[str] | None = None, start: str | None = None, force: bool = False,
              console: Console | None = None, progress: bool = True) -> BuildReport:
    """Run (or skip) every selected stage in order; see the module docstring for the rule."""
    check_config(cfg)
    selected = select_stages(only, start)
    out = Path(cfg.out).resolve()
    cfg.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    console = console or Console(stderr=True)
    log_path = out / "logs" / "build.log"
    states = load_states(out)
    actions: dict[str, str] = {}
    t_build = time.monotonic()
    run_record = {"started_at": _now(), "selected": selected, "force": force, "stages": {}}

    with BuildProgress(console, enabled=progress) as display, log_path.open("a", encoding="utf-8") as logf:
        current = [""]

        def log(msg: str) -> None:
            logf.write(f"{_now()} [{current[0]}] {msg}\n")
            logf.flush()
            display.progress.console.print(escape(msg), highlight=False)

        log(f"build {cfg.name} -> {out} (stages: {', '.join(selected)})")
        for stage in STAGES:
            current[0] = stage.name
            if stage.name not in selected:
                prev = states.get(stage.name)
                try:
                    stale = prev is not None and prev.key != stage_key(stage, cfg, states)
                except SwelegoError:
                    stale = True
                actions[stage.name] = "not selected" + (" (stale)" if stale else "")
                display.finish(stage.name, f"[dim]{actions[stage.name]}", done=False)
                continue
            key = stage_key(stage, cfg, states)
            prev = states.get(stage.name)
            if not force and prev is not None and prev.complete and prev.key == key and outputs_intact(out, prev):
                display.finish(stage.name, "[green]complete, skipped")
                actions[stage.name] = "skipped"
                run_record["stages"][stage.name] = {"action": "skipped"}
                logf.write(f"{_now()} [{stage.name}] skipped: complete for the same inputs and config\n")
                continue
            reset_hash = _hash(stage.reset(cfg)) if stage.reset is not None else ""
            resume = (not force and stage.reset is not None and prev is not None and prev.reset_hash == reset_hash)
            if not resume:
                _clear(out, stage.paths)
            carried = prev.seconds if resume and prev is not None and not prev.complete else 0.0
            st = StageState(stage=stage.name, key=key, reset_hash=reset_hash, started_at=_now(),
                            attempts=(prev.attempts if resume and prev is not None else 0) + 1, seconds=carried)
            st.save(state_path(out, stage.name))
            states[stage.name] = st
            action = "resumed" if resume and prev is not None else "ran"
            display.start(stage.name, "running")
            logf.write(f"{_now()} [{stage.name}] {'resuming' if action == 'resumed' else 'running'} ({stage.doc})\n")
            t0 = time.monotonic()
            ctx = Context(cfg=cfg, out=out, bar=display.bar(stage.name), log=log, states=states)
            try:
                result = stage.run(ctx)
            except BaseException as e:
                st.seconds = round(carried + time.monotonic() - t0, 2)
                st.save(state_path(out, stage.name))
                display.finish(stage.name, "[red]failed", done=False)
                actions[stage.name] = "failed"
                run_record["stages"][stage.name] = {"action": "failed", "seconds": st.seconds}
                run_record["finished_at"] = _now()
                _append_run(out, run_record)
                if isinstance(e, KeyboardInterrupt):
                    raise
                logf.write(traceback.format_exc())
                msg = str(e) if isinstance(e, SwelegoError) else f"{type(e).__name__}: {e}"
                raise SwelegoError(f"stage {stage.name} failed: {msg.strip().splitlines()[0] if msg.strip() else msg}"
                                   " (details in logs/build.log; rerun to resume)") from None
            st.seconds = round(carried + time.monotonic() - t0, 2)
            st.finished_at = _now()
            missing = [rel for rel in result.outputs if not (out / rel).is_file()]
            if missing:
                raise SwelegoError(f"stage {stage.name} did not write {', '.join(missing)}")
            st.outputs = {rel: file_sha256(out / rel) for rel in result.outputs}
            st.artifacts = list(result.artifacts)
            st.summary = result.summary
            st.container_seconds = result.container_seconds
            st.failed = result.failed
            st.complete = result.failed == 0
            st.save(state_path(out, stage.name))
            if result.failed:
                display.finish(stage.name, f"[yellow]partial: {result.failed} failed (rerun retries them)")
                action = "partial"
            else:
                display.finish(stage.name, f"[green]{'resumed, ' if action == 'resumed' else ''}done in {st.seconds:.0f}s")
            actions[stage.name] = action
            run_record["stages"][stage.name] = {"action": action, "seconds": st.seconds}
            logf.write(f"{_now()} [{stage.name}] {action} in {st.seconds:.1f}s; failed items: {result.failed}\n")
        run_record["finished_at"] = _now()
        _append_run(out, run_record)
    return BuildReport(out=out, actions=actions, states=states, seconds=round(time.monotonic() - t_build, 1))


def _append_run(out: Path, record: dict) -> None:
    with (out / "state" / "runs.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


# -- publishing ---------------------------------------------------------------------------------------------


PUBLISHED = ("README.md", "card.json", "config.yaml", "plots/*", "tasks/tasks.jsonl", "trajectories/trajectories.jsonl",
             "trajectories/kept/*.jsonl", "trajectories/kept/report.json", "sft/*")


def check_hub_access(repo: str) -> str:
    """The Hub user that will push to `repo`; a one-line SwelegoError when that cannot work."""
    from huggingface_hub import HfApi, get_token

    if not repo or repo.count("/") > 1:
        raise SwelegoError(f"--push-to-hub {repo!r}: expected NAME or OWNER/NAME")
    if not get_token():
        raise SwelegoError(f"--push-to-hub {repo}: no Hugging Face token; set HF_TOKEN or run `hf auth login`")
    try:
        who = HfApi().whoami()
    except Exception as e:  # noqa: BLE001 - bad token, no network: one line either way
        raise SwelegoError(f"--push-to-hub {repo}: could not check the token with the Hugging Face Hub "
                           f"({_first_line(e)[:200]})") from None
    owner = repo.split("/")[0] if "/" in repo else who.get("name", "")
    allowed = {who.get("name")} | {o.get("name") for o in who.get("orgs", []) if isinstance(o, dict)}
    if owner not in allowed:
        raise SwelegoError(f"--push-to-hub {repo}: user {who.get('name')} cannot write to {owner!r} "
                           f"(member of: {', '.join(sorted(n for n in allowed if n))})")
    return who.get("name", "")


def push_to_hub(out: Path, repo: str, private: bool = False) -> str:
    """Upload the card, the task and trajectory JSONL and the SFT files as a dataset repository;
    the card's `configs` front matter makes `datasets.load_dataset(repo, CONFIG)` read them."""
    from huggingface_hub import HfApi

    user = check_hub_access(repo)
    repo_id = repo if "/" in repo else f"{user}/{repo}"
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="dataset", allow_patterns=list(PUBLISHED),
                          commit_message="swelego data build")
    except Exception as e:  # noqa: BLE001
        raise SwelegoError(f"--push-to-hub {repo_id}: upload failed ({_first_line(e)})") from None
    return f"https://huggingface.co/datasets/{repo_id}"


# -- command -----------------------------------------------------------------------------------------------


def _result_text(name: str, s: dict) -> str:
    if name == "synth":
        return f"{s.get('rows', 0)} tasks from {s.get('repositories', 0)} repositories"
    if name == "real":
        return f"{s.get('rows', 0)} tasks"
    if name == "tasks":
        return f"{s.get('rows', 0)} tasks ({s.get('dropped', 0)} dropped)"
    if name == "rollout":
        return f"{s.get('trajectories', 0)} trajectories, {s.get('resolved', 0)} resolved"
    if name == "filter":
        return f"{s.get('kept', 0)}/{s.get('input', 0)} kept"
    if name == "export":
        return f"{s.get('records', 0)} records"
    return "README.md"


def _print_summary(console: Console, report: BuildReport) -> None:
    t = Table(title=f"data build ({report.seconds:.0f}s)")
    for col in ("stage", "this run", "complete", "seconds", "container-h", "result"):
        t.add_column(col, justify="left" if col in ("stage", "this run", "result") else "right")
    for name in STAGE_NAMES:
        st = report.states.get(name)
        act = report.actions.get(name, "")
        if st is None:
            t.add_row(name, act, "-", "-", "-", "")
            continue
        result = _result_text(name, st.summary)
        t.add_row(name, act, "yes" if st.complete else "[yellow]no", f"{st.seconds:.0f}",
                  f"{st.container_seconds / 3600:.3f}", result)
    console.print(t)


@click.command("build")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output directory (default: the config's `out`).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Run repositories and episodes as local threads or Ray tasks (default: the config's).")
@click.option("--only", "only", multiple=True, type=click.Choice(STAGE_NAMES),
              help="Run only this stage (repeatable); the others are left as they are.")
@click.option("--from", "start", default=None, type=click.Choice(STAGE_NAMES),
              help="Start at this stage: earlier stages are not checked or rerun, their outputs are used.")
@click.option("--force", is_flag=True, help="Redo the selected stages from scratch, even when complete.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set teacher.samples=2 (YAML value; repeatable).")
@click.option("--push-to-hub", "push", default=None, metavar="REPO",
              help="Publish the dataset to the Hugging Face Hub as REPO (NAME or OWNER/NAME) after the build.")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repository private.")
@click.option("--fields", "show_fields", is_flag=True, help="List every config field with its documentation and exit.")
def build_cmd(config, out_dir, executor, only, start, force, overrides, push, private, show_fields):
    """Build a dataset from CONFIG (YAML): synthetic and real tasks, teacher rollouts, filtering,
    SFT exports and a dataset card, stage by stage.

    \b
    Stages: synth, real, tasks, rollout, filter, export, card. A stage is skipped when its
    recorded outputs are intact and were made from the same inputs and config; a killed build
    resumes mid-stage; a config change reruns the stages it affects and those whose inputs
    then change. Writes OUT/tasks, OUT/trajectories, OUT/sft, OUT/logs, OUT/README.md (the
    card), OUT/card.json and OUT/state. See docs/data-build.md.
    """

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    out_console = Console(width=None if sys.stdout.isatty() else 150)
    if show_fields:
        for name, tp, default, text in describe_config(BuildConfig):
            out_console.print(f"[bold]{escape(name)}[/] ({escape(tp)}, default {escape(default)}): {escape(text)}",
                              highlight=False)
        return
    if config is None:
        raise click.UsageError("missing CONFIG (a YAML file; see configs/data/)")
    extra: dict[str, Any] = parse_sets(overrides)
    if out_dir:
        extra["out"] = out_dir
    if executor:
        extra["executor"] = executor
    cfg = load_build_config(config, extra)
    if push:
        user = check_hub_access(push)
        console.print(f"will publish to the Hub as {escape(user)}")
    report = run_build(cfg, only=list(only) or None, start=start, force=force, console=console)
    _print_summary(out_console, report)
    out = report.out
    failed = [n for n, st in report.states.items() if n in report.actions and not st.complete]
    out_console.print(f"tasks:        {out / 'tasks'} (dataset/ and tasks.jsonl)")
    out_console.print(f"trajectories: {out / 'trajectories'} (trajectories.jsonl, kept/)")
    out_console.print(f"sft:          {out / 'sft'}")
    out_console.print(f"dataset card: {out / 'README.md'}")
    if failed:
        console.print(f"[yellow]incomplete: {', '.join(failed)} had failed items (see logs/build.log); "
                      "rerun the same command to retry them[/]")
    if push:
        url = push_to_hub(out, push, private=private)
        out_console.print(f"published:    {url}")
