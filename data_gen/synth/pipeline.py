"""`swelego data synth`: synthetic tasks from real repositories, validated in warm sandboxes.

Per repository: build the environment, run the clean suite three times (flaky tests are
quarantined), map tests to the code they execute, generate candidates, validate each in one
of `workers` warm containers reset with git, build a sanitized single-commit image and a
problem statement for each valid bug, and record everything in an append-only store so a
rerun resumes where a killed one stopped."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from data_gen.sanitize import make_instance_image
from data_gen.synth.candidates import (
    Candidate,
    combinations,
    is_source_file,
    llm_candidates,
    procedural_candidates,
)
from data_gen.validate import (
    Baseline,
    CoverageMap,
    InferenceAudit,
    Item,
    Outcome,
    ValidateConfig,
    collect_budget,
    coverage_map,
    failure_log,
    inference_blocker,
    per_test_budget,
    per_test_budgets,
    plan_batches,
    stable_baseline,
    validate_patch,
    validate_unit,
    validation_cmd,
    warm_runner,
)
from swelego.config import doc_field
from swelego.errors import SwelegoError
from swelego.executor import ExecutorOptions
from swelego.harness import apply_patch, make_eval_script, run_eval
from swelego.llm import EndpointOptions
from swelego.sandbox import DockerSandbox, SandboxLimits, docker_client
from swelego.sandbox.envspec import EnvOverrides
from swelego.sandbox.images import build_env_image
from swelego.schema import TaskInstance
from swelego.store import ResultStore

STRATEGIES = ("procedural", "llm_rewrite", "llm_modify", "combine")
FUNNEL = ("candidates", "applies", "breaks", "valid", "kept")
# Extra packages of every synthetic environment image (coverage maps for test selection and
# inference, per-test time budgets); public so that a caller can build or look up the same image first.
ENV_EXTRA_DEPS = ("pytest-cov", "pytest-timeout")


@dataclass
class SynthConfig(EndpointOptions, ExecutorOptions):
    """How synthetic tasks are made (`swelego data synth`; the data build's `synthetic` part):
    bugs injected into real repositories, validated against their own tests."""

    out: str = doc_field("Output directory: dataset/, tasks.jsonl, candidates/<repo>-<version>.jsonl, funnel.json "
                         "(`--out`; the data build sets it to OUT/tasks/synthetic).", default="")
    strategies: tuple[str, ...] = doc_field("Any of procedural, llm_rewrite, llm_modify, combine.",
                                            default=("procedural", "combine"))
    max_candidates: int = doc_field("Candidate bugs per repository and strategy.", default=30)
    workers: int = doc_field("Warm sandboxes per repository validating candidates in parallel (0: one per CPU "
                             "core this process may use, at most 8).", default=0)
    seed: int = doc_field("Seed of candidate generation (same seed, same candidates).", default=0)
    validate: ValidateConfig = doc_field("How candidates are validated (data_gen.validate.ValidateConfig).",
                                         default_factory=ValidateConfig)
    namespace: str = doc_field("Prefix of the image names (the data build sets its own).", default="swelego")
    base: str | None = doc_field("Base image of environment builds: bookworm, bullseye, trixie or any image; null = "
                                 "the Debian base of the inferred Python (the data build sets its own).", default=None)
    env: EnvOverrides = doc_field("Changes to the inferred environment (swelego.sandbox.envspec.EnvOverrides: python, "
                                  "extras, extra_deps, system_packages, setup, test_cmd, ...).",
                                  default_factory=EnvOverrides)
    modifiers: tuple[str, ...] = doc_field("Restrict the procedural modifiers to these names (empty: all).",
                                           default=())

@dataclass
class RepoReport:
    source: str
    repo: str = ""
    image: str = ""
    baseline: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    validation: dict = field(default_factory=dict)  # InferenceAudit.summary(): inference on/off, audits


def _read_sources(sb: DockerSandbox) -> dict[str, str]:
    """The tracked Python source files of /testbed (one archive, not one call per file)."""
    tracked = set(sb.exec("git ls-files", timeout=120).output.splitlines())
    chunks, _ = sb.container.get_archive("/testbed")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
        for m in tf:
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            if m.isfile() and rel in tracked and is_source_file(rel):
                files[rel] = tf.extractfile(m).read().decode("utf-8", errors="replace")
    return files


def _baseline_and_coverage(sb: DockerSandbox, env, cfg: SynthConfig, out: Path) -> tuple[Baseline, CoverageMap | None]:
    """The clean suite's stable baseline and coverage map, per image: cached, so a resumed run
    does not redo them."""
    cache = out / "cache" / f"{env.spec_hash[:16]}.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        cov = CoverageMap.from_json(cached["coverage"]) if cached.get("coverage") is not None else None
        return Baseline.from_json(cached["baseline"]), cov
    baseline = stable_baseline(sb, env.test_cmd, log_parser=env.log_parser, runs=cfg.validate.baseline_runs,
                               timeout=cfg.validate.test_timeout)
    cov = coverage_map(sb, env.test_cmd, timeout=cfg.validate.test_timeout) if cfg.validate.test_selection else None
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"baseline": baseline.to_json(), "coverage": cov.to_json() if cov is not None else None}))
    return baseline, cov


def _candidates(store: ResultStore, repo: str, files: dict[str, str], cfg: SynthConfig, llm, wanted: set[str],
                covered) -> list[Candidate]:
    """The procedural and LLM candidates of one repository, in a reproducible order."""
    cands: list[Candidate] = []
    if "procedural" in wanted:
        cands += procedural_candidates(repo, files, seed=cfg.seed, limit=cfg.max_candidates,
                                       modifiers=list(cfg.modifiers) or None, keep=covered)
    if llm is not None:
        from data_gen.synth.llm import STRATEGIES as LLM_STRATEGIES

        for name in ("llm_rewrite", "llm_modify"):
            if name in wanted:
                cands += _llm_candidates(store, repo, files, name, LLM_STRATEGIES[name], llm, cfg, covered)
    return cands


# long: the per-repository run; its closures share the warm sandboxes, the candidate store and the
# audit, and splitting them apart would only pass those around.
def synthesize_repo(source: str, cfg: SynthConfig, progress: Callable[[str, int, int], None] | None = None) -> RepoReport:
    """Generate and validate synthetic tasks for one repository source."""
    t0 = time.monotonic()
    report = RepoReport(source)
    client = docker_client()
    out = Path(cfg.out)
    env = build_env_image(source, base=cfg.base, namespace=cfg.namespace, extra_deps=ENV_EXTRA_DEPS, overrides=cfg.env,
                          client=client, log=lambda m: None)
    report.repo, report.image = env.repo, env.image
    # One store per repository version: two versions of one package never share a file.
    store = ResultStore(out / "candidates" / f"{_slug(env.repo)}-{_slug(env.version)}.jsonl")
    limits = SandboxLimits(exec_timeout=cfg.validate.test_timeout)
    llm = cfg.llm()
    wanted = set(cfg.strategies)
    if llm is None and wanted & {"llm_rewrite", "llm_modify"}:
        report.notices.append("llm_rewrite / llm_modify skipped: no --llm-base-url and --llm-model configured")
    sandboxes = [DockerSandbox(env.image, client=client, limits=limits) for _ in range(worker_count(cfg.workers))]
    pool: queue.Queue[DockerSandbox] = queue.Queue()
    try:
        for sb in sandboxes:
            sb.start()
            pool.put(sb)
        first = sandboxes[0]
        baseline, cov = _baseline_and_coverage(first, env, cfg, out)
        # Those clean runs compiled the tree: every sandbox restores that bytecode on each reset
        # (none when the baseline came from the cache: the runs compile as before).
        snapshot = first.keep_bytecode()
        for sb in sandboxes[1:]:
            sb.keep_bytecode(snapshot)
        audit = InferenceAudit(cfg.validate)
        if audit.enabled and (cov is None or not cov.probed):
            audit.enabled = False
            report.notices.append("PASS_TO_PASS inference off: the cached coverage map has no probe data")
        vcmd = validation_cmd(env.test_cmd, env.log_parser, cfg.validate)
        runners = {id(sb): warm_runner(sb, vcmd, env.log_parser, cov if audit.enabled else None, cfg.validate)
                   for sb in sandboxes}
        report.baseline = {"passing": len(baseline.passing), "failing": len(baseline.failing),
                           "flaky": baseline.flaky, "seconds": round(baseline.seconds, 2)}
        files = _read_sources(first)
        # With a coverage map, spend the candidate budget on functions some test executes:
        # a bug no test runs can never be validated.
        covered = (lambda path, e: bool(cov.tests_for(path, e.start_line, e.end_line))) if cov else None

        cands = _candidates(store, env.repo, files, cfg, llm, wanted, covered)

        done = [0]
        total = [len(cands)]
        lock = threading.Lock()

        tests = baseline.passing + baseline.failing + baseline.flaky

        def item(c: Candidate) -> Item:
            covering = None
            if cov is not None:
                covering = set()
                for path, start, end in c.spans:
                    covering |= cov.closure(path, start, end)
            blocker = (inference_blocker(c.patch, files, cov, tests) if cov is not None and audit.enabled
                       else "inference off")
            return Item(c.id, c.patch, covering, blocker, c.spans)

        def tick() -> None:
            with lock:
                done[0] += 1
                if progress:
                    progress(env.repo, done[0], total[0])

        def run_unit(unit: list[Candidate]) -> list[dict]:
            sb = pool.get()
            try:
                try:
                    outs = validate_unit(sb, [item(c) for c in unit], baseline, test_cmd=vcmd,
                                         log_parser=env.log_parser, timeout=cfg.validate.test_timeout, audit=audit,
                                         cov=cov, cfg=cfg.validate, warm=runners.get(id(sb)))
                except Exception as e:  # noqa: BLE001 - one broken unit must not stop the batch
                    sb.reset("fresh")
                    outs = [e] * len(unit)
                recs = []
                for c, o in zip(unit, outs, strict=True):
                    rec = _validate(sb, c, baseline, cov, env, cfg, llm, client, files, audit, first=o)
                    store.put(c.id, rec)
                    recs.append(rec)
                    tick()
                return recs
            finally:
                pool.put(sb)

        def run_all(batch: list[Candidate]) -> list[dict]:
            """Records in the order of `batch`: stored ones read back, the rest validated in units
            (plan_batches: inferable candidates with disjoint covering tests share a test run)."""
            recs: dict[str, dict] = {}
            todo = []
            for c in batch:
                if store.has(c.id):
                    recs[c.id] = store.get(c.id)
                    audit.replay(recs[c.id])
                    tick()
                else:
                    todo.append(c)
            by_id = {c.id: c for c in todo}
            units = plan_batches([item(c) for c in todo], baseline, cfg.validate.batch_size)
            for unit_recs in ex.map(run_unit, [[by_id[it.cid] for it in u] for u in units]):
                for r in unit_recs:
                    recs[r["candidate"]["id"]] = r
            return [recs[c.id] for c in batch]

        with ThreadPoolExecutor(max_workers=len(sandboxes)) as ex:
            records = run_all(cands)
            if "combine" in wanted:
                valid = [Candidate(**r["candidate"]) for r in records if r["status"] in ("valid", "kept")]
                combos = combinations(valid, seed=cfg.seed, limit=cfg.max_candidates)
                combos = [_combined_patch(first, c, {v.id: v for v in valid}) for c in combos]
                combos = [c for c in combos if c is not None]
                total[0] += len(combos)
                records += run_all(combos)
        report.records = records
        report.validation = audit.summary()
        for d in audit.disagreements:
            report.notices.append(f"PASS_TO_PASS inference turned off for {env.repo}: candidate {d['candidate']}: "
                                  f"{d['reason']}")
    finally:
        for sb in sandboxes:
            sb.close()
        store.close()
    report.seconds = time.monotonic() - t0
    return report


def worker_count(workers: int) -> int:
    """`workers`, or for 0 one per CPU core available to this process (at most 8)."""
    if workers > 0:
        return workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _llm_candidates(store: ResultStore, repo: str, files: dict[str, str], name: str, fn, llm, cfg,
                    covered) -> list[Candidate]:
    """LLM candidates are stored when generated, so a rerun does not ask the model again."""
    key = f"generated:{name}:{cfg.seed}:{cfg.max_candidates}"
    if store.has(key):
        return [Candidate(**c) for c in store.get(key)["candidates"]]
    gen = llm_candidates(repo, files, name, lambda src, path, ent, rng: fn(llm, src, path, ent, rng),
                         seed=cfg.seed, limit=cfg.max_candidates, keep=covered)
    cands = list(gen)
    store.put(key, {"candidates": [c.to_json() for c in cands]})
    return cands


def _combined_patch(sb: DockerSandbox, combo: Candidate, by_id: dict[str, Candidate]) -> Candidate | None:
    """Apply the parts one after another; None when they do not apply together."""
    sb.reset("git")
    for pid in combo.parts:
        if not apply_patch(sb, by_id[pid].patch):
            sb.reset("git")
            return None
    patch = sb.exec("git diff --no-color", timeout=60).output
    sb.reset("git")
    combo.patch = patch
    return combo


def _validate(sb: DockerSandbox, c: Candidate, baseline: Baseline, cov: CoverageMap | None, env, cfg: SynthConfig,
              llm, client, files: dict[str, str] | None = None, audit: InferenceAudit | None = None,
              first: Outcome | Exception | None = None) -> dict:
    """One candidate's record: its validation (`first`, when validate_unit already ran it), and
    for a valid one the row, kept only when swebench's grading holds (`_verify`); a row whose
    inferred lists the grading rejects is validated again with the full suite."""
    vc = cfg.validate
    audit = audit or InferenceAudit(vc)
    covering, infer, blocker = None, False, None
    if cov is not None:
        covering = set()
        for path, start, end in c.spans:
            covering |= cov.closure(path, start, end)
        if audit.enabled:
            blocker = inference_blocker(c.patch, files or {}, cov, baseline.passing + baseline.failing + baseline.flaky)
            infer = blocker is None
    budget = (lambda tests: per_test_budget(cov, tests, vc)) if cov is not None else None
    vcmd = validation_cmd(env.test_cmd, env.log_parser, vc)
    rec = {"candidate": c.to_json()}
    for attempt in range(2):
        if attempt == 0 and isinstance(first, Exception):
            return {**rec, "status": "error", "error": str(first)[:500]}
        try:
            if attempt == 0 and first is not None:
                outcome = first
            else:
                outcome = validate_patch(sb, c.patch, baseline, test_cmd=vcmd, log_parser=env.log_parser,
                                         covering=covering, timeout=vc.test_timeout, infer=infer, audit=audit.claim,
                                         budget=budget, node_ids=cov.node_ids if cov is not None else None,
                                         collect=collect_budget(cov, vc), budgets=per_test_budgets(cov, vc))
                audit.record(c.id, outcome)
        except Exception as e:  # noqa: BLE001 - one broken candidate must not stop the batch
            sb.reset("fresh")
            return {**rec, "status": "error", "error": str(e)[:500]}
        rec.update({"status": outcome.status, "fail_to_pass": len(outcome.fail_to_pass),
                    "pass_to_pass": len(outcome.pass_to_pass), "tests_run": outcome.tests_run,
                    "seconds": round(rec.get("seconds", 0) + outcome.seconds, 3), "validation": outcome.validation})
        if blocker:
            rec["inference_blocker"] = blocker
        if outcome.warm:
            rec["warm"] = True  # its runs were served by the warm runner's hot-patched fork
        if outcome.agreed is not None:
            rec["audit_agreed"] = outcome.agreed
        if outcome.status == "timeout" and outcome.backstop:
            sb.reset("fresh")  # the sandbox killed the run: whatever hung may have left state behind
        if outcome.status != "valid":
            return rec
        # The tree may hold a whole batch of candidates: this one alone gives the fix.
        sb.reset("git")
        if not apply_patch(sb, c.patch):
            return {**rec, "status": "error", "error": "the patch no longer applies on its own"}
        # -R swaps the prefixes too: these give the usual a/ (buggy, old) and b/ (fixed, new) labels.
        fix_patch = sb.exec("git diff -R --no-color --src-prefix=b/ --dst-prefix=a/", timeout=60).output
        try:
            row = _make_row(c, outcome, fix_patch, env, cfg, llm, client,
                            _statement_log(sb, outcome, baseline, cov, env, vc, vcmd, rec))
        except SwelegoError as e:
            rec["error"] = str(e)[:500]
            return rec
        t0 = time.monotonic()
        problem = _verify(TaskInstance.from_row(row), client, vc) if vc.verify else None
        rec["verify_seconds"] = round(rec.get("verify_seconds", 0) + time.monotonic() - t0, 3)
        if problem is None:
            rec["row"] = row
            rec["status"] = "kept"
            return rec
        rec.update({"status": "grading_mismatch", "error": problem})
        try:
            client.images.remove(row["image"], force=True)
        except Exception:  # noqa: BLE001 - a leftover image is harmless
            pass
        if (outcome.validation != "inferred" and not outcome.warm) or attempt:
            return rec
        # The official grading saw an inferred list (or a hot-patched run) wrong: inference is off
        # for this repository, and this candidate gets its lists from a fresh full-suite run.
        rec["inference_wrong"] = True
        audit.disagree(c.id, f"swebench grading of the inferred row: {problem}")
        infer, covering = False, None
    return rec


def _statement_log(sb: DockerSandbox, outcome: Outcome, baseline: Baseline, cov: CoverageMap | None, env,
                   vc: ValidateConfig, vcmd: str, rec: dict) -> str:
    """The log the problem statement is written from: validation's own, or, where its runs were
    quiet (`vcmd` is not the repository's command), a run of the first FAIL_TO_PASS tests with
    tracebacks (its seconds recorded in `rec`). The candidate is on the tree."""
    if vcmd == env.test_cmd:
        return outcome.log
    t0 = time.monotonic()
    log = failure_log(sb, env.test_cmd, outcome.fail_to_pass, baseline, log_parser=env.log_parser,
                      timeout=vc.test_timeout, node_ids=cov.node_ids if cov is not None else None)
    rec["statement_log_seconds"] = round(time.monotonic() - t0, 3)
    return log


def _verify(row: TaskInstance, client, vc: ValidateConfig) -> str | None:
    """The final word: swebench grades the row in its own image (swebench's eval script and
    grading). The gold patch must resolve it; the empty patch must not, with every FAIL_TO_PASS
    test failing and every PASS_TO_PASS test passing. Returns the problem, None when it holds."""
    with DockerSandbox(row.image, client=client, limits=SandboxLimits(exec_timeout=vc.test_timeout)) as sb:
        gold = run_eval(sb, row, row.patch, timeout=vc.test_timeout)
        if not gold.resolved:
            return f"gold patch graded {gold.status}"
        empty = run_eval(sb, row, "", timeout=vc.test_timeout)
    if empty.resolved:
        return "the empty patch resolves the row"
    if not empty.report:
        return f"the empty patch's run could not be graded ({empty.status})"
    p2p_failed = empty.report.get("PASS_TO_PASS", {}).get("failure", [])
    f2p_passed = empty.report.get("FAIL_TO_PASS", {}).get("success", [])
    if p2p_failed:
        return f"{len(p2p_failed)} PASS_TO_PASS test(s) fail without the fix, e.g. {p2p_failed[0]}"
    if f2p_passed:
        return f"{len(f2p_passed)} FAIL_TO_PASS test(s) pass without the fix, e.g. {f2p_passed[0]}"
    return None


def _make_row(c: Candidate, outcome, fix_patch: str, env, cfg: SynthConfig, llm, client, log: str) -> dict:
    from data_gen.issue_text import write_problem_statement

    instance_id = f"{_slug(env.repo)}__{_slug(c.modifier)}-{c.id[:8]}"
    image, commit = make_instance_image(env.image, c.patch, instance_id, namespace=cfg.namespace, client=client)
    statement, origin = write_problem_statement(client=llm, path=c.file, function=c.entity.split("+")[0],
                                                bug_patch=c.patch, fix_patch=fix_patch,
                                                failing_tests=outcome.fail_to_pass, test_log=log)
    task = TaskInstance(
        instance_id=instance_id, repo=env.repo, base_commit=commit, patch=fix_patch, test_patch="",
        problem_statement=statement, FAIL_TO_PASS=outcome.fail_to_pass, PASS_TO_PASS=outcome.pass_to_pass,
        # The eval script runs quiet as validation did (swebench reads status lines only): a patch
        # that breaks many tests is graded in seconds, not after formatting every traceback.
        image=image, eval_script=make_eval_script(base_commit=commit, log_parser=env.log_parser,
                                                 test_cmd=validation_cmd(env.test_cmd, env.log_parser, cfg.validate),
                                                 tests=outcome.fail_to_pass + outcome.pass_to_pass),
        log_parser=env.log_parser, version=env.version, source="synthetic", strategy=f"{c.strategy}/{c.modifier}",
        test_cmd=env.test_cmd,
        metadata={"candidate": c.id, "file": c.file, "entity": c.entity, "env_image": env.image,
                  "statement": origin, "parts": c.parts, "source": env.source, "validation": outcome.validation})
    return task.to_row()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def funnel(records: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts per stage, overall and per strategy and per modifier."""
    stages = {
        "candidates": lambda s: True,
        "applies": lambda s: s not in ("apply_failed", "error"),
        "breaks": lambda s: s in ("invalid", "valid", "kept", "grading_mismatch"),
        "valid": lambda s: s in ("valid", "kept"),
        "kept": lambda s: s == "kept",
    }
    out: dict[str, dict[str, dict[str, int]]] = {"all": {}, "strategy": {}, "modifier": {}}
    for r in records:
        c = r["candidate"]
        for group, key in (("all", "all"), ("strategy", c["strategy"]), ("modifier", c["modifier"])):
            row = out[group].setdefault(key, dict.fromkeys(FUNNEL, 0))
            for stage, test in stages.items():
                row[stage] += int(test(r["status"]))
    return out


def collect_rows(out: Path) -> list[TaskInstance]:
    rows = []
    for f in sorted((out / "candidates").glob("*.jsonl")):
        with ResultStore(f) as store:
            for _key, rec in store:
                if rec.get("status") == "kept" and "row" in rec:
                    rows.append(TaskInstance.from_row(rec["row"]))
    return sorted(rows, key=lambda t: t.instance_id)


def report_dict(reports: list[RepoReport], errors: dict[str, str]) -> dict:
    records = [r for rep in reports for r in rep.records]
    return {"funnel": funnel(records), "repos": [{k: v for k, v in asdict(rep).items() if k != "records"}
                                                  for rep in reports], "errors": errors}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def synthesize_source(source: str, cfg: SynthConfig, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """One repository: its environment image first (so a failed build is told apart from the
    rest), then `synthesize_repo`. Never raises: failures come back in the record."""
    t0 = time.monotonic()
    try:
        env = build_env_image(source, base=cfg.base, namespace=cfg.namespace, extra_deps=ENV_EXTRA_DEPS, overrides=cfg.env,
                              log=lambda m: None)
    except Exception as e:  # noqa: BLE001 - reported per source
        return {"source": source, "env": {"source": source, "ok": False, "error": _first_line(e),
                                          "seconds": round(time.monotonic() - t0, 2)}}
    rec: dict = {"source": source, "env": {
        "source": source, "ok": True, "repo": env.repo, "version": env.version, "image": env.image,
        "python": env.python, "built": env.built, "seconds": round(env.build_seconds, 2)}}
    try:
        rec["report"] = synthesize_repo(source, cfg, progress)
    except Exception as e:  # noqa: BLE001
        rec["error"] = _first_line(e)
    return rec


@dataclass
class SynthResult:
    """What `synthesize` made: the kept rows of these sources' candidates, one report per
    repository that ran, the environment records, the errors by source and the funnel summary."""

    rows: list[TaskInstance]
    reports: list[RepoReport]
    envs: list[dict]
    errors: dict[str, str]
    summary: dict


def synthesize(sources: list[str], cfg: SynthConfig, progress: Callable[[str, int, int], None] | None = None,
               on_source: Callable[[str, dict], None] | None = None) -> SynthResult:
    """Synthetic tasks from `sources` (`pypi:NAME==VERSION`, git URL[@commit], local path[@rev]),
    repositories in parallel by `cfg.executor`: writes cfg.out/tasks.jsonl (the kept rows of these
    candidates; the candidate stores may hold earlier ones) and cfg.out/funnel.json. `progress(repo,
    done, total)` follows candidates (local executor only: Ray workers cannot call back);
    `on_source(source, record)` is called as each repository finishes. The one driver of
    `swelego data synth` and the data build's synth stage."""
    from swelego.executor import run_tasks
    from swelego.schema import save_jsonl

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = list(dict.fromkeys(sources))
    envs, reports, errors = [], [], {}
    # Ray ships the function to other processes: only picklable state goes with it.
    work = partial(synthesize_source, cfg=cfg, progress=progress if cfg.executor == "local" else None)
    for source, res in run_tasks(work, sources, executor=cfg.executor, ray_address=cfg.ray_address):
        if isinstance(res, BaseException):
            res = {"source": source, "env": {"source": source, "ok": None}, "error": _first_line(res)}
        envs.append(res["env"])
        if not res["env"].get("ok"):
            errors[source] = "environment build failed: " + res["env"].get("error", "")
        elif "error" in res:
            errors[source] = res["error"]
        if "report" in res:
            reports.append(res["report"])
        if on_source is not None:
            on_source(source, {**res, "error": errors.get(source)})
    rows = sorted((TaskInstance.from_row(r["row"]) for rep in reports for r in rep.records
                   if r.get("status") == "kept" and "row" in r), key=lambda t: t.instance_id)
    save_jsonl(rows, out / "tasks.jsonl")
    summary = report_dict(reports, errors)
    summary["kept_rows"] = len(rows)
    summary["envs"] = envs
    # Sandbox time from the records: the clean-suite runs (median x runs, + the coverage run), every
    # candidate's validation, and image builds made now.
    suite_runs = cfg.validate.baseline_runs + int(cfg.validate.test_selection)
    summary["container_seconds"] = round(sum(
        float(rep.baseline.get("seconds", 0)) * suite_runs + sum(float(r.get("seconds", 0)) for r in rep.records)
        for rep in reports) + sum(float(e.get("seconds", 0)) for e in envs if e.get("built")), 2)
    (out / "funnel.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return SynthResult(rows=rows, reports=reports, envs=envs, errors=errors, summary=summary)


__all__ = ["ENV_EXTRA_DEPS", "STRATEGIES", "SynthConfig", "SynthResult", "synthesize", "synthesize_repo",
           "synthesize_source", "funnel", "collect_rows", "report_dict"]
