"""Run tests in a sandbox and grade them with swebench's own parsers and grading.

- `run_tests`: run a test command, parse the log with a swebench parser.
- `make_eval_script`: the row's `eval_script`, in the shape swebench's harness runs.
- `run_eval` / `validate_task`: apply a patch, run the eval script, grade like swebench
  (`get_logs_eval` → `get_eval_tests_report` → `get_resolution_status`), which also
  cross-checks the test command's exit code against the parsed statuses.
- `evaluate_official`: hand rows and predictions to `swebench.harness.run_evaluation`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from swelego.errors import SwelegoError
from swelego.sandbox.base import Sandbox
from swelego.sandbox.gitsanitize import SAFE_GIT_SH
from swelego.schema import TaskInstance, save_jsonl

# Test logs are kept whole (up to this many bytes): a capped log keeps its head and tail, and a
# large suite's summary lines in the middle would vanish, i.e. tests would seem to break.
TEST_LOG_MAX = 64 * 1024 * 1024
START = ">>>>> Start Test Output"
END = ">>>>> End Test Output"
# Where our grader and swebench's harness leave the patch they applied (the eval script reads them).
PATCH_FILES = ("/tmp/swelego.patch", "/tmp/patch.diff")
# swebench's markers for an invalid run: any of them in the log makes the grade an error.
RESET_FAILED = ">>>>> Reset Failed"
APPLY_FAILED = ">>>>> Patch Apply Failed"
# Heredoc delimiter for patches inside eval scripts; cannot occur in a unified diff line.
_EOF = "EOF_SWELEGO_7f3a9c"
PASSED_STATES = ("PASSED", "XFAIL")


def parse_log(log: str, log_parser: str = "parse_log_pytest") -> dict[str, str]:
    from swebench.harness.log_parsers import PARSER_REGISTRY

    try:
        parser = PARSER_REGISTRY[log_parser]
    except KeyError:
        raise SwelegoError(f"unknown swebench log parser {log_parser!r}") from None
    return parser(log, None)


@dataclass
class TestRun:
    log: str
    exit_code: int
    timed_out: bool
    duration: float
    status: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(s.lower() for s in self.status.values())
        return {k: c.get(k, 0) for k in ("passed", "failed", "skipped", "error", "xfail")}

    @property
    def consistent(self) -> bool:
        """False when the exit code contradicts the parsed log (nothing failed, yet exit != 0)."""
        failed = any(s in ("FAILED", "ERROR") for s in self.status.values())
        return self.timed_out or self.exit_code == 0 or failed

    @property
    def passed(self) -> set[str]:
        return {t for t, s in self.status.items() if s in PASSED_STATES}


def run_tests(sandbox: Sandbox, test_cmd: str, *, timeout: float = 1800,
              log_parser: str = "parse_log_pytest") -> TestRun:
    r = sandbox.exec(f"{test_cmd} 2>&1", timeout=timeout, max_output=TEST_LOG_MAX)
    return TestRun(log=r.output, exit_code=r.exit_code, timed_out=r.timed_out, duration=r.duration,
                   status=parse_log(r.output, log_parser))


def log_id(node_id: str) -> str:
    """A pytest node id as swebench's log parsers report it: up to its first whitespace."""
    parts = node_id.split()
    return parts[0] if parts else node_id


def patch_files(patch: str) -> list[str]:
    """Paths a unified diff touches (new and old names), from `diff --git` headers and, for
    plain unified diffs (which `patch` applies), from `---` / `+++` lines."""
    out: list[str] = []

    def add(p: str) -> None:
        p = p.strip().split("\t", 1)[0]
        if p.startswith('"') and p.endswith('"'):
            p = p[1:-1]
        p = p[2:] if p[:2] in ("a/", "b/") else p
        if p and p != "/dev/null" and p not in out:
            out.append(p)

    for line in patch.splitlines():
        if line.startswith("diff --git "):
            for p in line.split()[2:4]:
                add(p)
        elif line.startswith(("--- ", "+++ ")):
            add(line[4:])
        elif line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
            add(line.split(" ", 2)[2])
    return out


