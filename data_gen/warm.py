"""A warm test runner per validation sandbox: one pytest process that collected the clean suite
and serves each candidate from a forked child that hot-patches the changed functions (see
data_gen/warm_plugin.py, which runs inside the container). A candidate then costs its tests'
own run time: no interpreter start-up, no imports, no collection."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from swelego.harness import TEST_LOG_MAX, TestRun, log_id, parse_log
from swelego.sandbox import DockerSandbox

WARM_DIR = "/tmp/swelego-warm"
PLUGIN_SOURCE = Path(__file__).with_name("warm_plugin.py")
_MARK = "__SWELEGO_WARM_LOG__"


class WarmRunner:
    """The warm runner of one sandbox. `run` returns None when the request cannot be served warm
    (the server does not start in this image, or the change cannot be hot-patched): the caller
    then runs the tests in a fresh process, as without a runner.

    `ensure` (re)starts the server, on the clean tree, in whatever container the sandbox has now
    (a `reset("fresh")` replaces it); call it before applying a candidate. Only the host's patch
    application touches the tree; the sandbox's `reset("git")` between candidates cleans it."""

    def __init__(self, sb: DockerSandbox, test_cmd: str, *, log_parser: str, budgets: dict | None = None,
                 start_timeout: float = 600.0) -> None:
        self.sb = sb
        self.budgets = budgets or {}
        self._index: dict[str, int] = {}
        self._by_log_id: dict[str, list[int]] = {}
        self.test_cmd = test_cmd
        self.log_parser = log_parser
        self.start_timeout = start_timeout
        self.failed: str | None = None  # why the server could not start (then never again here)
        self.served = 0
        self.last_reason = ""  # why the last request was not served warm
        self._container: str | None = None
        self._pid: int | None = None
        self._n = 0

    # -- server ---------------------------------------------------------------------------
    def _alive(self) -> bool:
        cid = getattr(self.sb.container, "id", None)
        return self._pid is not None and cid == self._container

    def ensure(self) -> bool:
        """A serving server in the sandbox's current container, started if need be: on the clean
        tree (the sandbox is reset first), since what it imports and reads now is what every
        request's child starts from. Call it before a candidate is applied."""
        if self.failed:
            return False
        if self._alive():
            return True
        self.sb.start()
        self.sb.reset("git")
        d = WARM_DIR
        self.sb.exec(f"rm -rf {d} && mkdir -p {d}", timeout=30)  # nothing a candidate left in it survives
        self.sb.write_file(f"{d}/swelego_warm.py", PLUGIN_SOURCE.read_text())
        self.sb.write_file(f"{d}/budgets.json", json.dumps(self.budgets))
        cmd = f"{self.test_cmd} -p swelego_warm"
        r = self.sb.exec(
            f"rm -f {d}/ready.json {d}/in && mkfifo {d}/in && "
            f"export PYTHONPATH={d}${{PYTHONPATH:+:$PYTHONPATH}} SWELEGO_WARM_DIR={d} && "
            f"(setsid nohup bash -c {shlex.quote(cmd)} > {d}/server.log 2>&1 < /dev/null & echo $!)", timeout=60)
        pid = r.output.strip().splitlines()[-1] if r.ok and r.output.strip() else ""
        if not pid.isdigit():
            self.failed = f"could not start: {r.output.strip()[-200:]}"
            return False
        wait = self.sb.exec(
            f"while [ ! -e {d}/ready.json ]; do kill -0 {pid} 2>/dev/null || exit 1; sleep 0.05; done; "
            "true", timeout=self.start_timeout)
        if not wait.ok:
            tail = self.sb.exec(f"tail -n 5 {d}/server.log", timeout=30).output.strip()
            self.failed = f"did not start serving (exit {wait.exit_code}): {tail[-300:]}"
            self.sb.exec(f"kill -9 -{pid} 2>/dev/null; true", timeout=30)
            return False
        try:
            ready = json.loads(self.sb.read_file(f"{d}/ready.json"))
        except (FileNotFoundError, ValueError):
            ready = {}
        self._index = {nid: i for i, nid in enumerate(ready.get("nodeids", []))}
        self._by_log_id: dict[str, list[int]] = {}
        for nid, i in self._index.items():
            self._by_log_id.setdefault(log_id(nid), []).append(i)
        self._pid = int(pid)
        self._container = getattr(self.sb.container, "id", None)
        return True

    # -- requests -------------------------------------------------------------------------
    def run(self, paths: list[str], tests: list[str] | None, *, deadline: float,
            default_budget: float | None = None) -> TestRun | None:
        """Run `tests` (pytest node ids; None: every collected test) in a child with the
        functions of `paths` (relative to the tree) hot-patched from the files now on disk.
        Each test gets its budget from the budget spec (`budgets`, per_test_budgets; else
        `default_budget`): a test or run past it ends the run with the watchdog banner. `deadline`: seconds for the whole request, after which the
        child is killed. A test id the server did not collect makes the request unservable (a
        test missing from the run would read as broken)."""
        if not self._alive():  # not started (ensure) on the clean tree, or gone: never start one now
            self.last_reason = self.failed or "the warm runner is not serving in this container"
            return None
        sel = None
        if tests is not None:
            idx: set[int] = set()
            for t in tests:
                # An id parametrized by something that changes between runs (the time of day)
                # is matched by what the log parser reports of it, as the baseline is.
                found = [self._index[t]] if t in self._index else self._by_log_id.get(log_id(t))
                if not found:
                    self.last_reason = f"not collected by the warm runner: {t}"
                    return None
                idx.update(found)
            sel = ",".join(map(str, sorted(idx)))
        self._n += 1
        name = f"r{self._n}"
        d = WARM_DIR
        req = json.dumps({"paths": [f"{self.sb.workdir}/{p}" for p in paths], "tests": sel,
                          "default_budget": default_budget or 0, "deadline": deadline})
        t0 = time.perf_counter()
        alive = f"kill -0 {self._pid} 2>/dev/null || exit 98"
        r = self.sb.exec(
            # whatever an earlier candidate left under this request's name goes first
            f"{alive}; rm -f {d}/{name}.*; "
            f"cat > {d}/{name}.json <<'{_MARK}'\n{req}\n{_MARK}\n"
            f"{{ mkfifo {d}/{name}.out && exec 3<>{d}/{name}.out && echo {name} > {d}/in; }} || exit 96; "
            # the server may die mid-request (a candidate can kill its parent): check every 0.2 s;
            # a result counts only from a server still there (the candidate may have written one)
            f"until read -r -t 0.2 _ <&3; do {alive}; done; {alive}; "
            f"cat {d}/{name}.res.json; printf '\\n{_MARK}\\n'; cat {d}/{name}.log 2>/dev/null; rm -f {d}/{name}.*",
            timeout=deadline + 30, max_output=TEST_LOG_MAX)
        seconds = time.perf_counter() - t0
        head, sep, log = r.output.partition(f"\n{_MARK}\n")
        try:
            res = json.loads(head.strip().splitlines()[-1]) if sep else None
        except (ValueError, IndexError):
            res = None
        if res is None:  # the server is gone or hung: start a new one next time
            self.last_reason = f"no answer from the warm runner (exit {r.exit_code})"
            self.sb.exec(f"kill -9 -{self._pid} 2>/dev/null; c=$(cat {d}/{name}.child 2>/dev/null) && "
                         f"kill -9 -$c 2>/dev/null; rm -f {d}/{name}.*; true", timeout=30)
            self._pid = None
            return None
        if res["status"] in ("unpatchable", "error"):
            self.last_reason = res.get("reason", res["status"])
            return None
        self.served += 1
        return TestRun(log=log, exit_code=int(res.get("exit", -9)), timed_out=res["status"] == "killed",
                       duration=float(res.get("seconds", seconds)), status=parse_log(log, self.log_parser))
