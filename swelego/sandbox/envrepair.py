"""Rules that repair an environment from its build or test log, and the failure taxonomy.

`rule_repair(spec, stage, log, tree)` reads a failing attempt's log and proposes the next
EnvSpec (a missing module → its package, a missing header or compiler → the Debian -dev
package, Python too new → an older base, an unknown pytest option → its plugin), or None when
no rule fits; the repair loop tries rules before an LLM. `classify_failure` names why an
environment failed, in a small fixed set (FAILURE_KINDS), so yields can be compared across
runs and repositories.

The bounded repair loop (`repair_loop`):
An attempt tries one EnvSpec (build the image, run the tests). When it fails, the next spec
comes from the log by rules (swelego.sandbox.envrepair: missing module → package, missing header
→ -dev package, Python too new → older base, ...), then from specs that already repaired this
repository, then from an OpenAI-compatible model
that sees the failing spec, the stage, the log excerpt and the repository's build files, and
answers with a corrected spec as JSON. Every attempt — including an unusable reply — is
recorded with its spec, outcome, error, log tail, failure kind (envrepair.FAILURE_KINDS) and the
model's reply, and the number of attempts is capped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from swelego.errors import SwelegoError
from swelego.sandbox.envspec import (
    C_TOOLCHAIN,
    CXX_TOOLCHAIN,
    HEADER_PACKAGES,
    LIBRARY_PACKAGES,
    PYTEST_FLAGS,
    PYTEST_PLUGINS,
    PYTHONS,
    TEST_FIXTURES,
    TEST_IMPORTS,
    EnvSpec,
    older_python,
    top_level_names,
)

FAILURE_KINDS = ("no_tests", "build_backend_error", "missing_system_library", "missing_python_dependency",
                 "collection_error", "network_at_test_time", "timeout", "other")
# Import names whose distribution is named differently (beyond envspec.TEST_IMPORTS).
IMPORT_DISTS = {
    "PIL": "pillow", "cv2": "opencv-python-headless", "sklearn": "scikit-learn", "bs4": "beautifulsoup4",
    "skimage": "scikit-image", "Crypto": "pycryptodome", "OpenSSL": "pyopenssl", "jwt": "pyjwt", "git": "gitpython",
    "magic": "python-magic", "serial": "pyserial", "usb": "pyusb", "zmq": "pyzmq", "lxml": "lxml",
    "google.protobuf": "protobuf", "markdown": "markdown", "ruamel": "ruamel.yaml", "dns": "dnspython",
    "nacl": "pynacl", "pkg_resources": "setuptools", "setuptools": "setuptools", "Levenshtein": "levenshtein",
    "msgpack": "msgpack", "websocket": "websocket-client", "multipart": "python-multipart", "jose": "python-jose",
    "docx": "python-docx", "slugify": "python-slugify", "fitz": "pymupdf", "win32api": "", "_pytest": "pytest",
}
# Modules removed from the standard library: an import error names a Python that is too new.
REMOVED_IN = {
    "distutils": "3.12", "imp": "3.12", "asynchat": "3.12", "asyncore": "3.12", "smtpd": "3.12",
    "cgi": "3.13", "cgitb": "3.13", "pipes": "3.13", "telnetlib": "3.13", "crypt": "3.13", "nntplib": "3.13",
    "lib2to3": "3.13", "imghdr": "3.13", "sndhdr": "3.13", "uu": "3.13", "xdrlib": "3.13", "audioop": "3.13",
    "chunk": "3.13", "mailcap": "3.13", "msilib": "3.13", "nis": "3.13", "ossaudiodev": "3.13", "spwd": "3.13",
    "sunau": "3.13", "aifc": "3.13",
}
_TOO_NEW = re.compile(
    r"cannot import name '(?:Mapping|MutableMapping|Sequence|Iterable|Callable|OrderedDict)' from 'collections'"
    r"|module 'asyncio' has no attribute 'coroutine'|module 'inspect' has no attribute 'getargspec'"
    r"|longintrepr\.h: No such file|has no member named 'ob_digit'|_PyLong_|PyUnicode_AS_UNICODE|_PyUnicode_Ready"
    r"|requires a different Python|Requires-Python|Py_UNICODE|'PyThreadState' has no member|tp_print"
    r"|has no attribute 'assertEquals'|has no attribute 'assertRegexpMatches'|configparser.SafeConfigParser"
    r"|cannot import name 'formatargspec'|module 'collections' has no attribute|'ast' has no attribute 'Str'")
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_HEADER = re.compile(r"fatal error: ([\w./+-]+\.h(?:pp)?): No such file")
_NO_LIB = re.compile(r"cannot find -l([\w+.-]+)")
_NO_CC = re.compile(r"command '[\w/.-]*gcc' failed|gcc: (?:command )?not found|error: command 'cc' failed"
                    r"|No such file or directory: '(?:x86_64-linux-gnu-)?gcc'|Unknown compiler|unable to execute 'gcc'"
                    r"|CMAKE_C_COMPILER|compiler 'cc'|C compiler cannot create|error: invalid command 'bdist_wheel'")
_NO_CXX = re.compile(r"g\+\+: (?:command )?not found|command '[\w/.-]*g\+\+' failed|CMAKE_CXX_COMPILER|c\+\+: not found")
_UNRECOGNIZED = re.compile(r"error: unrecognized arguments: (.+)")
_OWN_IMPORT = re.compile(r"cannot import name '\w+' from '([\w.]+)' \(unknown location\)")
_FIXTURE = re.compile(r"fixture '(\w+)' not found")
_NETWORK = re.compile(r"Temporary failure in name resolution|Network is unreachable|Name or service not known"
                      r"|getaddrinfo failed|Failed to establish a new connection|nodename nor servname"
                      r"|urlopen error|\[Errno 101\]|\[Errno -3\]|ConnectTimeout|ConnectionRefusedError")
_NO_TESTS = re.compile(r"collected 0 items|no tests ran|no test results|ships no tests")
_OLD_PYTEST = re.compile(r"can not be found in the hookspec|has no attribute 'yield_fixture'|pytest\.warns\(None\)"
                         r"|module 'py' has no attribute|No module named 'py\.|'funcargnames'|PytestRemovedIn8Warning"
                         r"|PytestRemovedIn9Warning|pytest_cmdline_preparse|has no attribute 'getfuncargvalue'")
_CONFTEST = re.compile(r"PluginValidationError|ImportError while loading conftest|while loading conftest")
_COLLECTION = re.compile(r"errors? during collection|ERROR collecting|fail to collect|Interrupted: \d+ error")


def _dist_for(module: str) -> str:
    top = module.split(".")[0]
    if module in IMPORT_DISTS:
        return IMPORT_DISTS[module]
    if top in IMPORT_DISTS:
        return IMPORT_DISTS[top]
    if top in TEST_IMPORTS:
        return TEST_IMPORTS[top]
    return top.replace("_", "-")


def env_problem(run, modules: set[str] = frozenset()) -> str | None:
    """Why a test run shows a broken environment (None when it looks usable): no results,
    nothing passing, or one of `modules` (test files) that cannot even be collected. Other
    modules that fail to import do not condemn the environment: a task whose tests live there
    is repaired on its own."""
    if run.timed_out:
        return "the test suite timed out"
    errors = sorted(t for t, s in run.status.items() if s == "ERROR" and "::" not in t and t in modules)
    if errors:
        return f"{len(errors)} test module(s) fail to collect: {', '.join(errors[:3])}"
    if not run.status:
        return f"no test results in the output (exit code {run.exit_code})"
    if not run.passed:
        return "no test passes"
    return None


def classify_failure(stage: str, message: str, log: str = "") -> str:
    """One of FAILURE_KINDS for an attempt that failed at `stage` (build | install | tests)."""
    text = f"{message}\n{log}"
    if "timed out" in text.lower() or stage == "timeout":
        return "timeout"
    if stage == "tests" and re.search(r"bash: line \d+: +\d+ Killed|^Killed\b", text, re.M):
        return "other"  # the suite was killed (out of memory in the sandbox): no spec change fixes that
    if _HEADER.search(text) or _NO_LIB.search(text) or _NO_CC.search(text) or _NO_CXX.search(text) \
            or "has no package" in text or "pkg-config" in text and "not found" in text:
        return "missing_system_library"
    if stage == "tests" and _NETWORK.search(text):
        return "network_at_test_time"
    if _NO_MODULE.search(text) or "No matching distribution" in text or "has no wheel" in text \
            or "could not fetch wheels" in text or "did not converge" in text:
        return "missing_python_dependency"
    if stage == "tests" and _CONFTEST.search(text):
        return "collection_error"
    if stage == "tests" and _NO_TESTS.search(text):
        return "no_tests"
    if stage == "tests" and (_COLLECTION.search(text) or "unrecognized arguments" in text):
        return "collection_error"
    if stage in ("build", "install"):
        return "build_backend_error"
    return "other"


def rule_repair(spec: EnvSpec, stage: str, log: str, tree: Path | None = None) -> tuple[EnvSpec, str] | None:
    """(next spec, the rule that made it) from a failing attempt's log, or None."""
    d = spec.to_json()
    own = top_level_names(Path(tree)) if tree is not None else set()

    def with_(rule: str, **changes) -> tuple[EnvSpec, str] | None:
        new = {**d, **changes}
        for k in ("extra_deps", "system_packages"):
            new[k] = list(dict.fromkeys(new[k]))
        if {k: new[k] for k in changes} == {k: d[k] for k in changes}:
            return None  # nothing new: the rule does not apply twice
        new["evidence"] = {**d["evidence"], f"repair: {rule}": ", ".join(f"{k}={new[k]}" for k in changes)}
        return EnvSpec.from_json(new), rule

    text = log or ""
    # Python too new: a removed stdlib module or C-API, or a Requires-Python refusal.
    for m in _NO_MODULE.finditer(text):
        top = m.group(1).split(".")[0]
        if top in REMOVED_IN and Version(spec.python) >= Version(REMOVED_IN[top]) and (older := older_python(spec.python)):
            return with_(f"python too new (no {top})", python=older)
    if _TOO_NEW.search(text) and (older := older_python(spec.python)):
        return with_("python too new", python=older)
    # A compiler or header is missing.
    if (m := _HEADER.search(text)) and m.group(1) in ("Python.h", "pyconfig.h"):
        if r := with_("Python headers", system_packages=[*d["system_packages"], *C_TOOLCHAIN]):
            return r
    if (m := _HEADER.search(text)) and (deb := HEADER_PACKAGES.get(m.group(1))):
        if r := with_(f"missing header {m.group(1)}", system_packages=[*d["system_packages"], *C_TOOLCHAIN, deb]):
            return r
    if (m := _NO_LIB.search(text)) and (deb := LIBRARY_PACKAGES.get(m.group(1))):
        if r := with_(f"missing library -l{m.group(1)}", system_packages=[*d["system_packages"], deb]):
            return r
    if _NO_CXX.search(text):
        if r := with_("no C++ compiler", system_packages=[*d["system_packages"], *C_TOOLCHAIN, *CXX_TOOLCHAIN]):
            return r
    if _NO_CC.search(text):
        if r := with_("no C compiler", system_packages=[*d["system_packages"], *C_TOOLCHAIN]):
            return r
    # A Python module is missing: its distribution, unless it is the project's own module
    # (then its compiled part was not built: give it a compiler).
    for m in _NO_MODULE.finditer(text):
        mod = m.group(1)
        top = mod.split(".")[0]
        if top in own or top in ("tests", "test", "conftest"):
            if "." in mod and (r := with_(f"own compiled module {mod} missing",
                                          system_packages=[*d["system_packages"], *C_TOOLCHAIN])):
                return r
            continue
        dist = _dist_for(mod)
        if dist and (r := with_(f"missing module {mod}", extra_deps=[*d["extra_deps"], dist])):
            return r
    if _OLD_PYTEST.search(text) and not any(d.startswith("pytest<") for d in d["extra_deps"]):
        return with_("written for an older pytest", extra_deps=[*d["extra_deps"], "pytest<8"])
    # The project's own module imports wrongly (a namespace-package shadow, a .so beside the
    # sources): run pytest as `python -m pytest`, which puts /testbed first on sys.path.
    for m in _OWN_IMPORT.finditer(text):
        if m.group(1).split(".")[0] in own and not spec.test_cmd.startswith("python -m "):
            return with_(f"own module {m.group(1)} not importable as installed: python -m pytest",
                         test_cmd="python -m " + spec.test_cmd)
    for m in _FIXTURE.finditer(text):
        if (dist := TEST_FIXTURES.get(m.group(1))) and (r := with_(f"fixture {m.group(1)}",
                                                                  extra_deps=[*d["extra_deps"], dist])):
            return r
    if m := _UNRECOGNIZED.search(text):
        flags = [f.split("=")[0] for f in m.group(1).split()]
        plugins = [PYTEST_PLUGINS[f] for f in flags if f in PYTEST_PLUGINS]
        if plugins and (r := with_(f"pytest options {' '.join(flags)}", extra_deps=[*d["extra_deps"], *plugins])):
            return r
        if "-o addopts=" not in spec.test_cmd:
            return with_("pytest options no plugin provides: addopts dropped",
                         test_cmd=f"{spec.test_cmd} -o addopts=''")
    if "\x1b[" in text and re.search(r"\x1b\[[\d;]*m(PASSED|FAILED)", text) and "--color=no" not in spec.test_cmd:
        return with_("coloured output hides the results from the parser", test_cmd=f"{spec.test_cmd} --color=no")
    # Nothing collected: look for tests under any file name, from the root.
    if stage == "tests" and (_NO_TESTS.search(text) or "no test passes" in text) and "python_files" not in spec.test_cmd:
        return with_("no tests collected: every .py under the test directories",
                     test_cmd=f"python -m pytest {PYTEST_FLAGS} -o python_files='test*.py *_test.py tests.py "
                              "*_tests.py check_*.py'")
    return None


