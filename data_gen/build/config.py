"""The config of `swelego data build` (`BuildConfig`), read from YAML and checked before any stage runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from data_gen.real.filters import FilterConfig as RealFilters
from data_gen.real.validate import ValidateConfig as RealValidateConfig
from data_gen.synth.pipeline import SynthConfig
from swelego.agent.rollout import RolloutConfig
from swelego.config import ConfigError, config_to_dict, doc_field, load_config
from swelego.difficulty import Bucket
from swelego.trajectories.export import EXPORT_FORMATS, ExportConfig  # noqa: F401 (re-exported)
from swelego.trajectories.filter import FilterConfig

# Fields of the component configs that the build sets from its own keys (field -> build key): a
# build YAML that sets them is refused with the key to use.
SET_BY_BUILD = {
    "synthetic": {"out": "out", "namespace": "namespace", "base": "base", "llm_base_url": "llm.base_url",
                  "llm_model": "llm.model", "llm_key_env": "llm.api_key_env", "executor": "executor",
                  "ray_address": "ray_address"},
    "teacher": {"out": "out", "trajectories_file": "out", "executor": "executor", "ray_address": "ray_address"},
    "real.validate": {"out": "out", "namespace": "namespace", "llm_base_url": "llm.base_url",
                      "llm_model": "llm.model", "llm_key_env": "llm.api_key_env", "executor": "executor",
                      "ray_address": "ray_address", "allow_contaminated": "decontamination.allow_contaminated",
                      "swebench_datasets": "decontamination.swebench_datasets"},
}
VALIDATE_SET_BY_BUILD = tuple(SET_BY_BUILD["real.validate"])  # the real.validate fields the build sets


@dataclass
class LLMConfig:
    """An OpenAI-compatible endpoint for the LLM bug strategies and for problem statements written
    from a diff. Without one the LLM strategies are skipped and statements are templated."""

    base_url: str | None = doc_field("Endpoint root, e.g. http://localhost:8000/v1; null = no LLM.", default=None)
    model: str | None = doc_field("Model name served at base_url.", default=None)
    api_key_env: str = doc_field("Environment variable holding the API key.", default="OPENAI_API_KEY")


@dataclass
class SyntheticConfig(SynthConfig):
    """Synthetic tasks (data_gen.synth.pipeline.SynthConfig, plus which repositories): bugs
    injected into real repositories and validated against their tests. Its out, namespace, base,
    llm_* and executor come from the build's own keys."""

    # test_selection, test_timeout and baseline_runs moved into `validate` (data_gen.validate.ValidateConfig).
    renamed_keys: ClassVar[dict[str, str]] = {"test_selection": "validate.test_selection",
                                              "test_timeout": "validate.test_timeout",
                                              "baseline_runs": "validate.baseline_runs"}

    enabled: bool = doc_field("Run this stage (off: no synthetic tasks).", default=True)
    sources: list[str] = doc_field(
        "Repositories: `pypi:NAME==VERSION` (a release's sdist), a git URL[@commit] or a local path[@rev].",
        default_factory=list)


@dataclass
class RealConfig:
    """Real tasks: fixes mined from a repository's git history or from merged GitHub pull requests,
    validated in an inferred environment."""

    enabled: bool = doc_field("Run this stage (off: no real tasks).", default=True)
    git: list[str] = doc_field("Local paths or git URLs whose history is mined (`data mine-git`).",
                          default_factory=list)
    rev_range: str | None = doc_field("Commits to examine in each git source, e.g. v1.0..main (null: all).",
                                 default=None)
    max_commits: int | None = doc_field("Examine only the newest N commits of each git source.", default=None)
    issues: str | None = doc_field("Local issue texts (JSON/JSONL file or directory) for commits that cite #N.",
                              default=None)
    merges: bool = doc_field("Examine merge commits of git sources too (first-parent history); by default they "
                        "are skipped. A commit's statement is its issue text, else written from the failing "
                        "tests (LLM when `llm` is configured, else a template), never its message.", default=False)
    github: list[str] = doc_field("OWNER/REPO repositories whose merged pull requests are mined (`data mine-prs`).",
                             default_factory=list)
    api_url: str = doc_field("GitHub REST root (GitHub Enterprise: https://HOST/api/v3).",
                        default="https://api.github.com")
    token_env: str = doc_field("Environment variable with the GitHub token.", default="GITHUB_TOKEN")
    since: str | None = doc_field("Only pull requests created on or after this date (YYYY-MM-DD).", default=None)
    max_prs: int | None = doc_field("Merged pull requests examined per repository, newest first.", default=None)
    filters: RealFilters = doc_field("Which mined changes become candidates (data_gen.real.filters.FilterConfig: "
                                "min_files, max_files, require_tests, require_code, min_statement_chars, "
                                "allow_binary).", default_factory=RealFilters)
    example_repo: bool = doc_field("Also mine the example repository of data_gen.real.demo (a small package "
                              "whose history holds fixes with tests), created under tasks/real/example-repo.",
                              default=False)
    validate: RealValidateConfig = doc_field("How candidates are validated (data_gen.real.validate.ValidateConfig: "
                                             "workers, test_timeout, baseline_runs, confirm_runs, repair_attempts, "
                                             "verify, max_tasks, env).", default_factory=RealValidateConfig)


