"""Problem statements for synthetic bugs and for real fixes mined from git history, written like a
user's bug report rather than a test log. A statement must never give away the fix, the names
of the tests that will check it, or (for real tasks) the code of the hidden test patch."""

from __future__ import annotations

import re

from swelego.errors import SwelegoError
from swelego.harness import added_lines

_BANNER = re.compile(r"^={3,} ?(.*?) ?={3,}$")
_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$")
_DIFF_SYNTAX = re.compile(r"diff --git |@@ -\d|^@@ |^\+\+\+ b/|^--- a/", re.MULTILINE)
_EXCEPTION = re.compile(r"^(?!AssertionError)[A-Z]\w*(Error|Exception)\b")
# Added lines this generic say nothing about the fix, so seeing them in prose is not a leak.
_TRIVIAL = {
    "return",
    "return None",
    "return True",
    "return False",
    "else:",
    "pass",
    "continue",
    "break",
    "raise",
    "try:",
    "finally:",
    ")",
    "]",
    "}",
    '"""',
    "'''",
}


def _bare_name(node_id: str) -> str:
    return node_id.split("::")[-1].split("[")[0]


def _failure_sections(test_log: str) -> dict[str, list[str]]:
    """Lines of each `_____ name _____` section under the FAILURES / ERRORS banners, keyed by name."""
    sections: dict[str, list[str]] = {}
    in_failures = False
    current: list[str] | None = None
    for line in test_log.splitlines():
        banner = _BANNER.match(line.strip())
        if banner:
            in_failures = banner.group(1).strip() in ("FAILURES", "ERRORS")
            current = None
            continue
        header = _SECTION.match(line.strip())
        if in_failures and header:
            current = sections.setdefault(header.group(1), [])
        elif current is not None:
            current.append(line)
    return sections


def _mentions_test(line: str, failing_tests: list[str]) -> bool:
    return any(t in line or re.search(rf"\b{re.escape(_bare_name(t))}\b", line) for t in failing_tests)


def _sections_for(test_log: str, failing_tests: list[str]) -> list[list[str]]:
    sections = _failure_sections(test_log)
    names = [_bare_name(t) for t in failing_tests]
    chosen = [
        body
        for title, body in sections.items()
        if any(re.search(rf"\b{re.escape(n)}\b", title) for n in names)
    ]
    # Headers can be shortened by pytest; any failure is better than none.
    return chosen or list(sections.values())


def failing_assertions(test_log: str, failing_tests: list[str], max_lines: int = 12) -> list[str]:
    """The `E` lines (assertion and exception messages) of the failing tests, de-duplicated."""
    out: list[str] = []
    for body in _sections_for(test_log, failing_tests):
        for line in body:
            if not line.startswith("E "):
                continue
            text = line[1:].strip()[:200]
            if text and text not in out and not _mentions_test(text, failing_tests):
                out.append(text)
    return out[:max_lines]


def template_statement(*, path: str, function: str, failing_tests: list[str], test_log: str) -> str:
    """A plain bug report built from the observed errors, for when no LLM is available or trusted."""
    errors = failing_assertions(test_log, failing_tests)
    raises = any(_EXCEPTION.match(e) for e in errors)
    wrong = any(e.startswith("assert") for e in errors) or not raises
    symptom = {
        (True, True): "returns wrong results or raises an exception",
        (True, False): "raises an unexpected exception",
        (False, True): "returns wrong results",
    }[(raises, wrong)]
    lines = [
        f"`{function}` in `{path}` {symptom}",
        "",
        f"Code that calls `{function}` (defined in `{path}`) stopped working as it used to: "
        f"for some inputs it now {symptom}.",
    ]
    if errors:
        lines += ["", "This is what I see:", "", "```", *errors, "```"]
    lines += [
        "",
        f"Expected: `{function}` behaves as it did before, returning the correct result for these inputs "
        "without errors.",
    ]
    return "\n".join(lines) + "\n"


