"""`swelego data validate`: mined candidates → validated real tasks.

Per source repository: each candidate's `base_commit` tree becomes a fresh single-commit
repository (nothing after — or before — it is reachable), its environment is inferred, and
candidates whose dependency key matches share one environment image, built once (with the
repair loop when the build or its test run fails). A task image is that environment with
/testbed replaced by the candidate's tree. In it the test patch and the code patch are
committed, the suite runs `baseline_runs` times on that fixed tree (tests whose status
changes are quarantined as flaky), and the code patch is reverted: tests that passed
and now fail are FAIL_TO_PASS (each must fail on `confirm_runs` more runs), those still
passing are PASS_TO_PASS — the synthetic-task machinery with the roles of the two trees
swapped. Finally swebench's grading must resolve the row with the gold patch and not with an
empty one. Every candidate gets one record in an append-only store, so a rerun resumes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from data_gen.real.decontam import Decontaminator
from data_gen.real.filters import Candidate, load_candidates
from data_gen.real.mine_git import local_repository
from data_gen.sanitize import instance_image_name
from data_gen.validate import SuiteRunConfig, broken_tests, run_selected, stable_baseline, validate_patch
from swelego.config import doc_field
from swelego.errors import SwelegoError
from swelego.executor import ExecutorOptions
from swelego.harness import apply_patch, make_eval_script, run_eval, run_tests
from swelego.llm import EndpointOptions
from swelego.sandbox import DockerSandbox, SandboxLimits, docker_client
from swelego.sandbox.buildbox import BuildBox
from swelego.sandbox.docker import commit_image
from swelego.sandbox.envrepair import EnvFailure, env_problem, log_excerpt, repair_loop, repo_context
from swelego.sandbox.envspec import EnvOverrides, EnvSpec, dependency_key, infer_env
from swelego.sandbox.images import (
    EnvImage,
    build_env_image,
    cache_dir,
    dependency_requirements,
    ensure_base_image,
    probe_python,
)
from swelego.sandbox.sources import PreparedRepo, RepoSource, prepare_testbed
from swelego.schema import TaskInstance
from swelego.store import ResultStore

# Record statuses in funnel order; `kept` rows go into the dataset.
STATUSES = ("contaminated", "source_error", "missing_commit", "env_failed", "apply_failed", "env_broken",
            "no_fail_to_pass", "timeout", "grading_mismatch", "error", "kept")
FUNNEL = ("candidates", "env_ok", "applies", "fail_to_pass", "kept")
_DEP_FILES = re.compile(r"^(pyproject\.toml|setup\.py|setup\.cfg|tox\.ini|.*requirements.*\.txt)$", re.IGNORECASE)
_GIT_ID = "-c user.name=swelego -c user.email=swelego@localhost"


@dataclass
class ValidateConfig(SuiteRunConfig, EndpointOptions, ExecutorOptions):
    """How mined candidates are validated (`swelego data validate`; the data build's
    `real.validate` part, whose out, namespace, llm_*, executor and decontamination come from the
    build's own keys); test_timeout, baseline_runs and verify are SuiteRunConfig's."""

    out: str = doc_field("Output directory: dataset/, tasks.jsonl, records/, envs/, summary.json.", default="")
    namespace: str = doc_field("Prefix of the environment and task image names.", default="swelego")
    workers: int = doc_field("Candidates of one environment validated in parallel (one sandbox each).", default=1)
    confirm_runs: int = doc_field("Extra runs of FAIL_TO_PASS on the unfixed tree; a test that passes once is "
                                  "flaky.", default=2)
    repair_attempts: int = doc_field("Environment attempts per failure (1 = no repair); needs an LLM to go beyond "
                                     "specs that already repaired another task of the repository.", default=3)
    max_tasks: int | None = doc_field("Stop after this many candidates (in file order); null for all.", default=None)
    allow_contaminated: bool = doc_field("Keep candidates that overlap SWE-bench (see decontam.Decontaminator).",
                                         default=False)
    swebench_datasets: tuple[str, ...] = doc_field("swebench dataset files whose patches no candidate may match.",
                                                   default=())
    env: dict = doc_field("Changes to every inferred environment (swelego.sandbox.envspec.EnvOverrides fields).",
                          default_factory=dict)


def suite_limits(timeout: float) -> SandboxLimits:
    """Sandbox limits for test runs (the harness keeps test logs whole itself: TEST_LOG_MAX)."""
    return SandboxLimits(exec_timeout=timeout)


# -- trees and images ----------------------------------------------------------------------
def task_testbed(repo_dir: Path, commit: str, dest: Path, name: str) -> PreparedRepo:
    """`commit`'s tree as a fresh single-commit repository at `dest`/`name`. A fixed identity
    and date make the commit (and so the images built from it) the same for the same tree."""
    dest = Path(dest)
    tree = dest / "tree" / name
    shutil.rmtree(dest, ignore_errors=True)
    tree.mkdir(parents=True)
    env = {**os.environ, "GIT_INDEX_FILE": str(dest / "index")}
    for args in (["read-tree", commit], ["checkout-index", "-a", "-f"]):
        # --work-tree: works for bare repositories too, and leaves the repository's own tree alone
        p = subprocess.run(["git", "-C", str(repo_dir), f"--work-tree={tree}", *args], env=env, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise SwelegoError(f"{repo_dir}: cannot check out {commit[:12]}: {p.stderr.strip()[-200:]}")
    prepared = prepare_testbed(RepoSource("local", str(tree), None, f"{repo_dir}@{commit}"), dest / name,
                               cache_dir())
    shutil.rmtree(dest / "tree", ignore_errors=True)
    return prepared


def _tar_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for child in sorted(path.iterdir()):
            tf.add(child, arcname=child.name)
    return buf.getvalue()


def make_task_image(env_image: str, testbed: PreparedRepo, instance_id: str, *, namespace: str, client) -> str:
    """The environment image with /testbed replaced by `testbed` (its single commit included)
    and the project reinstalled over it; named as swebench names instance images."""
    name = instance_image_name(namespace, instance_id)
    with DockerSandbox(env_image, client=client) as sb:
        r = sb.exec("find /testbed -mindepth 1 -delete", timeout=300)
        if not r.ok:
            raise EnvFailure("install", f"could not empty /testbed: {r.output.strip()[-200:]}")
        if not sb.container.put_archive("/testbed", _tar_dir(testbed.testbed)):
            raise EnvFailure("install", "could not copy the tree into the image")
        r = sb.exec("bash /opt/swelego/install-testbed.sh 2>&1", timeout=1200)
        if not r.ok:
            raise EnvFailure("install", "installing the task's tree failed", log_excerpt(r.output))
        head = sb.exec("git rev-parse HEAD", timeout=60).output.strip()
        if head != testbed.base_commit:
            raise SwelegoError(f"{instance_id}: HEAD is {head[:12]} in the task image, not {testbed.base_commit[:12]}")
        commit_image(sb, name)
    return name


def try_environment(prepared: PreparedRepo, spec: EnvSpec, *, namespace: str, client,
                    test_timeout: float = 600.0) -> EnvImage:
    """Build (or reuse) the environment image of `spec` for the tree `prepared` and run its
    test suite once; EnvFailure when the build fails or the run shows a broken environment."""
    lines: list[str] = []
    try:
        env = build_env_image(str(prepared.testbed), spec=spec, namespace=namespace, client=client,
                              log=lines.append)
    except SwelegoError as e:
        text = str(e)
        raise EnvFailure("build", text.splitlines()[0][:400], log_excerpt("\n".join(lines) + "\n" + text)) from None
    with DockerSandbox(env.image, client=client, limits=suite_limits(test_timeout)) as sb:
        run = run_tests(sb, spec.test_cmd, timeout=test_timeout, log_parser=spec.log_parser)
    if problem := env_problem(run):
        raise EnvFailure("tests", problem, log_excerpt(run.log))
    env.log_parser = spec.log_parser
    return env


def build_environment(prepared: PreparedRepo, *, namespace: str = "swelego", client=None, llm=None,
                      repair_attempts: int = 3, test_timeout: float = 600.0, spec: EnvSpec | None = None):
    """Infer (unless given) and build the environment of one tree, repairing it with `llm`.
    Returns (EnvImage or None, the last spec tried, the attempts)."""
    client = client or docker_client()
    spec = spec or infer_env(prepared.testbed)
    return repair_loop(spec, lambda s: try_environment(prepared, s, namespace=namespace, client=client,
                                                       test_timeout=test_timeout),
                       llm=llm, max_attempts=repair_attempts, context=repo_context(prepared.testbed),
                       tree=prepared.testbed)


def failure_reason(attempts) -> str:
    """The last real failure of a repair loop (a reply that gave no spec explains nothing)."""
    real = [a for a in attempts if a.stage != "repair"] or attempts
    kind = f" [{real[-1].kind}]" if real[-1].kind else ""
    return f"{real[-1].stage}{kind}: {real[-1].error} (after {len(attempts)} attempt(s))"


_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class) (\w+)")


def _function_of(patch: str, path: str) -> str:
    """The function or class around the first changed line: the nearest `def`/`class` above it
    in the hunk's context, else the one git names in the hunk header, else the module's name."""
    name = None
    for line in patch.splitlines():
        if line.startswith("@@"):
            m = re.search(r"^@@ [^@]* @@.*?\b(?:def|class) (\w+)", line)
            name = m.group(1) if m else None
        elif line.startswith((" ", "-", "+")) and not line.startswith(("---", "+++")):
            if m := _DEF.match(line[1:]):
                name = m.group(1)
            if line[0] in "+-" and name:
                return name
    return name or Path(path).stem


# -- one repository ----------------------------------------------------------------------
@dataclass
class _Task:
    candidate: Candidate
    prepared: PreparedRepo
    spec: EnvSpec
    key: str


@dataclass
class _Group:
    key: str
    spec: EnvSpec
    tasks: list[_Task]
    env: EnvImage | None = None
    repairs: list[EnvSpec] = field(default_factory=list)  # specs that repaired a task of this group


@dataclass
class RepoReport:
    source: str
    repo: str = ""
    records: list[dict] = field(default_factory=list)
    envs: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class _RepoValidator:
    def __init__(self, source: str, cfg: ValidateConfig, envs: ResultStore):
        self.source, self.cfg, self.env_records = source, cfg, envs
        self.client = docker_client()
        self.llm = cfg.llm()
        self.lock = threading.RLock()
        self.pythons: dict[str, object] = {}
        self.requirements: dict[str, list[str]] = {}
        self.envs: dict[str, EnvImage | EnvFailure] = {}
        self.limits = suite_limits(cfg.test_timeout)

    # environments
    def _python(self, spec: EnvSpec):
        if spec.base not in self.pythons:
            image = ensure_base_image(spec.base, client=self.client, log=lambda m: None)
            # the box: where the project's build code runs when its metadata is not static
            self.pythons[spec.base] = (probe_python(image, self.client), BuildBox(image, client=self.client))
        return self.pythons[spec.base]

    def key(self, prepared: PreparedRepo, spec: EnvSpec) -> str:
        tb = prepared.testbed
        files = sorted(str(p.relative_to(tb)) for p in tb.rglob("*")
                       if p.is_file() and ".git" not in p.parts and _DEP_FILES.match(p.name))
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.encode() + b"\0" + (tb / f).read_bytes() + b"\0")
        cache_key = f"{digest.hexdigest()}:{spec.python}:{sorted(spec.extra_deps)}:{sorted(spec.extras)}"
        with self.lock:
            if cache_key not in self.requirements:
                py, box = self._python(spec)
                self.requirements[cache_key], _ = dependency_requirements(tb, py, spec.extra_deps, log=lambda m: None,
                                                                          box=box, extras=spec.extras)
        return dependency_key(spec, self.requirements[cache_key])

    def ensure_env(self, prepared: PreparedRepo, spec: EnvSpec) -> EnvImage:
        """The environment of `spec` (built at `prepared` if its key is new); EnvFailure when
        the build fails or its test suite shows a broken environment."""
        key = self.key(prepared, spec)
        with self.lock:
            known = self.envs.get(key)
            if isinstance(known, EnvFailure):
                raise known
            if known is not None:
                return known
            try:
                env = self._build(prepared, spec)
            except EnvFailure as f:
                self.envs[key] = f
                raise
            self.envs[key] = env
            return env

    def _build(self, prepared: PreparedRepo, spec: EnvSpec) -> EnvImage:
        return try_environment(prepared, spec, namespace=self.cfg.namespace, client=self.client,
                               test_timeout=self.cfg.test_timeout)

    # tasks
    def validate_task(self, task: _Task, spec: EnvSpec, env: EnvImage) -> dict:
        """One candidate in `env`; EnvFailure when the environment cannot run its tests."""
        c, cfg = task.candidate, self.cfg
        t0 = time.monotonic()
        image = make_task_image(env.image, task.prepared, c.instance_id, namespace=cfg.namespace, client=self.client)
        base = task.prepared.base_commit
        rec: dict = {"image": image, "env_image": env.image}
        with DockerSandbox(image, client=self.client, limits=self.limits) as sb:
            for part, patch in (("test_patch", c.test_patch), ("patch", c.patch)):
                if not apply_patch(sb, patch):
                    return {**rec, "status": "apply_failed", "reason": f"the {part} does not apply to {c.base_commit[:12]}"}
                r = sb.exec(f"git add -A && git {_GIT_ID} commit -q --no-verify --allow-empty -m {part}", timeout=120)
                if not r.ok:
                    return {**rec, "status": "error", "reason": f"could not commit the {part}: {r.output[-200:]}"}
            test_files = set(_patch_paths(c.test_patch))
            try:
                baseline = stable_baseline(sb, spec.test_cmd, log_parser=spec.log_parser, runs=cfg.baseline_runs,
                                           timeout=cfg.test_timeout)
            except SwelegoError as e:
                run = run_tests(sb, spec.test_cmd, timeout=cfg.test_timeout, log_parser=spec.log_parser)
                why = env_problem(run, test_files) or str(e).splitlines()[0]
                raise EnvFailure("tests", f"on the fixed tree: {why}", log_excerpt(run.log)) from None
            broken = sorted(t for t in baseline.failing if "::" not in t and t in test_files)
            if broken:
                run = run_selected(sb, spec.test_cmd, broken, log_parser=spec.log_parser, timeout=cfg.test_timeout)
                raise EnvFailure("tests", f"test module(s) of the task fail to collect: {', '.join(broken[:3])}",
                                 log_excerpt(run.log))
            bug = sb.exec("git diff --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/ HEAD HEAD~1",
                          timeout=120).output
            outcome = validate_patch(sb, bug, baseline, test_cmd=spec.test_cmd, log_parser=spec.log_parser,
                                     covering=None, timeout=cfg.test_timeout)
            rec.update(flaky=baseline.flaky, tests=len(baseline.passing) + len(baseline.failing))
            if outcome.status == "timeout":
                return {**rec, "status": "timeout", "reason": "the unfixed tree's tests timed out"}
            if outcome.status not in ("valid", "invalid"):
                return {**rec, "status": "no_fail_to_pass" if outcome.status == "no_break" else "error",
                        "reason": f"reverting the patch breaks no test that passes with it ({outcome.status})"}
            f2p, p2p = outcome.fail_to_pass, outcome.pass_to_pass
            unstable = self._confirm(sb, bug, f2p, spec)
            f2p = [t for t in f2p if t not in unstable]
            rec["flaky"] = sorted(set(baseline.flaky) | set(unstable))
            if not f2p:
                return {**rec, "status": "no_fail_to_pass", "reason": "every FAIL_TO_PASS test was flaky"}
        statement, origin = c.problem_statement, c.statement_origin
        if c.origin == "commit":  # mined from history: written now that the failing tests are known
            statement, origin = self._statement(c, bug, f2p, outcome.log)
        row = TaskInstance(
            instance_id=c.instance_id, repo=c.repo, base_commit=base, patch=c.patch, test_patch=c.test_patch,
            problem_statement=statement, hints_text=c.hints_text, FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, image=image,
            eval_script=make_eval_script(base_commit=base, test_cmd=spec.test_cmd, test_patch=c.test_patch,
                                          tests=f2p + p2p, log_parser=spec.log_parser),
            log_parser=spec.log_parser, version=task.key[:12], source="real", strategy=c.origin,
            test_cmd=spec.test_cmd, **({"created_at": c.created_at} if c.created_at else {}),
            metadata={"upstream_commit": c.base_commit, "source": c.source, "ref": c.ref, "issues": c.issues,
                      "env_image": env.image, "env_key": task.key, "statement": origin, "flaky": rec["flaky"],
                      **{k: v for k, v in c.metadata.items() if k in ("url", "title", "commit_message")}})
        if cfg.verify:
            with DockerSandbox(image, client=self.client, limits=self.limits) as sb:
                gold = run_eval(sb, row, c.patch, timeout=cfg.test_timeout)
                empty = run_eval(sb, row, "", timeout=cfg.test_timeout)
            if not gold.resolved or empty.resolved:
                return {**rec, "status": "grading_mismatch",
                        "reason": f"swebench grading: gold {gold.status}, empty patch {empty.status}"}
        return {**rec, "status": "kept", "fail_to_pass": len(f2p), "pass_to_pass": len(p2p),
                "seconds": round(time.monotonic() - t0, 2), "row": row.to_row()}

    def _confirm(self, sb: DockerSandbox, bug: str, f2p: list[str], spec: EnvSpec) -> list[str]:
        """FAIL_TO_PASS tests that pass in any of `confirm_runs` more runs of the unfixed tree."""
        unstable: set[str] = set()
        for _ in range(self.cfg.confirm_runs):
            sb.reset("git")
            if not apply_patch(sb, bug):
                break
            run = run_selected(sb, spec.test_cmd, f2p, log_parser=spec.log_parser, timeout=self.cfg.test_timeout)
            unstable |= set(f2p) - set(broken_tests(f2p, run))
        sb.reset("git")
        return sorted(unstable)

    def _statement(self, c: Candidate, bug: str, f2p: list[str], log: str) -> tuple[str, str]:
        return commit_statement(c, bug_patch=bug, failing_tests=f2p, test_log=log, llm=self.llm)

    def run_task(self, task: _Task, group: _Group) -> dict:
        try:
            return self.validate_task(task, group.spec, group.env)
        except EnvFailure as failure:
            first = failure
        with self.lock:
            known = list(group.repairs)

        def attempt(spec: EnvSpec) -> dict:
            return self.validate_task(task, spec, self.ensure_env(task.prepared, spec))

        result, spec, attempts = repair_loop(
            group.spec, attempt, llm=self.llm, max_attempts=self.cfg.repair_attempts, known=known, failed=first,
            context=repo_context(task.prepared.testbed), tree=task.prepared.testbed)
        log = [a.to_json() for a in attempts]
        self.env_records.put(f"{group.key}:{task.candidate.instance_id}", {
            "level": "task", "repo": task.candidate.repo, "ok": result is not None, "inferred": group.spec.to_json(),
            "spec": spec.to_json(), "attempts": log, "built_at": task.candidate.instance_id})
        if result is None:
            return {"status": "env_broken", "reason": failure_reason(attempts), "repair": log}
        with self.lock:
            if spec not in group.repairs:
                group.repairs.append(spec)
        return {**result, "repair": log, "spec": spec.to_json()}


def commit_statement(c: Candidate, *, bug_patch: str, failing_tests: list[str], test_log: str,
                     llm=None) -> tuple[str, str]:
    """(statement, origin) of a candidate mined from git history, written the way synthetic
    tasks get theirs once validation knows the failing tests: its issue text ("issue"), else
    the LLM's report from the reverted diff and the failing output ("llm"), else a template of
    the failing assertions ("template"); each must pass the leak check (no line of the fix or
    of the hidden test patch, no FAIL_TO_PASS name, no diff syntax). The commit message is
    never used: it describes the fix. (Candidates mined before the message was kept apart carry
    it as their statement, with origin `commit` or `llm`; that text is dropped too.)"""
    from data_gen.issue_text import write_problem_statement

    path = next(iter(_patch_paths(c.patch)), "")
    return write_problem_statement(client=llm, path=path, function=_function_of(c.patch, path),
                                   bug_patch=bug_patch, fix_patch=c.patch, failing_tests=failing_tests,
                                   test_log=test_log, test_patch=c.test_patch,
                                   issue=c.problem_statement if c.statement_origin == "issue" else "")


def _patch_paths(patch: str) -> list[str]:
    from swelego.harness import patch_files

    return patch_files(patch)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "repo"


def _group_by_environment(todo: list[Candidate], repo_dir: Path, work: Path, name: str, v: _RepoValidator,
                          cfg: ValidateConfig, put: Callable[[Candidate, dict], None]) -> dict[str, _Group]:
    """Each candidate's tree at its base commit, grouped by the environment it needs."""
    groups: dict[str, _Group] = {}
    for c in todo:
        if subprocess.run(["git", "-C", str(repo_dir), "cat-file", "-e", f"{c.base_commit}^{{commit}}"],
                          capture_output=True).returncode != 0:
            subprocess.run(["git", "-C", str(repo_dir), "fetch", "-q", "origin", c.base_commit],
                           capture_output=True)
        try:
            prepared = task_testbed(repo_dir, c.base_commit, work / c.instance_id, name)
        except SwelegoError as e:
            put(c, {"status": "missing_commit", "reason": str(e).splitlines()[0][:300]})
            continue
        spec = infer_env(prepared.testbed)
        if cfg.env:
            spec = EnvOverrides.from_mapping(cfg.env).apply(spec)
        try:
            key = v.key(prepared, spec)
        except SwelegoError as e:
            put(c, {"status": "env_failed", "reason": str(e).splitlines()[0][:300]})
            continue
        groups.setdefault(key, _Group(key, spec, [])).tasks.append(_Task(c, prepared, spec, key))
    return groups


def _validate_group(group: _Group, v: _RepoValidator, cfg: ValidateConfig, repo: str, envs: ResultStore,
                    work: Path, put: Callable[[Candidate, dict], None]) -> None:
    """One environment (built or repaired once) for the group, then its candidates in parallel."""
    group.tasks.sort(key=lambda t: t.candidate.created_at)
    rep = group.tasks[0]
    env, spec, attempts = repair_loop(group.spec, lambda s: v.ensure_env(rep.prepared, s),
                                      llm=v.llm, max_attempts=cfg.repair_attempts,
                                      context=repo_context(rep.prepared.testbed), tree=rep.prepared.testbed)
    env_rec = {"level": "group", "repo": repo, "ok": env is not None, "image": env.image if env else "",
               "inferred": group.spec.to_json(), "spec": spec.to_json(), "tasks": len(group.tasks),
               "attempts": [a.to_json() for a in attempts], "built_at": rep.candidate.instance_id}
    envs.put(group.key, env_rec)
    if env is None:
        for t in group.tasks:
            put(t.candidate, {"status": "env_failed", "reason": failure_reason(attempts), "env_key": group.key})
        return
    group.env, group.spec = env, spec

    def one(t: _Task) -> None:
        try:
            rec = v.run_task(t, group)
        except Exception as e:  # noqa: BLE001 - one broken candidate must not stop the rest
            rec = {"status": "error", "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        put(t.candidate, {"env_key": group.key, **rec})
        shutil.rmtree(work / t.candidate.instance_id, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as ex:
        list(ex.map(one, group.tasks))


def validate_source(item: tuple[str, list[dict]], cfg: ValidateConfig,
                    progress: Callable[[str, int], None] | None = None) -> RepoReport:
    """Validate the candidates of one source repository (run_tasks calls this per source)."""
    source, cand_dicts = item
    t0 = time.monotonic()
    cands = [Candidate.from_json(d) for d in cand_dicts]
    report = RepoReport(source, cands[0].repo if cands else "")
    out = Path(cfg.out)
    tag = f"{_slug(report.repo.replace('/', '__'))}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"
    records = ResultStore(out / "records" / f"{tag}.jsonl")
    envs = ResultStore(out / "envs" / f"{tag}.jsonl")

    def put(c: Candidate, rec: dict) -> None:
        records.put(c.instance_id, {"instance_id": c.instance_id, "repo": c.repo, **rec})
        if progress:
            progress(c.instance_id, 1)

    try:
        todo = [c for c in cands if not records.has(c.instance_id)]
        for c in cands:
            if records.has(c.instance_id) and progress:
                progress(c.instance_id, 1)
        if not todo:
            return report
        try:
            repo_dir = local_repository(source)[0]
        except SwelegoError as e:
            for c in todo:
                put(c, {"status": "source_error", "reason": str(e).splitlines()[0][:300]})
            return report
        v = _RepoValidator(source, cfg, envs)
        work = Path(tempfile.mkdtemp(prefix="swelego-real-"))
        try:
            name = _slug(report.repo.rsplit("/", 1)[-1]).lower()
            for group in _group_by_environment(todo, repo_dir, work, name, v, cfg, put).values():
                _validate_group(group, v, cfg, report.repo, envs, work, put)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        report.records = [rec for _k, rec in records]
        report.envs = [rec for _k, rec in envs]
        records.close()
        envs.close()
        report.seconds = time.monotonic() - t0
    return report


# -- the command ------------------------------------------------------------------------------
def collect_rows(out: Path) -> list[TaskInstance]:
    rows = []
    for f in sorted((Path(out) / "records").glob("*.jsonl")):
        with ResultStore(f) as store:
            rows += [TaskInstance.from_row(rec["row"]) for _k, rec in store if rec.get("status") == "kept"]
    return sorted(rows, key=lambda t: t.instance_id)


def funnel(records: list[dict]) -> dict[str, int]:
    stages = {
        "candidates": lambda s: True,
        "env_ok": lambda s: s not in ("contaminated", "source_error", "missing_commit", "env_failed"),
        "applies": lambda s: s in ("env_broken", "no_fail_to_pass", "timeout", "grading_mismatch", "kept", "error"),
        "fail_to_pass": lambda s: s in ("grading_mismatch", "kept"),
        "kept": lambda s: s == "kept",
    }
    return {stage: sum(1 for r in records if test(r["status"])) for stage, test in stages.items()}


def env_stats(envs: list[dict]) -> dict:
    """Environment-build success over the dependency groups tried (group level), and the
    repairs single tasks needed when their own tests could not run in the group's environment."""
    groups = [e for e in envs if e.get("level", "group") == "group"]
    tasks = [e for e in envs if e.get("level") == "task"]
    ok = sum(e["ok"] for e in groups)
    return {"tried": len(groups), "built": ok, "built_after_repair": sum(1 for e in groups if e["ok"] and len(e["attempts"]) > 1),
            "failed": len(groups) - ok, "success_rate": round(ok / len(groups), 3) if groups else None,
            "task_repairs": len(tasks), "task_repairs_ok": sum(e["ok"] for e in tasks)}


def validate(candidates: str | Path | list[Candidate], out: str | Path, *,
             progress: Callable[[str, int], None] | None = None, log: Callable[[str], None] = lambda m: None,
             bad_rows: list[str] | tuple[str, ...] = (), **options) -> dict:
    """Validate `candidates` (a candidates.jsonl, a mining output directory, or Candidates) into
    `out`. `options` are ValidateConfig fields. Writes out/dataset, out/tasks.jsonl and
    out/summary.json (an empty dataset when no candidate is left); returns the summary. One
    failing candidate or repository never stops the rest, nor does a malformed input line: it
    is logged (`file:N: why`), skipped and listed in the summary's `bad_rows`, with `bad_rows`
    the caller found when it read the candidates itself."""
    from swelego.executor import run_tasks
    from swelego.schema import save_dataset

    cfg = ValidateConfig(out=str(out), **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bad_rows = list(bad_rows)
    if isinstance(candidates, list):
        cands = candidates
    else:
        found: list[str] = []
        cands = load_candidates(candidates, problems=found)
        for line in found:
            log(line)
        bad_rows += found
    if cfg.max_tasks is not None:
        cands = cands[: cfg.max_tasks]
    decon = Decontaminator(cfg.swebench_datasets, allow=cfg.allow_contaminated)
    by_source: dict[str, list[dict]] = {}
    contaminated = []
    for c in cands:
        why = decon.repo_reason(c.repo) or decon.patch_reason(c.patch, c.test_patch)
        if why:
            contaminated.append({"instance_id": c.instance_id, "repo": c.repo, "status": "contaminated", "reason": why})
            if progress:
                progress(c.instance_id, 1)
        else:
            by_source.setdefault(c.source, []).append(c.to_json())
    reports, errors = [], {}
    work = partial(validate_source, cfg=cfg, progress=progress if cfg.executor == "local" else None)
    for (source, _), result in run_tasks(work, list(by_source.items()), executor=cfg.executor,
                                         ray_address=cfg.ray_address):
        if isinstance(result, Exception):
            msg = str(result) if isinstance(result, SwelegoError) else f"{type(result).__name__}: {result}"
            errors[source] = msg.splitlines()[0][:300]
            log(f"✗ {source}: {errors[source]}")
        else:
            reports.append(result)
    import datasets

    datasets.disable_progress_bars()
    rows = collect_rows(out)
    save_dataset(rows, out)
    records = contaminated + [r for rep in reports for r in rep.records]
    status_counts = {s: sum(1 for r in records if r["status"] == s) for s in STATUSES}
    summary = {"funnel": funnel(records), "statuses": status_counts,
               "envs": env_stats([e for rep in reports for e in rep.envs]),
               "repos": [{"source": rep.source, "repo": rep.repo, "seconds": round(rep.seconds, 1),
                          "records": len(rep.records)} for rep in reports],
               "failures": {r["instance_id"]: f"contaminated: {r['reason']}" for r in contaminated},
               "errors": errors, "kept_rows": len(rows), "bad_rows": bad_rows}
    for rep in reports:
        for r in rep.records:
            if r["status"] != "kept":
                summary["failures"][r["instance_id"]] = f"{r['status']}: {r.get('reason', '')}"
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