# -- the repair loop ---------------------------------------------------------------------
CONTEXT_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "pytest.ini", "requirements.txt")


class EnvFailure(SwelegoError):
    """An environment did not work: `stage` is build | tests | install, `log` an excerpt."""

    def __init__(self, stage: str, message: str, log: str = ""):
        self.stage = stage
        self.message = message
        self.log = log
        super().__init__(f"{stage}: {message}")


@dataclass
class Attempt:
    number: int
    spec: dict
    ok: bool
    stage: str  # ok | build | install | tests | repair (no usable spec came back)
    error: str = ""
    log: str = ""
    source: str = "inferred"  # inferred | rule | known (a spec that repaired another task) | llm
    reply: str = ""  # the model's answer that produced this spec (for a rule: the rule's name)
    seconds: float = 0.0
    kind: str = ""  # why it failed: one of envrepair.FAILURE_KINDS ("" when it worked)

    def __post_init__(self):
        if not self.ok and not self.kind and self.stage != "repair":
            self.kind = classify_failure(self.stage, self.error, self.log)

    def to_json(self) -> dict:
        return asdict(self)


def log_excerpt(log: str, lines: int = 60, chars: int = 6000) -> str:
    """The part of a build or test log that explains a failure: pytest's ERRORS/FAILURES
    sections when present, and the tail."""
    all_lines = log.splitlines()
    start = next((i for i, ln in enumerate(all_lines) if re.match(r"^=+ (ERRORS|FAILURES) =+$", ln.strip())), None)
    head = all_lines[start:start + lines] if start is not None else []
    tail = all_lines[-20:] if head else all_lines[-lines:]
    text = "\n".join(head + (["..."] if head else []) + tail)
    return text[-chars:]


