"""Problem-statement writing: error extraction from pytest logs, the template, leak checks, and the
LLM path against a local OpenAI-compatible server."""

from __future__ import annotations

import openai_server as fake_openai

from data_gen.issue_text import (
    failing_assertions,
    leak_reasons,
    llm_statement,
    template_statement,
    write_problem_statement,
)
from swelego.llm import LLMClient, LLMConfig

openai_server = fake_openai.openai_server

FAILING = [
    "tests/test_stats.py::test_mean_of_floats",
    "tests/test_stats.py::TestSummary::test_stdev[sample1]",
]

LOG = """\
============================= test session starts ==============================
platform linux -- Python 3.11.9, pytest-8.3.2, pluggy-1.5.0
rootdir: /testbed
collected 5 items

tests/test_stats.py::test_mean_of_ints PASSED                             [ 20%]
tests/test_stats.py::test_mean_of_floats FAILED                           [ 40%]
tests/test_stats.py::test_mode PASSED                                     [ 60%]
tests/test_stats.py::TestSummary::test_stdev[sample0] PASSED              [ 80%]
tests/test_stats.py::TestSummary::test_stdev[sample1] FAILED              [100%]

=================================== FAILURES ===================================
_____________________________ test_mean_of_floats ______________________________

    def test_mean_of_floats():
>       assert mean([2.0, 3.0]) == 2.5
E       assert 2.0 == 2.5
E        +  where 2.0 = mean([2.0, 3.0])

tests/test_stats.py:9: AssertionError
_______________________ TestSummary.test_stdev[sample1] ________________________

self = <tests.test_stats.TestSummary object at 0x7f3a2c1d0e50>, values = [1, 2, 3]

    @pytest.mark.parametrize("values", [[1], [1, 2, 3]])
    def test_stdev(self, values):
>       Summary(values).stdev
E       ZeroDivisionError: float division by zero
E        +  where <function TestSummary.test_stdev at 0x7f3a2c1d0f70> = test_stdev

src/stats/core.py:14: ZeroDivisionError
==================================== PASSES ====================================
=========================== short test summary info ============================
PASSED tests/test_stats.py::test_mean_of_ints
PASSED tests/test_stats.py::test_mode
PASSED tests/test_stats.py::TestSummary::test_stdev[sample0]
FAILED tests/test_stats.py::test_mean_of_floats - assert 2.0 == 2.5
FAILED tests/test_stats.py::TestSummary::test_stdev[sample1] - ZeroDivisionError: float division by zero
========================= 2 failed, 3 passed in 0.05s ==========================
"""

FIX_PATCH = """\
diff --git a/src/stats/core.py b/src/stats/core.py
--- a/src/stats/core.py
+++ b/src/stats/core.py
@@ -8,4 +8,4 @@ def mean(values):
     total = 0.0
     for v in values:
         total += v
-    return total / (len(values) + 1)
+    return total / len(values)
"""

BUG_PATCH = FIX_PATCH.replace("-    return total / (len", "+    return total / (len").replace(
    "+    return total / len(values)", "-    return total / len(values)"
)

CLEAN = """\
mean() returns a value that is too small

Calling `stats.core.mean` on a list of floats gives a result that is smaller than the real average.

```python
from stats.core import mean
print(mean([2.0, 3.0]))
```

Expected: 2.5
Actual: 2.0
"""


def test_failing_assertions_extracts_messages_without_test_names():
    lines = failing_assertions(LOG, FAILING)
    assert "assert 2.0 == 2.5" in lines
    assert "ZeroDivisionError: float division by zero" in lines
    assert "+  where 2.0 = mean([2.0, 3.0])" in lines
    assert not any("test_stdev" in line or "test_mean_of_floats" in line for line in lines)
    assert failing_assertions(LOG, FAILING, max_lines=1) == ["assert 2.0 == 2.5"]


def test_template_statement_is_informative_and_safe():
    text = template_statement(path="src/stats/core.py", function="mean", failing_tests=FAILING, test_log=LOG)
    assert "assert 2.0 == 2.5" in text and "`mean`" in text and "src/stats/core.py" in text
    assert "raises" in text and "Expected" in text
    assert leak_reasons(text, fix_patch=FIX_PATCH, failing_tests=FAILING) == []


def test_leak_reasons_flags_each_kind_of_leak():
    fix_line = CLEAN + "\nThe fix is `return total / len(values)`.\n"
    assert any("fix" in r for r in leak_reasons(fix_line, fix_patch=FIX_PATCH, failing_tests=FAILING))
    named = CLEAN + "\nSee test_mean_of_floats.\n"
    assert any(
        "test_mean_of_floats" in r for r in leak_reasons(named, fix_patch=FIX_PATCH, failing_tests=FAILING)
    )
    node_id = CLEAN + "\nFails: tests/test_stats.py::TestSummary::test_stdev[sample1]\n"
    assert leak_reasons(node_id, fix_patch=FIX_PATCH, failing_tests=FAILING)
    diff = CLEAN + "\n@@ -8,5 +8,5 @@\n"
    assert any("diff" in r for r in leak_reasons(diff, fix_patch=FIX_PATCH, failing_tests=FAILING))
    assert leak_reasons(CLEAN, fix_patch=FIX_PATCH, failing_tests=FAILING) == []


def _client(server):
    return LLMClient(LLMConfig(base_url=server.base_url, model="test-model", max_retries=0))


def test_llm_statement_prompt_has_bug_diff_and_masked_failures(openai_server):
    openai_server.script(CLEAN)
    text = llm_statement(_client(openai_server), bug_patch=BUG_PATCH, failing_tests=FAILING, test_log=LOG)
    assert text == CLEAN
    prompt = openai_server.requests[0]["messages"][-1]["content"]
    assert BUG_PATCH in prompt and "INTRODUCED" in prompt
    assert "assert 2.0 == 2.5" in prompt
    assert "test_mean_of_floats" not in prompt and "test_stdev" not in prompt


def _write(client):
    return write_problem_statement(
        client=client,
        path="src/stats/core.py",
        function="mean",
        bug_patch=BUG_PATCH,
        fix_patch=FIX_PATCH,
        failing_tests=FAILING,
        test_log=LOG,
    )


def test_write_uses_clean_llm_answer(openai_server):
    openai_server.script(CLEAN)
    assert _write(_client(openai_server)) == (CLEAN, "llm")


def test_write_falls_back_when_llm_leaks(openai_server):
    openai_server.script(CLEAN + "\nTo fix it, write `return total / len(values)`.\n")
    statement, origin = _write(_client(openai_server))
    assert origin == "template" and "return total / len(values)" not in statement
    assert "assert 2.0 == 2.5" in statement


def test_write_falls_back_when_llm_fails(openai_server):
    openai_server.script({"status": 500})
    assert _write(_client(openai_server))[1] == "template"


def test_write_without_client_uses_template():
    statement, origin = _write(None)
    assert origin == "template" and "`mean`" in statement


def test_template_drops_lines_that_quote_the_fix():
    log = LOG.replace("E       assert 2.0 == 2.5", "E       assert total / len(values) == 2.5")
    patch = FIX_PATCH.replace("+    return total / len(values)", "+    assert total / len(values) == 2.5")
    statement, origin = write_problem_statement(
        client=None,
        path="p.py",
        function="mean",
        bug_patch="",
        fix_patch=patch,
        failing_tests=FAILING,
        test_log=log,
    )
    assert origin == "template" and "total / len(values)" not in statement
    assert leak_reasons(statement, fix_patch=patch, failing_tests=FAILING) == []
