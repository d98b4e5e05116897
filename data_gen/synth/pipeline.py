"""`swelego data synth`: synthetic tasks from real repositories, validated in warm sandboxes.

Per repository: build the environment, run the clean suite three times (flaky tests are
quarantined), map tests to the code they execute, generate candidates, validate each in one
of `workers` warm containers reset with git, build a sanitized single-commit image and a
problem statement for each valid bug, and record everything in an append-only store so a
rerun resumes where a killed one stopped."""

from __future__ import annotations

import io
import json
import queue
import re
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
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
    ValidateConfig,
    coverage_map,
    stable_baseline,
    validate_patch,
)
from swelego.errors import SwelegoError
from swelego.harness import apply_patch, make_eval_script
from swelego.llm import client_from_options
from swelego.sandbox import DockerSandbox, SandboxLimits, docker_client
from swelego.sandbox.images import build_env_image
from swelego.schema import TaskInstance
from swelego.store import ResultStore

STRATEGIES = ("procedural", "llm_rewrite", "llm_modify", "combine")
FUNNEL = ("candidates", "applies", "breaks", "valid", "kept")
# Extra packages of every synthetic environment image (coverage maps for test selection);
# public so that a caller can build or look up the same image first.
ENV_EXTRA_DEPS = ("pytest-cov",)


@dataclass
class SynthConfig:
    """Options of `swelego data synth`.

    out: output directory (dataset/, tasks.jsonl, candidates/<repo>-<version>.jsonl, funnel.json).
    strategies: any of procedural, llm_rewrite, llm_modify, combine.
    max_candidates: candidates per repository and strategy.
    workers: warm sandboxes per repository validating in parallel.
    seed: makes candidate generation reproducible.
    validate: how candidates are validated (data_gen.validate.ValidateConfig: test selection,
        PASS_TO_PASS inference and its audit, per-test budgets, test_timeout, baseline_runs).
    namespace / base: image name prefix and base image of environment builds.
    llm_base_url / llm_model / llm_key_env: OpenAI-compatible endpoint for the LLM
        strategies and problem statements; without it they are skipped / templated.
    executor / ray_address: run repositories locally or as Ray tasks.
    """

    out: str
    strategies: tuple[str, ...] = ("procedural", "combine")
    max_candidates: int = 30
    workers: int = 1
    seed: int = 0
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    namespace: str = "swelego"
    base: str = "bookworm"
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_key_env: str = "OPENAI_API_KEY"
    executor: str = "local"
    ray_address: str | None = None
    modifiers: tuple[str, ...] = ()

    def llm(self):
        return client_from_options(self.llm_base_url, self.llm_model, self.llm_key_env)


@dataclass
class RepoReport:
    source: str
    repo: str = ""
    image: str = ""
    baseline: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0


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