def repo_context(tree: Path, max_chars: int = 1500) -> str:
    tree = Path(tree)
    parts = [f"top-level files: {', '.join(sorted(p.name for p in tree.iterdir() if p.name != '.git'))}"]
    for name in CONTEXT_FILES:
        f = tree / name
        if f.is_file():
            parts.append(f"--- {name} ---\n{f.read_text(errors='replace')[:max_chars]}")
    return "\n".join(parts)


def repair_prompt(spec: EnvSpec, failure: EnvFailure, context: str) -> str:
    current = spec.build_fields()
    return (
        "You repair the test environment of a Python repository. The environment is a Debian image with "
        "a virtualenv; the repository is installed at /testbed, editable, together with the dependencies "
        "its metadata declares. The build has no network: every package must be listed in extra_deps "
        "(downloaded as wheels beforehand); setup commands run in /testbed after the install.\n\n"
        f"Current spec:\n```json\n{json.dumps(current, indent=2)}\n```\n\n"
        f"It failed at the {failure.stage} stage: {failure.message}\n\n"
        f"Log excerpt:\n```\n{failure.log}\n```\n\n"
        f"Repository:\n{context}\n\n"
        "Reply with the corrected spec only, as one JSON object with the keys python (one of "
        f"{', '.join(sorted(PYTHONS))}), extra_deps (list of pip requirement strings), setup (list of shell "
        "commands), test_cmd (a pytest command with -rfEsxXp or -rA, so that every test's outcome is printed) and "
        "log_parser (keep parse_log_pytest for pytest)."
    )


