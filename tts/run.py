"""`swelego tts run`: k rollouts per instance, then the verifier's score for each.

Writes the run directory that `swelego tts score` reads (see tts/score.py for the layout):
`tasks.jsonl` (the swebench rows), `samples.jsonl` (one trajectory per sample, written by the
rollout machinery: parallel, resumable, kill-safe) and `scores.jsonl` (P(YES) per sample,
resumable too). A rerun skips every sample and score already on disk.

Datasets: a local task dataset (our `tasks/` directory, a save_to_disk folder, a JSONL of
swebench rows) or a Hugging Face dataset name such as `SWE-bench/SWE-bench_Verified`, whose
swebench 5 rows carry their own `image`, `eval_script` and `log_parser` (images are pulled by
the Docker engine when missing, so that needs registry access).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from swelego.agent.rollout import RolloutConfig, RolloutSummary, load_rollout_tasks, rollout
from swelego.config import doc_field
from swelego.errors import SwelegoError
from swelego.schema import TaskInstance, row_problem, save_jsonl


def _tts_rollout() -> RolloutConfig:
    return RolloutConfig(trajectories_file="samples.jsonl", policy="openai", samples=16)


@dataclass
class TTSRunConfig:
    """`swelego tts run`: which instances, how they are sampled (`rollout`) and which verifier scores them."""

    dataset: str = doc_field("Local task dataset (tasks/ dir, JSONL of swebench rows) or a Hub name, e.g. "
                             "SWE-bench/SWE-bench_Verified (`--dataset`).", default="")
    rollout: RolloutConfig = doc_field("The sampling: policy, k = samples, workers, endpoint, sandboxes "
                                       "(swelego.agent.rollout.RolloutConfig); its `out` is the run directory "
                                       "(`--out`).", default_factory=_tts_rollout)
    split: str = doc_field("Split of a Hub dataset.", default="test")
    instance_ids: tuple[str, ...] = doc_field("Run only these instances (comma list on the command line).",
                                              default=())
    limit: int | None = doc_field("Run only the first N instances.", default=None)
    exclude_instances: str | None = doc_field(
        "Never run these instances: a verifier directory (the instances it was trained on, from its "
        "instances.json) or a file of ids (JSON list, or one id per line).", default=None)
    verifier: str | None = doc_field("Trained verifier directory, or the served verifier's model name with "
                                     "verifier_base_url.", default=None)
    verifier_base_url: str | None = doc_field("Score through this OpenAI-compatible endpoint (vLLM).",
                                              default=None)
    verifier_tokenizer: str | None = doc_field("With verifier_base_url: tokenizer for budgeting.", default=None)
    batch_size: int = doc_field("Prompts per forward pass (local verifier).", default=4)
    max_length: int | None = doc_field("Judge prompt token budget.", default=None)
    verifier_workers: int = doc_field("Requests in flight to a served verifier.", default=8)
    extra: dict = doc_field("Free-form notes recorded with the run.", default_factory=dict)


def load_tasks(dataset: str, split: str = "test", problems: list[str] | None = None) -> list[TaskInstance]:
    """Rows from a local dataset, else from the Hugging Face Hub (swebench 5 rows). Malformed
    rows are skipped, each described in `problems` (`file:N: why`)."""
    problems = [] if problems is None else problems
    if Path(dataset).exists():
        tasks, bad = load_rollout_tasks(dataset)
        problems += bad
        return tasks
    if dataset.startswith(("/", ".", "~")) or dataset.endswith((".json", ".jsonl")) or dataset.count("/") > 1:
        raise SwelegoError(f"cannot load dataset {dataset!r}: no such file or directory")
    try:
        import datasets

        rows = datasets.load_dataset(dataset, split=split)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, no access: one line
        raise SwelegoError(f"cannot load dataset {dataset!r} (split {split}): not a local path, and the Hub said "
                           f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from None
    tasks = []
    for i, row in enumerate(rows):
        try:
            tasks.append(TaskInstance.from_row(dict(row)))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            problems.append(row_problem(f"{dataset}[{i}]", e))
    if not tasks:
        raise SwelegoError(f"{dataset}: none of its {len(rows)} rows is a swebench 5 row (image, eval_script, ...)")
    return tasks


def select_tasks(tasks: list[TaskInstance], ids: tuple[str, ...], limit: int | None) -> list[TaskInstance]:
    if ids:
        known = {t.instance_id for t in tasks}
        missing = [i for i in ids if i not in known]
        if missing:
            raise SwelegoError(f"unknown instance id(s): {', '.join(missing[:5])}")
        tasks = [t for t in tasks if t.instance_id in set(ids)]
    return tasks[:limit] if limit else tasks


def exclude_tasks(tasks: list[TaskInstance], exclude: str) -> list[TaskInstance]:
    """`tasks` without the instances `exclude` names: a verifier directory (the instances it was
    trained on) or a file of ids (verifier.train.trained_instances). SwelegoError when none is left."""
    from verifier.train import trained_instances

    excluded = trained_instances(exclude)
    kept = [t for t in tasks if t.instance_id not in excluded]
    if tasks and not kept:
        raise SwelegoError(f"every one of the {len(tasks)} instances is excluded by {exclude}: nothing to run")
    return kept


def make_scorer(cfg: TTSRunConfig):
    from verifier.score import EndpointScorer, LocalScorer

    if cfg.verifier_base_url:
        tok = None
        if cfg.verifier_tokenizer:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(cfg.verifier_tokenizer)
        return EndpointScorer(cfg.verifier_base_url, cfg.verifier, tokenizer=tok, max_length=cfg.max_length,
                              workers=cfg.verifier_workers)
    if not cfg.verifier or not Path(cfg.verifier).exists():
        raise SwelegoError(f"no verifier at {cfg.verifier} (a trained verifier directory, or --verifier-base-url)")
    return LocalScorer(cfg.verifier, batch_size=cfg.batch_size, max_length=cfg.max_length)


def tts_run(cfg: TTSRunConfig, *, on_rollout_start: Callable | None = None, on_rollout_result: Callable | None = None,
            on_score_progress: Callable | None = None, log: Callable[[str], None] = lambda m: None) -> dict:
    """Sample, then score. Returns a summary dict (also written to run_config.json / summary).
    A malformed dataset row is logged (`file:N: why`) and skipped; the others still run."""
    out = Path(cfg.rollout.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.verifier is None:
        raise SwelegoError("--verifier is required (a trained verifier directory or a served model name)")
    if not cfg.verifier_base_url and not Path(cfg.verifier).exists():  # say so before hours of sampling
        raise SwelegoError(f"no verifier at {cfg.verifier} (a trained verifier directory, or --verifier-base-url)")
    bad_rows: list[str] = []
    loaded = load_tasks(cfg.dataset, cfg.split, bad_rows)
    for line in bad_rows:
        log(line)
    if not loaded:
        raise SwelegoError(f"{cfg.dataset} holds no tasks"
                           + (f" ({len(bad_rows)} malformed row(s))" if bad_rows else ""))
    n_excluded = 0
    if cfg.exclude_instances:
        kept = exclude_tasks(loaded, cfg.exclude_instances)
        n_excluded = len(loaded) - len(kept)
        loaded = kept
    tasks = select_tasks(loaded, cfg.instance_ids, cfg.limit)
    save_jsonl(tasks, out / "tasks.jsonl")
    cfg.rollout.trajectories_file = "samples.jsonl"
    (out / "tts_run.json").write_text(json.dumps({**asdict(cfg), "rollout": asdict(cfg.rollout)}, indent=2,
                                                 default=str))
    summary: RolloutSummary = rollout(tasks, cfg.rollout, on_result=on_rollout_result, on_start=on_rollout_start,
                                      bad_rows=bad_rows)
    from verifier.data import load_trajectories
    from verifier.score import score_trajectories

    trajs = load_trajectories([out / "samples.jsonl"])
    scorer = make_scorer(cfg)
    scored = score_trajectories(trajs, scorer, out, on_progress=on_score_progress)
    return {"instances": len(tasks), "rollout": summary.to_dict(), "scores": scored, "bad_rows": bad_rows,
            "excluded": n_excluded}