def synthesize_repo(source: str, cfg: SynthConfig, progress: Callable[[str, int, int], None] | None = None) -> RepoReport:
    """Generate and validate synthetic tasks for one repository source."""
    t0 = time.monotonic()
    report = RepoReport(source)
    client = docker_client()
    out = Path(cfg.out)
    env = build_env_image(source, base=cfg.base, namespace=cfg.namespace, extra_deps=ENV_EXTRA_DEPS,
                          client=client, log=lambda m: None)
    report.repo, report.image = env.repo, env.image
    # One store per repository version: two versions of one package never share a file.
    store = ResultStore(out / "candidates" / f"{_slug(env.repo)}-{_slug(env.version)}.jsonl")
    limits = SandboxLimits(exec_timeout=cfg.validate.test_timeout)
    llm = cfg.llm()
    wanted = set(cfg.strategies)
    if llm is None and wanted & {"llm_rewrite", "llm_modify"}:
        report.notices.append("llm_rewrite / llm_modify skipped: no --llm-base-url and --llm-model configured")
    sandboxes = [DockerSandbox(env.image, client=client, limits=limits) for _ in range(max(1, cfg.workers))]
    pool: queue.Queue[DockerSandbox] = queue.Queue()
    try:
        for sb in sandboxes:
            sb.start()
            pool.put(sb)
        first = sandboxes[0]
        # Baseline and coverage are per image: cached, so a resumed run does not redo them.
        cache = out / "cache" / f"{env.spec_hash[:16]}.json"
        if cache.exists():
            cached = json.loads(cache.read_text())
            baseline = Baseline.from_json(cached["baseline"])
            cov = CoverageMap.from_json(cached["coverage"]) if cached.get("coverage") is not None else None
        else:
            baseline = stable_baseline(first, env.test_cmd, log_parser=env.log_parser, runs=cfg.validate.baseline_runs,
                                       timeout=cfg.validate.test_timeout)
            cov = (coverage_map(first, env.test_cmd, timeout=cfg.validate.test_timeout)
                   if cfg.validate.test_selection else None)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"baseline": baseline.to_json(),
                                         "coverage": cov.to_json() if cov is not None else None}))
        report.baseline = {"passing": len(baseline.passing), "failing": len(baseline.failing),
                           "flaky": baseline.flaky, "seconds": round(baseline.seconds, 2)}
        files = _read_sources(first)
        # With a coverage map, spend the candidate budget on functions some test executes:
        # a bug no test runs can never be validated.
        covered = (lambda path, e: bool(cov.tests_for(path, e.start_line, e.end_line))) if cov else None

        cands: list[Candidate] = []
        if "procedural" in wanted:
            cands += procedural_candidates(env.repo, files, seed=cfg.seed, limit=cfg.max_candidates,
                                           modifiers=list(cfg.modifiers) or None, keep=covered)
        if llm is not None:
            from data_gen.synth.llm import STRATEGIES as LLM_STRATEGIES

            for name in ("llm_rewrite", "llm_modify"):
                if name in wanted:
                    cands += _llm_candidates(store, env.repo, files, name, LLM_STRATEGIES[name], llm, cfg, covered)

        done = [0]
        total = [len(cands)]
        lock = threading.Lock()

        def run_one(c: Candidate) -> dict:
            if store.has(c.id):
                rec = store.get(c.id)
            else:
                sb = pool.get()
                try:
                    rec = _validate(sb, c, baseline, cov, env, cfg, llm, client)
                finally:
                    pool.put(sb)
                store.put(c.id, rec)
            with lock:
                done[0] += 1
                if progress:
                    progress(env.repo, done[0], total[0])
            return rec

        with ThreadPoolExecutor(max_workers=len(sandboxes)) as ex:
            records = list(ex.map(run_one, cands))
            if "combine" in wanted:
                valid = [Candidate(**r["candidate"]) for r in records if r["status"] in ("valid", "kept")]
                combos = combinations(valid, seed=cfg.seed, limit=cfg.max_candidates)
                combos = [_combined_patch(first, c, {v.id: v for v in valid}) for c in combos]
                combos = [c for c in combos if c is not None]
                total[0] += len(combos)
                records += list(ex.map(run_one, combos))
        report.records = records
    finally:
        for sb in sandboxes:
            sb.close()
        store.close()
    report.seconds = time.monotonic() - t0
    return report


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
              llm, client) -> dict:
    covering = None
    if cov is not None:
        covering = set()
        for path, start, end in c.spans:
            covering |= cov.tests_for(path, start, end)
    try:
        outcome = validate_patch(sb, c.patch, baseline, test_cmd=env.test_cmd, log_parser=env.log_parser,
                                 covering=covering, timeout=cfg.validate.test_timeout)
    except Exception as e:  # noqa: BLE001 - one broken candidate must not stop the batch
        sb.reset("fresh")
        return {"candidate": c.to_json(), "status": "error", "error": str(e)[:500]}
    rec = {"candidate": c.to_json(), "status": outcome.status, "fail_to_pass": len(outcome.fail_to_pass),
           "pass_to_pass": len(outcome.pass_to_pass), "tests_run": outcome.tests_run,
           "seconds": round(outcome.seconds, 3)}
    if outcome.status == "timeout":
        sb.reset("fresh")  # whatever hung may have left state behind
    if outcome.status != "valid":
        return rec
    # -R swaps the prefixes too: these give the usual a/ (buggy, old) and b/ (fixed, new) labels.
    fix_patch = sb.exec("git diff -R --no-color --src-prefix=b/ --dst-prefix=a/", timeout=60).output
    try:
        rec["row"] = _make_row(c, outcome, fix_patch, env, cfg, llm, client)
        rec["status"] = "kept"
    except SwelegoError as e:
        rec["error"] = str(e)[:500]
    return rec


def _make_row(c: Candidate, outcome, fix_patch: str, env, cfg: SynthConfig, llm, client) -> dict:
    from data_gen.issue_text import write_problem_statement

    instance_id = f"{_slug(env.repo)}__{_slug(c.modifier)}-{c.id[:8]}"
    image, commit = make_instance_image(env.image, c.patch, instance_id, namespace=cfg.namespace, client=client)
    statement, origin = write_problem_statement(client=llm, path=c.file, function=c.entity.split("+")[0],
                                                bug_patch=c.patch, fix_patch=fix_patch,
                                                failing_tests=outcome.fail_to_pass, test_log=outcome.log)
    task = TaskInstance(
        instance_id=instance_id, repo=env.repo, base_commit=commit, patch=fix_patch, test_patch="",
        problem_statement=statement, FAIL_TO_PASS=outcome.fail_to_pass, PASS_TO_PASS=outcome.pass_to_pass,
        image=image, eval_script=make_eval_script(base_commit=commit, test_cmd=env.test_cmd, log_parser=env.log_parser,
                                                 tests=outcome.fail_to_pass + outcome.pass_to_pass),
        log_parser=env.log_parser, version=env.version, source="synthetic", strategy=f"{c.strategy}/{c.modifier}",
        test_cmd=env.test_cmd,
        metadata={"candidate": c.id, "file": c.file, "entity": c.entity, "env_image": env.image,
                  "statement": origin, "parts": c.parts, "source": env.source})
    return task.to_row()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def funnel(records: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts per stage, overall and per strategy and per modifier."""
    stages = {
        "candidates": lambda s: True,
        "applies": lambda s: s not in ("apply_failed", "error"),
        "breaks": lambda s: s in ("invalid", "valid", "kept"),
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


__all__ = ["ENV_EXTRA_DEPS", "STRATEGIES", "SynthConfig", "synthesize_repo", "funnel", "collect_rows", "report_dict"]
