"""The data stages of `swelego data build`, each a thin call into its own room's public API.

    synth    synthetic tasks (data_gen.synth.pipeline)        -> tasks/synthetic/
    real     real tasks mined from git / GitHub, validated    -> tasks/real/
    tasks    merge, de-duplicate, decontaminate               -> tasks/ (HF dataset + tasks.jsonl)
    rollout  teacher (or oracle) episodes (swelego.agent.rollout)  -> trajectories/trajectories.jsonl
    filter   keep resolved / semi-resolved (swelego.trajectories.filter)  -> trajectories/kept/
    export   ours, sharegpt, openhands, atif (swelego.trajectories.export)  -> sft/
    card     the Hugging Face dataset card (data_gen.card)    -> README.md, card.json, plots/

`STAGES` lists them for the engine (data_gen.build.engine); `run_build` runs them with the
rich display.
"""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from data_gen.build.config import VALIDATE_SET_BY_BUILD, BuildConfig, check_config
from data_gen.build.display import BuildProgress
from data_gen.build.engine import BuildReport, Context, Stage, StageResult, run_stages
from swelego.config import config_to_dict
from swelego.records import read_jsonl, write_json_atomic, write_jsonl_atomic


def _seconds_between(start: str, end: str) -> float:
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (TypeError, ValueError):
        return 0.0


def wanted_trajectories(out: Path, samples: int) -> list[dict]:
    """The rollouts of the current tasks (sample < samples), one per (instance, sample), in file order.

    The rollout store may still hold samples of tasks a config change removed."""
    from swelego.agent.rollout import current_trajectories

    ids = {r["instance_id"] for r in read_jsonl(out / "tasks" / "tasks.jsonl", missing_ok=True)}
    return current_trajectories(read_jsonl(out / "trajectories" / "trajectories.jsonl", missing_ok=True), ids, samples)


# -- stage: synthetic tasks ----------------------------------------------------------------------------


def run_synth(ctx: Context) -> StageResult:
    from data_gen.synth.pipeline import synthesize

    sc, c = ctx.cfg.synthetic, ctx.cfg
    scfg = replace(sc, out=str(ctx.out / "tasks" / "synthetic"), namespace=c.namespace, base=c.base,
                   llm_base_url=c.llm.base_url, llm_model=c.llm.model, llm_key_env=c.llm.api_key_env,
                   executor=c.executor, ray_address=c.ray_address)
    sources = list(dict.fromkeys(sc.sources)) if sc.enabled else []
    if scfg.llm() is None and {"llm_rewrite", "llm_modify"} & set(sc.strategies):
        ctx.log("notice: llm_rewrite / llm_modify are skipped: no llm.base_url and llm.model configured")
    counts: dict[str, tuple[int, int]] = {}
    done: list[str] = []
    ctx.bar.update(total=len(sources) or 0, status=f"{len(sources)} repositories")

    def on_progress(repo: str, n: int, total: int) -> None:
        counts[repo] = (n, total)
        ctx.bar.update(completed=sum(d for d, _ in counts.values()), total=sum(t for _, t in counts.values()),
                       status=f"validating candidates ({len(counts)}/{len(sources)} repositories)")

    def on_source(source: str, res: dict) -> None:
        done.append(source)
        if ctx.executor != "local":  # Ray workers cannot report candidates: count repositories
            ctx.bar.update(completed=len(done), total=len(sources), status="repositories (ray)")
        for n in res["report"].notices if "report" in res else ():
            ctx.log(f"notice: {source}: {n}")
        if res.get("error"):
            ctx.log(f"✗ synth {source}: {res['error']}")

    res = synthesize(sources, scfg, progress=on_progress, on_source=on_source)
    total = res.summary["funnel"]["all"].get("all", {})
    return StageResult(outputs=["tasks/synthetic/tasks.jsonl", "tasks/synthetic/funnel.json"],
                       summary={"repositories": len(sources), "errors": res.errors, "rows": len(res.rows),
                                "candidates": total.get("candidates", 0), "valid": total.get("valid", 0)},
                       container_seconds=res.summary["container_seconds"], failed=len(res.errors))