def added_lines(patch: str) -> list[str]:
    """The lines a unified diff adds, without the leading '+' and stripped."""
    return [ln[1:].strip() for ln in patch.splitlines() if ln.startswith("+") and not ln.startswith("+++")]


# -- test infrastructure ---------------------------------------------------------------
# What decides a pytest run's outcome besides the code under test, from pytest's own
# mechanics: test modules (collection), conftest.py at any depth (collected from the rootdir
# down to every test directory: hooks, fixtures, `pytest_plugins`), ini files at any depth
# (rootdir/inifile discovery walks up from the arguments: addopts, `-p` plugins,
# python_files), modules that shadow the runner or run at interpreter start
# (sitecustomize, .pth, a local pytest.py or pluggy), in-tree distribution metadata
# (pytest11 entry points are loaded from every distribution on sys.path) and bytecode
# (pytest's rewritten-assertion caches). The grading restores all of it to the base commit
# and removes what the base commit does not have, so a patch can only change code.
TEST_INFRA_FILES = (
    "conftest.py", "test_*.py", "*_test.py", "tests.py",
    "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "noxfile.py",
    "sitecustomize.py", "usercustomize.py", "*.pth", "pytest.py", "py.py", "xdist.py", "execnet.py", "*.pyc",
)
TEST_INFRA_DIRS = ("test", "tests", "__pycache__", "_pytest", "pluggy", "xdist", "execnet", "*.egg-info",
                   "*.dist-info")


def is_test_infra(path: str) -> bool:
    """True for a path the grading restores (see TEST_INFRA_FILES / TEST_INFRA_DIRS)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return False
    if any(fnmatch.fnmatchcase(parts[-1], pat) for pat in TEST_INFRA_FILES):
        return True
    return any(fnmatch.fnmatchcase(part, pat) for part in parts for pat in TEST_INFRA_DIRS)


def test_infra_pathspecs(extra: Iterable[str] = ()) -> list[str]:
    """git pathspecs that match exactly what `is_test_infra` accepts, plus literal `extra`."""
    specs = [f":(glob)**/{pat}" for pat in TEST_INFRA_FILES]
    for pat in TEST_INFRA_DIRS:
        specs += [f":(glob)**/{pat}", f":(glob)**/{pat}/**"]
    return specs + [f":(literal){p}" for p in dict.fromkeys(extra) if p]


def test_ids_files(tests: Iterable[str]) -> list[str]:
    """The files behind pytest node ids (`tests/test_x.py::test_y[...]` -> `tests/test_x.py`)."""
    out = []
    for t in tests:
        f = t.split("::", 1)[0]
        if f.endswith(".py") and f not in out:
            out.append(f)
    return out


def _restore_block(base_commit: str, specs: list[str]) -> str:
    """Shell that puts the test infrastructure back as the base commit has it.

    Git runs through the sanitizer's safe wrapper (`g`: hooks, fsmonitor and replace objects
    off, no inherited GIT_* redirection) and with the repository's configuration rewritten
    as `git init` writes it: a patch applied by the `patch` fallback could otherwise reach
    `.git/` and have git run its code. A temporary index
    of the base tree lists what the base has (restored with checkout-index) and, through
    `ls-files --others`, what it does not have (removed, ignored files included)."""
    quoted = " ".join(shlex.quote(s) for s in specs)
    b = shlex.quote(base_commit)
    patches = " ".join(PATCH_FILES)
    return SAFE_GIT_SH.strip("\n") + f"""
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
SWELEGO_INFRA=({quoted})
swelego_restore() {{
  # A patch that names a path in .git or outside the tree is no fix (the `patch` fallback of
  # swebench's harness writes .git/config, and git then runs what it says): an invalid run.
  local p; for p in {patches}; do
    [ -f "$p" ] || continue
    grep -qaE '^(diff --git|---|\\+\\+\\+|rename to|copy to) (.*/)?\\.git(/| |$)' "$p" && return 1
    grep -aE '^(---|\\+\\+\\+) (/|([ab]/)?\\.\\./)' "$p" | grep -qvE '^(---|\\+\\+\\+) /dev/null' && return 1
  done
  printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfilemode = true\\n\\tbare = false\\n\\tlogallrefupdates = true\\n' > .git/config || return 1
  local idx; idx=$(mktemp) || return 1
  rm -f "$idx"
  GIT_INDEX_FILE="$idx" g read-tree {b} || return 1
  GIT_INDEX_FILE="$idx" g ls-files -z --others -- "${{SWELEGO_INFRA[@]}}" | xargs -0 -r rm -rf -- || return 1
  GIT_INDEX_FILE="$idx" g ls-files -z -- "${{SWELEGO_INFRA[@]}}" \\
    | GIT_INDEX_FILE="$idx" g -c core.autocrlf=false checkout-index -f -z --stdin || return 1
  rm -f "$idx"
}}"""


# The environment an interactive shell of the image sets up (official SWE-bench images activate
# their conda `testbed` env only from ~/.bashrc; swebench runs this script as a plain
# `/bin/bash /eval.sh`, which never reads it). ~/.bashrc is outside the tree: no patch reaches it.
# Only what follows the marker is evaluated: whatever a ~/.bashrc prints is not a command.
_IMAGE_ENV = ("swelego_env=$(cd / && bash -ic 'printf \"\\n%s\\n\" SWELEGO_ENV_BEGIN; export -p' 2>/dev/null </dev/null) "
              "&& eval \"${swelego_env#*SWELEGO_ENV_BEGIN}\" 2>/dev/null; unset swelego_env")

# With pytest-xdist in the image (ours have it), the tests run in one worker process and the
# report is written by the main one, which never imports the code under test: what that code
# prints (past pytest's capture, from atexit, before os._exit) goes to the worker's stderr,
# sent nowhere, and the main process's exit status stays its own, so forged `PASSED` lines with
# an early exit no longer pass the exit-code cross-check. The probe runs outside the tree after
# the restore has removed any local `xdist` the patch could add.
_XDIST = """\
swelego_err=/dev/stdout
if (cd / && "$(command -v python || command -v python3)" -c 'import xdist') >/dev/null 2>&1; then
  export PYTEST_ADDOPTS="-p xdist -n 1 --max-worker-restart=0${PYTEST_ADDOPTS:+ $PYTEST_ADDOPTS}"
  swelego_err=/dev/null