@dataclass
class DecontaminationConfig:
    """Overlap with SWE-bench: repositories of SWE-bench Verified (list shipped with the package)
    and patches matching a task of the swebench dataset files given here are dropped."""

    allow_contaminated: bool = doc_field("Keep overlapping repositories and tasks.", default=False)
    swebench_datasets: list[str] = doc_field("Local swebench dataset files (.json/.jsonl/.parquet) whose "
                                        "patches no task may match.", default_factory=list)


# The rollout's config is the rollout's own (swelego.agent.rollout.RolloutConfig).
TeacherConfig = RolloutConfig


# The filter and export stages' configs are their components' own (one definition each).
TrajectoryFilterConfig = FilterConfig


@dataclass
class CardConfig:
    """The dataset card (README.md with Hugging Face YAML front matter)."""

    pretty_name: str | None = doc_field("Title of the card; null = the build's name.", default=None)
    description: str = doc_field("A paragraph placed under the title.", default="")
    license: str = doc_field("License id for the front matter (the repositories' own licenses still apply).",
                        default="other")
    tags: list[str] = doc_field("Extra Hub tags.", default_factory=list)
    difficulty_buckets: list[Bucket] | None = doc_field(
        "Buckets of turns per trajectory for the difficulty plots; null = SWE-Lego's curriculum "
        "(easy [0,50), medium [50,70), hard [70,inf)).", default=None)


@dataclass
class BuildConfig:
    """`swelego data build`: repositories in, tasks + trajectories + SFT files + card out."""

    name: str = doc_field("Dataset name (card title, Hub config names).", default="swelego-dataset")
    out: str = doc_field("Output directory (`--out` overrides).", default="data-build")
    namespace: str = doc_field("Prefix of every Docker image the build creates.", default="swelego")
    base: str | None = doc_field("Base image of environment builds (bookworm, bullseye, trixie or any image); "
                                 "null = the Debian base of each repository's inferred Python.", default=None)
    executor: str = doc_field("`local` threads or `ray` tasks for repositories and episodes (`--executor`).",
                         default="local")
    ray_address: str | None = doc_field("Ray cluster to join (e.g. auto); null = start a local one.", default=None)
    llm: LLMConfig = doc_field("LLM endpoint for bug strategies and issue text.", default_factory=LLMConfig)
    synthetic: SyntheticConfig = doc_field("Synthetic tasks.", default_factory=SyntheticConfig)
    real: RealConfig = doc_field("Real tasks.", default_factory=RealConfig)
    decontamination: DecontaminationConfig = doc_field("SWE-bench overlap checks.",
                                                  default_factory=DecontaminationConfig)
    teacher: RolloutConfig = doc_field("Rollout policy, sampling and sandboxes (swelego.agent.rollout.RolloutConfig; "
                                  "its out, executor and ray_address come from the build).",
                                  default_factory=RolloutConfig)
    filter: FilterConfig = doc_field("Trajectory filtering (swelego.trajectories.filter).", default_factory=FilterConfig)
    export: ExportConfig = doc_field("SFT exports (swelego.trajectories.export).", default_factory=ExportConfig)
    card: CardConfig = doc_field("Dataset card.", default_factory=CardConfig)

    def to_dict(self) -> dict:
        """The config as config.yaml and the card show it: without the component fields that the
        build sets from its own keys (SET_BY_BUILD), which a build YAML may not set."""
        d = config_to_dict(self)
        for where, keys in SET_BY_BUILD.items():
            part = d
            for name in where.split("."):
                part = part[name]
            for k in keys:
                part.pop(k, None)
        return d


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
    for where, keys in SET_BY_BUILD.items():
        part: Any = cfg
        for name in where.split("."):
            part = getattr(part, name)
        _set_by_build(part, where, keys)
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


def _set_by_build(part: Any, where: str, keys: dict[str, str]) -> None:
    """Refuse a component field that the build sets from its own key (`keys`: field -> build key)."""
    blank = type(part)()
    for name, build_key in keys.items():
        if getattr(part, name) != getattr(blank, name):
            raise ConfigError(f"{where}.{name} is set by the build from its `{build_key}` key; remove it")