# -- stage: real tasks -----------------------------------------------------------------------------------


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
        write_json_atomic(out / "summary.json", summary)
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
                 **decon, **{f.name: getattr(rc.validate, f.name) for f in fields(rc.validate)
                             if f.name not in VALIDATE_SET_BY_BUILD})
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
    write_json_atomic(out / "summary.json", summary)
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
    write_json_atomic(ctx.out / "tasks" / "report.json", report)
    ctx.bar.update(completed=len(rows), total=len(rows), status=f"{len(rows)} tasks, {len(dropped)} dropped")
    if not rows:
        ctx.log("warning: no tasks were produced; later stages have nothing to work on (see logs/build.log)")
    return StageResult(outputs=["tasks/tasks.jsonl"], artifacts=["tasks/dataset", "tasks/report.json"],
                       summary={"rows": len(rows), "dropped": len(dropped)})


# -- stage: rollouts -------------------------------------------------------------------------------------


def rollout_config(cfg: BuildConfig, out: Path):
    """The teacher's RolloutConfig with the build's own keys: where it writes and where it runs."""
    return replace(cfg.teacher, out=str(out / "trajectories"), executor=cfg.executor, ray_address=cfg.ray_address)


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
    if len(read_jsonl(path, missing_ok=True)) != len(kept):
        write_jsonl_atomic(path, kept)
    container = sum(_seconds_between(r.get("started_at", ""), r.get("finished_at", "")) for r in kept)
    return StageResult(outputs=["trajectories/trajectories.jsonl"], artifacts=["trajectories/summary.json"],
                       summary={"trajectories": summary.trajectories, "ran": summary.ran, "failed": summary.failed,
                                "resolved": summary.resolved, "semi_resolved": summary.semi_resolved,
                                "errors": summary.errors},
                       container_seconds=round(container, 2), failed=summary.failed)


# -- stage: filtering ------------------------------------------------------------------------------------


def run_filter(ctx: Context) -> StageResult:
    from swelego.trajectories.filter import filter_trajectories, write_filtered

    fcfg = ctx.cfg.filter
    records = wanted_trajectories(ctx.out, ctx.cfg.teacher.samples)
    res = filter_trajectories(records, fcfg)
    report = write_filtered(res, ctx.out / "trajectories" / "kept", fcfg)
    ctx.bar.update(completed=len(records), total=len(records), status=f"kept {report['kept']}/{report['input']}")
    splits = [f"trajectories/kept/{o}.jsonl" for o in fcfg.keep]
    return StageResult(outputs=["trajectories/kept/kept.jsonl", "trajectories/kept/report.json", *splits],
                       artifacts=["trajectories/kept/dropped.jsonl"],
                       summary={"input": report["input"], "kept": report["kept"], "dropped": report["dropped"]})


# -- stage: SFT exports ----------------------------------------------------------------------------------


def run_export(ctx: Context) -> StageResult:
    from swelego.records import iter_records
    from swelego.trajectories.export import export, output_files

    e = ctx.cfg.export
    kept = ctx.out / "trajectories" / "kept" / "kept.jsonl"
    records = list(iter_records(kept))
    ctx.bar.update(completed=0, total=len(records) * len(e.formats), status=", ".join(e.formats))
    summary = export(records, e.formats, ctx.out / "sft", cfg=e, log=ctx.log,
                     progress=lambda n: ctx.bar.update(advance=n))
    return StageResult(outputs=[f"sft/{name}" for name in output_files(e.formats)], summary=summary)


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
          lambda c: {"namespace": c.namespace, "base": c.base, "llm": c.llm, "validate": c.synthetic.validate},
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


def run_build(cfg: BuildConfig, *, only: list[str] | None = None, start: str | None = None, force: bool = False,
              console: Console | None = None, progress: bool = True) -> BuildReport:
    """Check `cfg`, then run (or skip) every selected stage in order (data_gen.build.engine's rule)."""
    check_config(cfg)
    display = BuildProgress(console or Console(stderr=True), STAGE_NAMES, enabled=progress)
    return run_stages(cfg, STAGES, display=display, only=only, start=start, force=force)
