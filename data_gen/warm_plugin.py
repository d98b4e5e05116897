"""The warm test runner's pytest plugin. It runs inside a validation sandbox, never on the host:
data_gen.warm writes this file into the container and starts the repository's own test command
with `-p swelego_warm`, so rootdir, ini files, addopts, conftest files and plugins are the ones a
normal run uses.

The process collects the suite once and then serves requests instead of running it. It never
runs a test itself; each request is served by a forked child, so the parent stays exactly the
clean tree's imported and collected state. A child:

1. hot-patches the candidate into its copy of that state: every live function object whose code
   came from a changed file gets the code object of the same definition compiled from the file's
   new contents (the definition is found by code equality with the clean file's compilation, so
   a function whose code the map cannot place makes the request `unpatchable`; the caller then
   uses a fresh process). Only candidates whose changes lie in function bodies that did not run at
   import or collection time are sent here, so nothing computed at import depends on the change.
2. runs the requested items with pytest's own run loop, output and terminal summary going to the
   request's log (the caller parses it with the same log parser as any run), each test under a
   faulthandler watchdog (a C thread that needs no GIL) that ends the child when the test runs past
   its budget, printing the same `Timeout (h:mm:ss)!` banner as the watchdog plugin.

The parent kills the child's process group when the request's deadline passes.

Protocol (files under SWELEGO_WARM_DIR): the parent reads `budgets.json` (the budget spec of
data_gen.validate.per_test_budgets: clean durations, factor, constant) and
writes `ready.json` (its pid and the collected node ids, in order) when it is serving. It reads
request names from the FIFO `in`, reads `<name>.json` ({"paths": [...], "tests": "i,j,..." (indices
into the node ids) | null for all, "default_budget": s, "deadline": s}), writes `<name>.log` and
`<name>.res.json`, then writes one line into the FIFO `<name>.out` if someone is reading it.
"""

from __future__ import annotations

import faulthandler
import functools
import gc
import json
import linecache
import os
import signal
import sys
import time
import types

import pytest

_DIR = os.environ.get("SWELEGO_WARM_DIR", "/tmp/swelego-warm")
_child = {"spec": {}, "default": 0.0, "fd": 2}


def _atomic_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def _walk(code: types.CodeType, prefix: str = "") -> list[tuple[str, types.CodeType]]:
    """Every code object nested in `code`, depth first, with a dotted path of names."""
    out = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            name = f"{prefix}.{const.co_name}" if prefix else const.co_name
            out.append((name, const))
            out.extend(_walk(const, name))
    return out


class _Index:
    """The clean state: source files of the modules loaded from under the rootdir, and the live
    function objects per code filename (the parent creates no functions after collection)."""

    def __init__(self, rootdir: str) -> None:
        self.functions: dict[str, list[types.FunctionType]] = {}
        for obj in gc.get_objects():
            if type(obj) is types.FunctionType:
                self.functions.setdefault(obj.__code__.co_filename, []).append(obj)
        self.by_real: dict[str, list[str]] = {}
        for fname in self.functions:
            real = os.path.realpath(fname)
            if real.startswith(rootdir + os.sep):
                self.by_real.setdefault(real, []).append(fname)
        self.clean: dict[str, bytes] = {}
        for fnames in self.by_real.values():
            for fname in fnames:
                try:
                    with open(fname, "rb") as f:
                        self.clean[fname] = f.read()
                except OSError:
                    pass


def _hot_patch(index: _Index, paths: list[str]) -> str | None:
    """Give every live function of the changed files its new code. None, or why it cannot."""
    for path in paths:
        real = os.path.realpath(path)
        for fname in index.by_real.get(real, ()):
            if fname not in index.clean:
                return f"{path}: the clean source was not readable"
            try:
                with open(fname, "rb") as f:
                    new_src = f.read()
                old = _walk(compile(index.clean[fname], fname, "exec", dont_inherit=True))
                new = _walk(compile(new_src, fname, "exec", dont_inherit=True))
            except (OSError, SyntaxError, ValueError) as e:
                return f"{path}: {type(e).__name__}: {e}"
            if [n for n, _ in old] != [n for n, _ in new]:
                return f"{path}: the definitions changed (names or nesting)"
            swaps = []
            for fn in index.functions.get(fname, ()):
                at = [i for i, (_, c) in enumerate(old) if c == fn.__code__]
                if not at:
                    return f"{path}: {fn.__qualname__} has code the clean file does not compile to"
                swaps.append((fn, new[at[0]][1]))
            for fn, code in swaps:
                try:
                    fn.__code__ = code
                except ValueError as e:  # a different set of closure variables
                    return f"{path}: {fn.__qualname__}: {e}"
    linecache.clearcache()
    return None


