"""`swelego tts score DIR`: pick one sample per instance by verifier score, grade it with the
official swebench harness, and report TTS@k against its baselines.

DIR layout. Written by `swelego tts run` (or by hand), read here:
- `DIR/tasks.jsonl`: the swebench rows of the instances, one JSON object per line.
- `DIR/samples.jsonl`: one `Trajectory` JSON per line, k per instance, the sample index in
  `sampling["sample"]` (a line lacking it gets the next free index of its instance). A plain
  swebench prediction line (`instance_id`, `model_patch`, optional `sample`) is accepted as
  an unlabelled sample.
- `DIR/scores.jsonl`: `{"instance_id", "sample", "score"}` per line, score = the verifier's
  P(YES); other keys are ignored, a later line for the same sample replaces an earlier one.
Written here:
- `DIR/predictions.jsonl`: swebench predictions (`instance_id`, `model_name_or_path`,
  `model_patch`), the top-scored sample of each instance (ties: the lowest sample index).
- `DIR/gradings.jsonl`: the official gradings, one line per (instance, sha256 of the patch);
  a patch graded once is never sent to the harness again.
- `DIR/grading/`: the harness's working directory (its logs, datasets and run reports).
- `DIR/report.json`, `DIR/report.md`, `DIR/tts_at_k.png`.

Labels, and where each came from (`label_source`, counted in the report): `official` (the
swebench harness), `sandbox` (the `resolved` its rollout recorded, graded in the rollout's
sandbox with swebench's own grading functions) or `empty patch` (unresolved by definition,
never sent to the harness). With `grade="selected"` the harness grades each instance's selected
patch and every sample that has no label, and other samples keep their sandbox label; with
`grade="all"` it grades every distinct patch and every label is official (a sample whose
grading failed has none).

Every task counts (SWE-bench's convention): an instance without samples, or with no labelled
sample, is unresolved in every metric, and the report lists it. When the run's verifier says
which instances it was trained on (`instances.json`, written by `verifier train`), the report
checks them against the scored instances and warns loudly on any overlap.

Bad input never stops a run: unreadable lines, samples of unknown instances, duplicate
samples, empty patches, scores for unknown samples and samples without a score are counted
and listed in the report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swelego.errors import SwelegoError
from swelego.records import iter_jsonl, write_jsonl_atomic
from swelego.schema import TaskInstance
from swelego.store import ResultStore
from swelego.trajectories.record import Trajectory
from tts.metrics import Sample, summarize

DEFAULT_KS = (1, 2, 4, 8, 16)
GRADE_MODES = ("selected", "all")


def patch_sha(patch: str) -> str:
    return hashlib.sha256(patch.encode("utf-8")).hexdigest()


def grading_key(record: dict) -> str:
    return f"{record['instance_id']}@{record['patch_sha']}"


@dataclass
class Candidate:
    """One sample of one instance."""

    instance_id: str
    sample: int
    patch: str
    rollout_label: bool | None
    policy: str = ""
    model: str = ""
    score: float | None = None
    label: bool | None = None
    label_source: str = ""  # "official", "sandbox", "empty patch" or "" (unknown)

    @property
    def sha(self) -> str:
        return patch_sha(self.patch)


@dataclass
class InputReport:
    """What was wrong with the inputs (counted, never fatal)."""

    task_lines: int = 0
    bad_task_lines: list[str] = field(default_factory=list)
    sample_lines: int = 0
    bad_sample_lines: list[str] = field(default_factory=list)
    unknown_instance: Counter = field(default_factory=Counter)  # instance id -> samples
    duplicate_samples: int = 0
    empty_patches: int = 0
    score_lines: int = 0
    bad_score_lines: list[str] = field(default_factory=list)
    scores_for_unknown_samples: int = 0
    duplicate_scores: int = 0
    unscored_samples: int = 0
    unlabelled_samples: int = 0
    instances_without_samples: int = 0

    def to_dict(self) -> dict:
        return {
            "task_lines": self.task_lines, "bad_task_lines": len(self.bad_task_lines),
            "sample_lines": self.sample_lines, "bad_sample_lines": len(self.bad_sample_lines),
            "samples_of_unknown_instances": sum(self.unknown_instance.values()),
            "unknown_instance_ids": sorted(self.unknown_instance)[:20],
            "duplicate_samples": self.duplicate_samples, "empty_patches": self.empty_patches,
            "score_lines": self.score_lines, "bad_score_lines": len(self.bad_score_lines),
            "scores_for_unknown_samples": self.scores_for_unknown_samples,
            "duplicate_scores": self.duplicate_scores, "unscored_samples": self.unscored_samples,
            "unlabelled_samples": self.unlabelled_samples,
            "instances_without_samples": self.instances_without_samples,
            "examples": (self.bad_task_lines + self.bad_sample_lines + self.bad_score_lines)[:10],
        }


def _lines(path: Path):
    """(line number, record or the ValueError of a line that is not JSON); nothing for no file."""
    if path.is_file():
        yield from iter_jsonl(path)


def _json(rec):
    if isinstance(rec, ValueError):
        raise rec
    return rec


def load_tasks(path: Path, report: InputReport) -> dict[str, TaskInstance]:
    """Task rows by instance id; fields TaskInstance does not declare are kept as the row has them
    (they reach the harness unchanged)."""
    tasks: dict[str, TaskInstance] = {}
    for n, line in _lines(path):
        report.task_lines += 1
        try:
            row = _json(line)
            if not isinstance(row, dict):
                raise ValueError(f"a JSON {type(row).__name__}, not an object")
            task = TaskInstance.from_row(row)
        except Exception as e:
            report.bad_task_lines.append(f"{path.name}:{n}: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
            continue
        tasks[task.instance_id] = task
    return tasks


def load_samples(path: Path, tasks: dict[str, TaskInstance], report: InputReport) -> dict[str, list[Candidate]]:
    """Candidates by instance, each instance's samples in index order."""
    by_instance: dict[str, dict[int, Candidate]] = defaultdict(dict)
    pending: list[Candidate] = []
    for n, line in _lines(path):
        report.sample_lines += 1
        try:
            raw = _json(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if "messages" not in raw and "model_patch" in raw:  # a swebench prediction line
                cand = Candidate(str(raw["instance_id"]), -1, raw.get("model_patch") or "", None,
                                 model=str(raw.get("model_name_or_path", "")))
                idx = raw.get("sample")
            else:
                traj = Trajectory.from_dict(raw)
                cand = Candidate(traj.instance_id, -1, traj.patch or "", traj.resolved, traj.policy, traj.model)
                idx = (traj.sampling or {}).get("sample")
            if not cand.instance_id:
                raise ValueError("no instance_id")
            cand.sample = int(idx) if idx is not None else -1
        except Exception as e:
            report.bad_sample_lines.append(f"{path.name}:{n}: {type(e).__name__}: {str(e)[:100]}")
            continue
        if cand.instance_id not in tasks:
            report.unknown_instance[cand.instance_id] += 1
            continue
        if cand.sample < 0:
            pending.append(cand)
            continue
        if cand.sample in by_instance[cand.instance_id]:
            report.duplicate_samples += 1
            continue
        by_instance[cand.instance_id][cand.sample] = cand
    for cand in pending:
        taken = by_instance[cand.instance_id]
        cand.sample = next(i for i in range(len(taken) + 1) if i not in taken)
        taken[cand.sample] = cand
    out = {iid: [c for _, c in sorted(samples.items())] for iid, samples in by_instance.items()}
    report.empty_patches = sum(1 for cs in out.values() for c in cs if not c.patch.strip())
    report.instances_without_samples = sum(1 for iid in tasks if iid not in out)
    return out


def attach_scores(path: Path, candidates: dict[str, list[Candidate]], report: InputReport) -> None:
    index = {(c.instance_id, c.sample): c for cs in candidates.values() for c in cs}
    seen: set[tuple[str, int]] = set()
    for n, line in _lines(path):
        report.score_lines += 1
        try:
            rec = _json(line)
            key = (str(rec["instance_id"]), int(rec["sample"]))
            score = rec["score"]
            score = None if score is None else float(score)
            if score is not None and not math.isfinite(score):
                raise ValueError(f"score {score}")
        except Exception as e:
            report.bad_score_lines.append(f"{path.name}:{n}: {type(e).__name__}: {str(e)[:100]}")
            continue
        if key not in index:
            report.scores_for_unknown_samples += 1
            continue
        if key in seen:
            report.duplicate_scores += 1
        seen.add(key)
        index[key].score = score
    report.unscored_samples = sum(1 for c in index.values() if c.score is None)


def select(cands: list[Candidate]) -> Candidate:
    """The top-scored sample (unscored ones last; ties: the lowest sample index)."""
    return min(cands, key=lambda c: (c.score is None, -(c.score or 0.0), c.sample))


# -- official grading -----------------------------------------------------------------------------------


@dataclass
class GradingStats:
    requested: int = 0  # distinct (instance, patch) pairs that needed a grade
    reused: int = 0  # already in gradings.jsonl
    graded_now: int = 0
    runs: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run id -> error


def grade_official(pairs: list[tuple[TaskInstance, str]], root: Path, *, model: str, max_workers: int,
                   timeout: int, log: Callable[[str], None] = print) -> tuple[ResultStore, GradingStats]:
    """Grade each distinct (task, non-empty patch) once with `evaluate_official`, caching results
    in `root/gradings.jsonl`. A round holds at most one patch per instance (a swebench run
    takes one prediction per instance); its run id is a hash of its contents, so a killed
    round resumes from the reports swebench already wrote."""
    from swelego.harness import evaluate_official

    store = ResultStore(root / "gradings.jsonl", key_of=grading_key)
    stats = GradingStats()
    todo: dict[str, tuple[TaskInstance, str]] = {}
    for task, patch in pairs:
        key = f"{task.instance_id}@{patch_sha(patch)}"
        if key in todo:
            continue
        stats.requested += 1
        if store.has(key):
            stats.reused += 1
            continue
        todo[key] = (task, patch)
    rounds: list[list[tuple[TaskInstance, str]]] = []
    for task, patch in todo.values():
        for rnd in rounds:
            if all(t.instance_id != task.instance_id for t, _ in rnd):
                rnd.append((task, patch))
                break
        else:
            rounds.append([(task, patch)])
    for rnd in rounds:
        digest = hashlib.sha256("\n".join(sorted(f"{t.instance_id}@{patch_sha(p)}" for t, p in rnd)).encode())
        run_id = f"tts-{digest.hexdigest()[:12]}"
        log(f"grading {len(rnd)} patch(es) with the swebench harness (run {run_id})")
        preds = [{"instance_id": t.instance_id, "model_name_or_path": model, "model_patch": p} for t, p in rnd]
        try:
            res = evaluate_official([t for t, _ in rnd], preds, run_id=run_id, workdir=root / "grading",
                                    max_workers=max_workers, timeout=timeout, model=model)
        except SwelegoError as e:
            stats.failed[run_id] = str(e)[:300]
            log(f"harness run {run_id} failed: {str(e)[:200]}")
            continue
        stats.runs.append(run_id)
        errors = set(res.summary.get("error_ids", []))
        for t, p in rnd:
            iid = t.instance_id
            if iid in res.reports or iid in errors or iid in res.summary.get("completed_ids", []):
                status = "resolved" if res.resolved(iid) else ("error" if iid in errors else "unresolved")
                store.put(f"{iid}@{patch_sha(p)}", {"instance_id": iid, "patch_sha": patch_sha(p),
                                                   "resolved": res.resolved(iid), "status": status,
                                                   "run_id": run_id})
                stats.graded_now += 1
    return store, stats


# -- the whole command ----------------------------------------------------------------------------------


@dataclass
class ScoreConfig:
    """`swelego tts score`.

    dir: the run directory (layout in the module docstring).
    ks: the k of TTS@k; ks above the largest sample count are dropped (noted in the report).
    grade: `selected` (each instance's selected patch, plus unlabelled samples) or `all`
        (every distinct patch) through the official harness.
    model_name: `model_name_or_path` of the predictions; default: the samples' model, else "swelego-tts".
    max_workers / timeout: passed to swebench's run_evaluation.
    bootstrap / seed: resamples and seed of the 95% intervals (and of Monte Carlo majority vote).
    verifier: the verifier whose training instances are checked against the scored ones (a verifier
        directory or a file of ids); default: the `verifier` recorded in DIR/tts_run.json.
    """

    dir: str
    ks: tuple[int, ...] = DEFAULT_KS
    grade: str = "selected"
    model_name: str | None = None
    max_workers: int = 1
    timeout: int = 1800
    bootstrap: int = 1000
    seed: int = 0
    verifier: str | None = None


def verifier_check(cfg: ScoreConfig, root: Path, scored: set[str], log: Callable[[str], None]) -> dict:
    """The scored instances against the ones the verifier was trained on: `status` is `disjoint`,
    `overlap` (logged loudly: its TTS@k then measures memory, not judgement) or `unknown`."""
    from verifier.train import trained_instances

    source = cfg.verifier
    if source is None and (root / "tts_run.json").is_file():
        try:
            source = json.loads((root / "tts_run.json").read_text()).get("verifier")
        except (json.JSONDecodeError, AttributeError):
            source = None
    if not source or not Path(source).exists():
        why = (f"{source} is not a local verifier directory or file of ids (a served verifier?)" if source
               else "no verifier recorded (pass --verifier)")
        return {"status": "unknown", "verifier": source, "why": why}
    try:
        trained = trained_instances(source)
    except SwelegoError as e:
        return {"status": "unknown", "verifier": source, "why": str(e)}
    overlap = sorted(trained & scored)
    if overlap:
        log(f"WARNING: the verifier {source} was trained on {len(overlap)} of the {len(scored)} scored instances "
            f"({', '.join(overlap[:5])}{', ...' if len(overlap) > 5 else ''}): its TTS@k and AUC are not a "
            "held-out result")
    return {"status": "overlap" if overlap else "disjoint", "verifier": source, "trained_instances": len(trained),
            "overlap": overlap}


def policy_label(cands: list[Candidate]) -> str:
    names = sorted({c.policy or "?" for c in cands if c.policy} or {"unknown"})
    return ", ".join(names)


def _grade_and_label(cfg: ScoreConfig, root: Path, tasks: dict, all_cands: list, selected: dict, model: str,
                     log: Callable[[str], None]):
    """Grade with the official harness what needs it (the selected patches, and samples without a
    sandbox label; every sample with grade all), then label every sample: empty patch, official,
    or its sandbox grade. Returns (official results by `instance@sha`, grading stats)."""
    if cfg.grade == "all":
        wanted = [c for c in all_cands if c.patch.strip()]
    else:
        wanted = [c for c in selected.values() if c.patch.strip()]
        chosen = {(c.instance_id, c.sample) for c in wanted}
        wanted += [c for c in all_cands if c.rollout_label is None and c.patch.strip()
                   and (c.instance_id, c.sample) not in chosen]
    store, gstats = grade_official([(tasks[c.instance_id], c.patch) for c in wanted], root, model=model,
                                   max_workers=cfg.max_workers, timeout=cfg.timeout, log=log)
    try:
        official = {k: v for k, v in store}
    finally:
        store.close()
    for c in all_cands:
        g = official.get(f"{c.instance_id}@{c.sha}")
        if not c.patch.strip():
            c.label, c.label_source = False, "empty patch"
        elif g is not None:
            c.label, c.label_source = bool(g["resolved"]), "official"
        elif c.rollout_label is not None and cfg.grade != "all":
            c.label, c.label_source = bool(c.rollout_label), "sandbox"
    return official, gstats


def tts_score(cfg: ScoreConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Select, grade and report; returns the report (also written to DIR/report.json)."""
    if cfg.grade not in GRADE_MODES:
        raise SwelegoError(f"grade must be one of {', '.join(GRADE_MODES)}, not {cfg.grade!r}")
    root = Path(cfg.dir).resolve()
    for name in ("tasks.jsonl", "samples.jsonl"):
        if not (root / name).is_file():
            raise SwelegoError(f"{root / name} not found (see `swelego tts score --help` for the layout)")
    report = InputReport()
    tasks = load_tasks(root / "tasks.jsonl", report)
    cands = load_samples(root / "samples.jsonl", tasks, report)
    attach_scores(root / "scores.jsonl", cands, report)
    for line in report.bad_task_lines + report.bad_sample_lines + report.bad_score_lines:
        log(line)
    all_cands = [c for cs in cands.values() for c in cs]
    models = {c.model for c in all_cands if c.model}
    model = cfg.model_name or (models.pop() if len(models) == 1 else "") or "swelego-tts"

    selected = {iid: select(cs) for iid, cs in sorted(cands.items())}
    preds = [{"instance_id": iid, "model_name_or_path": model, "model_patch": c.patch} for iid, c in selected.items()]
    write_jsonl_atomic(root / "predictions.jsonl", preds, ensure_ascii=True)

    official, gstats = _grade_and_label(cfg, root, tasks, all_cands, selected, model, log)
    report.unlabelled_samples = sum(1 for c in all_cands if c.label is None)

    max_n = max((len(cs) for cs in cands.values()), default=0)
    ks = sorted({k for k in cfg.ks if 1 <= k <= max_n}) or ([1] if max_n else [])
    dropped_ks = sorted(k for k in cfg.ks if k > max_n)
    # every task enters the metrics; one without a labelled sample is unresolved
    metric_input = {iid: [Sample(bool(c.label), c.score, c.patch) for c in cands.get(iid, []) if c.label is not None]
                    for iid in tasks}
    metrics = summarize(metric_input, ks, n_boot=cfg.bootstrap, seed=cfg.seed) if ks else {}
    unusable = {iid: ("no samples" if iid not in cands else "no labelled sample")
                for iid, samples in sorted(metric_input.items()) if not samples}
    used_labels = Counter(c.label_source for cs in cands.values() for c in cs if c.label is not None)

    sel_official = {iid: official.get(f"{iid}@{c.sha}") for iid, c in selected.items()}
    graded_sel = {iid: g for iid, g in sel_official.items() if g is not None or not selected[iid].patch.strip()}
    resolved_sel = sum(1 for iid, g in graded_sel.items() if g is not None and g["resolved"])
    agree = [(bool(g["resolved"]), bool(selected[iid].rollout_label)) for iid, g in sel_official.items()
             if g is not None and selected[iid].rollout_label is not None]
    result: dict[str, Any] = {
        "dir": str(root), "policy": policy_label(all_cands), "model_name_or_path": model,
        "tasks": len(tasks), "instances": len(cands), "samples": len(all_cands),
        "ks": ks, "dropped_ks": dropped_ks, "grade": cfg.grade,
        "selected": {
            "instances": len(selected), "graded": len(graded_sel), "resolved": resolved_sel,
            "resolve_rate": resolved_sel / len(tasks) if tasks else None,  # over every task
            "official_vs_rollout_agreement": (sum(a == b for a, b in agree) / len(agree)) if agree else None,
            "predictions": str(root / "predictions.jsonl"),
        },
        "grading": {"requested": gstats.requested, "reused": gstats.reused, "graded_now": gstats.graded_now,
                    "runs": gstats.runs, "failed_runs": gstats.failed},
        "labels": dict(Counter(c.label_source or "unknown" for c in all_cands)),
        "metric_labels": dict(used_labels),  # where the labels inside Pass@k / TTS@k came from
        "unusable_instances": unusable,  # counted as unresolved everywhere
        "verifier_check": verifier_check(cfg, root, set(tasks), log),
        "metrics": metrics, "input": report.to_dict(),
        "per_instance": {iid: {"selected": selected[iid].sample,
                               "samples": [{"sample": c.sample, "score": c.score, "label": c.label,
                                            "label_source": c.label_source or None} for c in cs]}
                         for iid, cs in sorted(cands.items())},
        "demo": any(c.policy == "oracle" for c in all_cands),
    }
    from tts.report import write_report

    write_report(result, root)
    return result