def _redacted_failures(test_log: str, failing_tests: list[str], max_lines: int = 120) -> str:
    """Failure tracebacks with test names masked, so the model sees the inputs but cannot echo the names."""
    lines = [line for body in _sections_for(test_log, failing_tests) for line in body][:max_lines]
    text = "\n".join(lines)
    for test in sorted(failing_tests, key=len, reverse=True):
        text = text.replace(test, "<test>")
        text = re.sub(rf"\b{re.escape(_bare_name(test))}\b", "<test>", text)
    return text


def llm_statement(client, *, bug_patch: str, failing_tests: list[str], test_log: str) -> str:
    """A GitHub-issue-style report of the bug's symptoms, written by the model."""
    prompt = (
        "You are writing a GitHub issue as a user of a Python library who has run into a bug.\n\n"
        "For your background only, this is the code change that INTRODUCED the bug. Use it to understand "
        "the symptom; never mention or quote it:\n\n"
        f"```diff\n{bug_patch}```\n\n"
        "This is the failing output that the bug causes:\n\n"
        f"```\n{_redacted_failures(test_log, failing_tests)}\n```\n\n"
        "Write the issue: a short title line, a description of the symptom, a minimal reproduction "
        "snippet that calls the public code, and the expected versus the actual behaviour. Do not say "
        "how to fix it or where the faulty line is, do not mention any diff or code change, and do not "
        "name any test or test function. Reply with the issue text only."
    )
    answer = client.complete([{"role": "user", "content": prompt}])
    if not answer.strip():
        raise SwelegoError("LLM returned an empty problem statement")
    return answer.strip() + "\n"


def _quotable(line: str) -> str | None:
    """A patch line as it would read quoted in prose, when it says enough to be a leak."""
    text = " ".join(line.split())
    return text if len(text.replace(" ", "")) >= 8 and text not in _TRIVIAL else None


def leak_reasons(statement: str, *, fix_patch: str, failing_tests: list[str], test_patch: str = "") -> list[str]:
    """Why `statement` is unsafe to show a solver: fix lines, test names or diff syntax in it,
    and lines of `test_patch` (the hidden tests of a real task; imports are no leak)."""
    reasons: list[str] = []
    flat = " ".join(statement.split())
    for line in added_lines(fix_patch):
        added = _quotable(line)
        if added and added in flat:
            reasons.append(f"contains a line of the fix: {added!r}")
    for line in added_lines(test_patch):
        added = _quotable(line)
        if added and not added.startswith(("import ", "from ")) and added in flat:
            reasons.append(f"quotes a line of the hidden tests: {added!r}")
    for test in failing_tests:
        if test in statement:
            reasons.append(f"names failing test {test!r}")
        elif re.search(rf"\b{re.escape(_bare_name(test))}\b", statement):
            reasons.append(f"names test function {_bare_name(test)!r}")
    if _DIFF_SYNTAX.search(statement):
        reasons.append("contains unified-diff syntax")
    return reasons


def write_problem_statement(
    *,
    client,
    path: str,
    function: str,
    bug_patch: str,
    fix_patch: str,
    failing_tests: list[str],
    test_log: str,
    issue: str = "",
    test_patch: str = "",
) -> tuple[str, str]:
    """(statement, origin): `issue` (a real task's issue text, "issue") when it is clean, else
    the LLM's report when it is clean ("llm"), else the template ("template"). Clean means
    leak_reasons finds nothing, `test_patch` (hidden tests) included."""

    def leaks(text: str) -> list[str]:
        return leak_reasons(text, fix_patch=fix_patch, failing_tests=failing_tests, test_patch=test_patch)

    if issue.strip() and not leaks(issue):
        return issue.strip() + "\n", "issue"
    if client is not None:
        try:
            statement = llm_statement(
                client, bug_patch=bug_patch, failing_tests=failing_tests, test_log=test_log
            )
        except SwelegoError:
            statement = ""
        if statement and not leaks(statement):
            return statement, "llm"
    statement = template_statement(
        path=path, function=function, failing_tests=failing_tests, test_log=test_log
    )
    if leaks(statement):
        # An error message can quote the fixed expression itself; drop just those lines.
        kept = [line for line in statement.splitlines() if not leaks(line)]
        statement = "\n".join(kept) + "\n"
    return statement, "template"