fi"""


def make_eval_script(*, base_commit: str, test_cmd: str, test_patch: str = "",
                     test_files: list[str] | None = None, tests: Iterable[str] = (),
                     log_parser: str = "parse_log_pytest", workdir: str = "/testbed") -> str:
    """An eval.sh in swebench's shape that a patch cannot game.

    Before the tests run, every piece of test infrastructure (`is_test_infra`, the files
    the test patch touches, the files behind `tests` = FAIL_TO_PASS + PASS_TO_PASS ids) is
    restored to `base_commit` and what the base does not have is removed; then the test
    patch is applied and the tests run with the base configuration. Output is one stream
    (stderr joined at the source, no `set -x` trace) and the markers are echoed, so the
    log reads the same however the harness interleaves streams. For pytest parsers, the
    FAILED / ERROR lines of the run are repeated last: swebench's parser keeps the last
    line of an id, so code under test that prints a forged `PASSED <id>` (from an atexit
    handler, say) cannot overwrite a real failure; where the image has pytest-xdist, the
    tests run in a worker process apart from the reporting one (see _XDIST). swebench
    records the test command's exit status from the line before the end marker.
    """
    files = list(test_files) if test_files is not None else patch_files(test_patch)
    files += [f for f in test_ids_files(tests) if f not in files]
    log = "/tmp/swelego-test-output.log"
    lines = ["#!/bin/bash", "set -uxo pipefail", "set +x", "exec 2>&1", _IMAGE_ENV, f"cd {shlex.quote(workdir)}",
             _restore_block(base_commit, test_infra_pathspecs(files)),
             f"swelego_restore || echo '{RESET_FAILED}'"]
    if test_patch.strip():
        lines += [f"git apply --verbose - <<'{_EOF}' || echo '{APPLY_FAILED}'", test_patch.rstrip("\n"), _EOF]
    pytest = log_parser.startswith("parse_log_pytest")
    if pytest:
        lines.append(_XDIST)
    lines += [f"echo '{START}'", f"( {test_cmd} ) 2>{'$swelego_err' if pytest else '&1'} | tee {log}",
              "swelego_rc=${PIPESTATUS[0]}"]
    if pytest:
        lines.append(f"grep -aE '^(FAILED|ERROR) ' {log}")
    lines += ["(exit $swelego_rc)", f"echo '{END}'", "swelego_restore"]
    return "\n".join(lines) + "\n"


@dataclass
class Grade:
    resolved: bool
    status: str  # swebench ResolvedStatus value, or "ERROR"
    status_map: dict[str, str]
    report: dict
    log: str
    patch_applied: bool = True


def unsafe_patch_paths(patch: str) -> list[str]:
    """Paths of `patch` outside the working tree or inside `.git` (no fix needs them; `patch`
    would write them and git would then run what they say)."""
    bad = []
    for p in patch_files(patch):
        parts = p.split("/")
        if p.startswith("/") or ".." in parts or any(x.lower() == ".git" for x in parts):
            bad.append(p)
    return bad


def apply_patch(sandbox: Sandbox, patch: str, timeout: float = 120) -> bool:
    """Apply `patch` in /testbed the way swebench does (git apply, then fuzzier fallbacks)."""
    if not patch.strip():
        return True
    if unsafe_patch_paths(patch):
        return False
    sandbox.write_file(PATCH_FILES[0], patch if patch.endswith("\n") else patch + "\n")
    for cmd in ("git apply --verbose", "git apply --verbose --3way",
                "patch --batch --forward --fuzz=5 -p1 -i"):
        if sandbox.exec(f"{cmd} {PATCH_FILES[0]}", timeout=timeout).exit_code == 0:
            return True
        sandbox.exec("git checkout -q -- . && git clean -qfd", timeout=timeout)
    return False


def run_eval(sandbox: Sandbox, task: TaskInstance, patch: str, *, timeout: float = 1800) -> Grade:
    """Reset the sandbox, apply `patch`, run the row's eval_script and grade it with swebench."""
    from swebench.harness.constants import EvalType
    from swebench.harness.grading import get_eval_tests_report, get_logs_eval, get_resolution_status
    from swebench.harness.utils import make_test_spec

    sandbox.reset("git")
    if not apply_patch(sandbox, patch):
        return Grade(False, "ERROR", {}, {}, "patch did not apply", patch_applied=False)
    spec = make_test_spec(task.to_row())
    sandbox.write_file("/eval.sh", spec.eval_script)
    r = sandbox.exec("/bin/bash /eval.sh 2>&1", timeout=timeout, max_output=TEST_LOG_MAX)
    log = r.output
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
        f.write(log)
        log_path = f.name
    try:
        status_map, ok = get_logs_eval(spec, log_path)
    finally:
        os.unlink(log_path)
    if r.timed_out or not ok:
        return Grade(False, "ERROR", status_map, {}, log)
    report = get_eval_tests_report(status_map, {"FAIL_TO_PASS": task.FAIL_TO_PASS, "PASS_TO_PASS": task.PASS_TO_PASS},
                                   eval_type=EvalType(task.eval_type))
    status = get_resolution_status(report)
    return Grade(status == "RESOLVED_FULL", status, status_map, report, log)


