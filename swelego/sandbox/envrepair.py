"""Rules that repair an environment from its build or test log, and the failure taxonomy.

`rule_repair(spec, stage, log, tree)` reads a failing attempt's log and proposes the next
EnvSpec (a missing module → its package, a missing header or compiler → the Debian -dev
package, Python too new → an older base, an unknown pytest option → its plugin), or None when
no rule fits; the repair loop tries rules before an LLM. `classify_failure` names why an
environment failed, in a small fixed set (FAILURE_KINDS), so yields can be compared across
runs and repositories.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.version import Version

from swelego.sandbox.envspec import (
    C_TOOLCHAIN,
    CXX_TOOLCHAIN,
    HEADER_PACKAGES,
    LIBRARY_PACKAGES,
    PYTEST_FLAGS,
    PYTEST_PLUGINS,
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
_FIXTURE = re.compile(r"fixture '(\w+)' not found")
_NETWORK = re.compile(r"Temporary failure in name resolution|Network is unreachable|Name or service not known"
                      r"|getaddrinfo failed|Failed to establish a new connection|nodename nor servname"
                      r"|urlopen error|\[Errno 101\]|\[Errno -3\]|ConnectTimeout|ConnectionRefusedError")
_NO_TESTS = re.compile(r"collected 0 items|no tests ran|no test results|ships no tests")
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


def classify_failure(stage: str, message: str, log: str = "") -> str:
    """One of FAILURE_KINDS for an attempt that failed at `stage` (build | install | tests)."""
    text = f"{message}\n{log}"
    if "timed out" in text.lower() or stage == "timeout":
        return "timeout"
    if _HEADER.search(text) or _NO_LIB.search(text) or _NO_CC.search(text) or _NO_CXX.search(text) \
            or "has no package" in text or "pkg-config" in text and "not found" in text:
        return "missing_system_library"
    if stage == "tests" and _NETWORK.search(text):
        return "network_at_test_time"
    if _NO_MODULE.search(text) or "No matching distribution" in text or "has no wheel" in text \
            or "could not fetch wheels" in text or "did not converge" in text:
        return "missing_python_dependency"
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
    # Nothing collected: look for tests under any file name, from the root.
    if stage == "tests" and (_NO_TESTS.search(text) or "no test passes" in text) and "python_files" not in spec.test_cmd:
        return with_("no tests collected: every .py under the test directories",
                     test_cmd=f"python -m pytest {PYTEST_FLAGS} -o python_files='test*.py *_test.py tests.py "
                              "*_tests.py check_*.py'")
    return None