def parse_spec(reply: str, current: EnvSpec) -> EnvSpec:
    """The first JSON object in `reply`, checked and merged over `current`; raises SwelegoError
    saying what is wrong with it."""
    decoder = json.JSONDecoder()
    data: Any = None
    for m in re.finditer(r"\{", reply):
        try:
            data, _ = decoder.raw_decode(reply[m.start():])
            break
        except ValueError:
            continue
    if not isinstance(data, dict):
        raise SwelegoError("the reply holds no JSON object")
    fields = current.build_fields()
    for key in ("python", "extra_deps", "setup", "test_cmd", "log_parser"):
        if key in data:
            fields[key] = data[key]
    python = str(fields["python"])
    if python not in PYTHONS:
        raise SwelegoError(f"python {python!r} is not available (choose from {', '.join(sorted(PYTHONS))})")
    for key in ("extra_deps", "setup"):
        if not isinstance(fields[key], list) or not all(isinstance(x, str) for x in fields[key]):
            raise SwelegoError(f"{key} must be a list of strings")
    for dep in fields["extra_deps"]:
        try:
            Requirement(dep)
        except InvalidRequirement:
            raise SwelegoError(f"extra_deps entry {dep!r} is not a pip requirement") from None
    if not isinstance(fields["test_cmd"], str) or not fields["test_cmd"].strip():
        raise SwelegoError("test_cmd must be a non-empty string")
    from swebench.harness.log_parsers import PARSER_REGISTRY

    if fields["log_parser"] not in PARSER_REGISTRY:
        raise SwelegoError(f"log_parser {fields['log_parser']!r} is not a swebench parser")
    return EnvSpec(python=python, extra_deps=tuple(dict.fromkeys(fields["extra_deps"])),
                   setup=tuple(fields["setup"]), test_cmd=fields["test_cmd"].strip(),
                   log_parser=fields["log_parser"], evidence={**current.evidence, "repair": "proposed by the LLM"})