def classify_tests(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """FAIL_TO_PASS: not passing before, passing after. PASS_TO_PASS: passing both times."""
    ok_before = {t for t, s in before.items() if s in PASSED_STATES}
    ok_after = {t for t, s in after.items() if s in PASSED_STATES}
    return sorted(ok_after - ok_before), sorted(ok_after & ok_before)


def validate_task(sandbox: Sandbox, task: TaskInstance, *, timeout: float = 1800) -> TaskInstance:
    """Fill FAIL_TO_PASS / PASS_TO_PASS by running the eval script without and with the gold
    patch; the test patch is applied both times (by the eval script)."""
    spec_task = task.model_copy(update={"FAIL_TO_PASS": [], "PASS_TO_PASS": []})
    before = run_eval(sandbox, spec_task, "", timeout=timeout)
    after = run_eval(sandbox, spec_task, task.patch, timeout=timeout)
    if not after.patch_applied:
        raise SwelegoError(f"{task.instance_id}: gold patch does not apply")
    if not after.status_map:
        raise SwelegoError(f"{task.instance_id}: no test results after the gold patch\n{after.log[-800:]}")
    f2p, p2p = classify_tests(before.status_map, after.status_map)
    sandbox.reset("git")
    if not f2p:
        raise SwelegoError(f"{task.instance_id}: the gold patch makes no test pass that failed before (no FAIL_TO_PASS)")
    # The eval script now also restores the files behind the graded tests.
    script = make_eval_script(base_commit=task.base_commit, test_cmd=task.test_cmd, test_patch=task.test_patch,
                              tests=f2p + p2p, log_parser=task.log_parser) if task.test_cmd else task.eval_script
    return task.model_copy(update={"FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p, "eval_script": script})


def new_task(env, *, instance_id: str, patch: str, test_patch: str = "", problem_statement: str = "",
             test_files: list[str] | None = None, **fields) -> TaskInstance:
    """A row for the environment image `env` (an EnvImage) with its eval_script generated."""
    script = make_eval_script(base_commit=env.base_commit, test_cmd=env.test_cmd, test_patch=test_patch,
                              test_files=test_files, log_parser=env.log_parser)
    return TaskInstance(instance_id=instance_id, repo=env.repo, base_commit=env.base_commit, patch=patch,
                        test_patch=test_patch, problem_statement=problem_statement, image=env.image,
                        eval_script=script, log_parser=env.log_parser, version=env.version,
                        test_cmd=env.test_cmd, **fields)


@dataclass
class OfficialResult:
    reports: dict[str, dict]  # instance_id -> swebench's per-instance report entry
    summary: dict  # swebench's run report (resolved_ids, empty_patch_ids, error_ids, ...)

    def resolved(self, instance_id: str) -> bool:
        return instance_id in self.summary.get("resolved_ids", [])


def evaluate_official(tasks: list[TaskInstance], predictions: list[dict], *, run_id: str, workdir: Path,
                      max_workers: int = 1, timeout: int = 1800, model: str = "swelego") -> OfficialResult:
    """Grade `predictions` with the unmodified `swebench.harness.run_evaluation`.

    Runs swebench as a subprocess in `workdir` (it writes `logs/` relative to the working
    directory, and skips instances that already have a report there).
    """
    workdir = Path(workdir).resolve()  # the subprocess runs inside it: relative paths would break
    workdir.mkdir(parents=True, exist_ok=True)
    predictions = [{"model_name_or_path": model, **p} for p in predictions]
    models = {p["model_name_or_path"] for p in predictions}
    if len(models) != 1:
        raise SwelegoError(f"one model per evaluation run, got {sorted(models)}")
    model = models.pop()
    dataset = save_jsonl(tasks, workdir / f"{run_id}.dataset.jsonl")
    preds = workdir / f"{run_id}.predictions.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in predictions))
    cmd = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(dataset),
           "--predictions_path", str(preds), "--run_id", run_id, "--max_workers", str(max_workers),
           "--timeout", str(timeout), "--report_dir", str(workdir)]
    for _ in range(3):
        p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
        # swebench lists the engine's images and containers with calls that inspect each one:
        # one that another process removes meanwhile fails the whole run. Finished reports are
        # kept, so the rerun only grades what is left.
        if p.returncode == 0 or not re.search(r"docker\.errors\.(Image)?NotFound", p.stderr + p.stdout):
            break
    (workdir / f"{run_id}.harness.log").write_text(p.stdout + p.stderr)
    summary_path = workdir / f"{model.replace('/', '__')}.{run_id}.json"
    if p.returncode != 0 or not summary_path.exists():
        lines = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
        raise SwelegoError(f"swebench run_evaluation failed (exit {p.returncode}): {lines[-1] if lines else 'no output'}"
                           f" (full log: {workdir / f'{run_id}.harness.log'})")
    reports = {}
    for pred in predictions:
        rep = workdir / "logs" / "run_evaluation" / run_id / model.replace("/", "__") / pred["instance_id"] / "report.json"
        if rep.exists():
            reports.update(json.loads(rep.read_text()))
    return OfficialResult(reports, json.loads(summary_path.read_text()))