def _serve_child(session: pytest.Session, index: _Index, name: str, req: dict) -> None:
    """In the forked child: patch, run the requested items into the request's log, exit."""
    os.setpgid(0, 0)
    with open(os.path.join(_DIR, name + ".child"), "w") as f:  # the caller's handle if the parent dies
        f.write(str(os.getpid()))
    log = os.open(os.path.join(_DIR, name + ".log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    capman = session.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    os.dup2(log, 1)
    os.dup2(log, 2)
    if capman is not None:
        capman.start_global_capturing()
        capman.suspend_global_capture()
    why = _hot_patch(index, req.get("paths") or [])
    if why is not None:
        _atomic_json(os.path.join(_DIR, name + ".unpatchable.json"), {"reason": why})
        os._exit(3)
    wanted = req.get("tests")
    if wanted is not None:  # indices into the collected items, as listed in ready.json
        keep = {int(i) for i in wanted.split(",") if i}
        session.items = [it for i, it in enumerate(session.items) if i in keep]
    _child["default"] = float(req.get("default_budget") or 0)
    _child["fd"] = log
    status = 0
    from _pytest.main import pytest_runtestloop as run_loop

    try:
        run_loop(session)
    except (session.Failed, session.Interrupted):
        status = 1
    except BaseException as e:  # noqa: BLE001 - reported in the log like an internal error
        print(f"INTERNALERROR> {type(e).__name__}: {e}", flush=True)
        status = 3
    _disarm()
    session.exitstatus = status or (1 if session.testsfailed else 0)
    try:
        session.config.hook.pytest_sessionfinish(session=session, exitstatus=session.exitstatus)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(session.exitstatus))


def _serve(session: pytest.Session) -> None:
    rootdir = os.path.realpath(str(session.config.rootpath))
    index = _Index(rootdir)
    fifo = os.path.join(_DIR, "in")
    # Opened for reading and writing: the FIFO never reports end-of-file between requests.
    inbox = os.fdopen(os.open(fifo, os.O_RDWR), "r")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        with open(os.path.join(_DIR, "budgets.json")) as f:
            _child["spec"] = json.load(f) or {}
    except (OSError, ValueError):
        _child["spec"] = {}
    _atomic_json(os.path.join(_DIR, "ready.json"), {"pid": os.getpid(), "rootdir": rootdir, "files": len(index.clean),
                                                    "nodeids": [it.nodeid for it in session.items]})
    while True:
        name = inbox.readline().strip()
        if not name or name == "quit":
            if name == "quit":
                return
            continue
        base = os.path.join(_DIR, name)
        try:
            with open(base + ".json") as f:
                req = json.load(f)
        except (OSError, ValueError) as e:
            _atomic_json(base + ".res.json", {"status": "error", "reason": f"bad request: {e}"})
            _notify(base)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                _serve_child(session, index, name, req)
            finally:
                os._exit(4)
        deadline = t0 + float(req.get("deadline") or 600)
        killed = False
        while True:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                killed = True
                _kill(pid)
                os.waitpid(pid, 0)
                code = -signal.SIGKILL
                break
            time.sleep(0.002)
        _kill(pid)  # what the tests started and left behind
        seconds = round(time.monotonic() - t0, 4)
        if killed:
            res = {"status": "killed", "seconds": seconds}
        elif os.path.exists(base + ".unpatchable.json"):
            with open(base + ".unpatchable.json") as f:
                res = {"status": "unpatchable", "reason": json.load(f)["reason"], "seconds": seconds}
        else:
            res = {"status": "done", "exit": os.waitstatus_to_exitcode(code) if hasattr(os, "waitstatus_to_exitcode")
                   else code >> 8, "seconds": seconds}
        _atomic_json(base + ".res.json", res)
        _notify(base)


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _notify(base: str) -> None:
    try:
        fd = os.open(base + ".out", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # nobody is waiting (the caller gave up): the result file stays
        return
    try:
        os.write(fd, b"done\n")
    finally:
        os.close(fd)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    if session.config.option.collectonly:
        return None
    _serve(session)
    return True


def _budget(nodeid: str) -> float:
    """Seconds this test may run: factor x its clean duration + constant, or the request's
    default for a test without one. 0: no budget."""
    spec = _child["spec"]
    d = spec.get("durations", {}).get(nodeid) if spec else None
    return spec["factor"] * d + spec["constant"] if d is not None else _child["default"]


# The watchdog stays armed from test to test, as in the fresh runs' watchdog plugin (each arming
# starts a thread, each cancel joins one): a test keeps the armed time when it is no sooner than
# its budget ends and at most _SLACK later, else it is armed for its budget + _LEAD; the clock is
# one that freezegun and time-machine do not freeze.
_SLACK, _LEAD = 0.5, 0.05
_clock = functools.partial(time.clock_gettime, time.CLOCK_MONOTONIC)


def _arm(seconds: float) -> None:
    now = _clock()
    fires = _child.get("fires", 0.0)
    if not now + seconds <= fires <= now + seconds + _SLACK:
        faulthandler.dump_traceback_later(seconds + _LEAD, exit=True, file=_child["fd"])
        _child["fires"] = now + seconds + _LEAD


def _disarm() -> None:
    if _child.get("fires"):
        faulthandler.cancel_dump_traceback_later()
        _child["fires"] = 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    seconds = _budget(item.nodeid)
    if seconds:
        _arm(seconds)
    else:
        _disarm()
    try:
        yield
    finally:
        if nextitem is None:
            _disarm()
