"""The config of `swelego data build` (`BuildConfig`), read from YAML and checked before any stage runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.real.filters import FilterConfig as RealFilters
from swelego.config import ConfigError, load_config
from swelego.difficulty import Bucket
from swelego.trajectories.export import EXPORT_FORMATS, ExportConfig  # noqa: F401 (re-exported)
from swelego.trajectories.filter import FilterConfig

# Fields of data_gen.real.validate.ValidateConfig that the build sets itself.
VALIDATE_SET_BY_BUILD = ("out", "namespace", "llm_base_url", "llm_model", "llm_key_env", "executor", "ray_address",
                         "allow_contaminated", "swebench_datasets")


def _doc(text: str, **kw) -> Any:
    """A dataclass field with its documentation (listed by `swelego data build --fields`)."""
    return field(metadata={"help": text}, **kw)


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


# The filter and export stages' configs are their components' own (one definition each).
TrajectoryFilterConfig = FilterConfig


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
    filter: FilterConfig = _doc("Trajectory filtering (swelego.trajectories.filter).", default_factory=FilterConfig)
    export: ExportConfig = _doc("SFT exports (swelego.trajectories.export).", default_factory=ExportConfig)
    card: CardConfig = _doc("Dataset card.", default_factory=CardConfig)


def load_build_config(path: str | Path, overrides: dict | None = None) -> BuildConfig:
    """The build config in the YAML file at `path`, with overrides (dotted keys allowed), checked."""
    cfg = load_config(BuildConfig, path, overrides)
    check_config(cfg)
    return cfg


def check_config(cfg: BuildConfig) -> None:
    """Refuse a config that would fail hours into the build, with the field to fix."""
    from data_gen.synth.pipeline import STRATEGIES
    from swelego.agent.rollout import POLICIES
    from swelego.trajectories.filter import OUTCOMES

    def bad(where: str, value: Any, allowed) -> None:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}")

    if cfg.executor not in ("local", "ray"):
        bad("executor", cfg.executor, ("local", "ray"))
    for s in cfg.synthetic.strategies:
        if s not in STRATEGIES:
            bad("synthetic.strategies", s, STRATEGIES)
    from data_gen.real.validate import ValidateConfig

    allowed = [f for f in ValidateConfig.__dataclass_fields__ if f not in VALIDATE_SET_BY_BUILD]
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
    cfg.export.check()