def repair_loop(spec: EnvSpec, attempt: Callable[[EnvSpec], Any], *, llm=None, max_attempts: int = 3,
                context: str = "", known: Iterable[EnvSpec] = (), failed: EnvFailure | None = None,
                tree: Path | None = None, rules: bool = True) -> tuple[Any, EnvSpec, list[Attempt]]:
    """Try `spec`, then repaired specs, at most `max_attempts` times in all.

    `attempt(spec)` returns a result or raises EnvFailure. `failed` says `spec` was already
    tried and how it failed (recorded as attempt 1). Repairs come from the log by rules
    first (`rules`; `tree` is the repository, to tell its own modules from missing ones),
    then from `known` specs, then from `llm`. Returns (result or None, the last spec tried,
    the attempts)."""
    attempts: list[Attempt] = []
    tried = {json.dumps(spec.build_fields(), sort_keys=True)}
    queue = [k for k in known if json.dumps(k.build_fields(), sort_keys=True) not in tried]
    current, source, reply = spec, "inferred", ""
    last = failed
    if failed is not None:
        attempts.append(Attempt(1, spec.to_json(), False, failed.stage, failed.message, failed.log))
    while len(attempts) < max_attempts:
        n = len(attempts) + 1
        t0 = time.monotonic()
        if last is not None:
            ruled = rule_repair(current, last.stage, f"{last.message}\n{last.log}", tree) if rules else None
            if ruled is not None and json.dumps(ruled[0].build_fields(), sort_keys=True) not in tried:
                current, source, reply = ruled[0], "rule", ruled[1]
            elif queue:
                current, source, reply = queue.pop(0), "known", ""
            elif llm is None:
                break
            else:
                source, reply = "llm", ""
                try:
                    reply = llm.complete([{"role": "user", "content": repair_prompt(current, last, context)}],
                                         temperature=0.2)
                    proposal = parse_spec(reply, current)
                except SwelegoError as e:
                    attempts.append(Attempt(n, current.to_json(), False, "repair", str(e).splitlines()[0][:300],
                                            source="llm", reply=reply,
                                            seconds=time.monotonic() - t0))
                    continue
                key = json.dumps(proposal.build_fields(), sort_keys=True)
                if key in tried:
                    attempts.append(Attempt(n, proposal.to_json(), False, "repair", "the model proposed a spec "
                                            "that was already tried", source="llm", reply=reply,
                                            seconds=time.monotonic() - t0))
                    continue
                current = proposal
            tried.add(json.dumps(current.build_fields(), sort_keys=True))
        try:
            result = attempt(current)
        except EnvFailure as f:
            attempts.append(Attempt(n, current.to_json(), False, f.stage, f.message, f.log, source, reply,
                                    time.monotonic() - t0))
            last = f
            continue
        attempts.append(Attempt(n, current.to_json(), True, "ok", source=source, reply=reply,
                                seconds=time.monotonic() - t0))
        return result, current, attempts
    return None, current, attempts
