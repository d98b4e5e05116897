"""The shared LLM client and the LLM bug strategies, against a local OpenAI-compatible HTTP server.
Nothing is mocked inside the SDK: retries, backoff and error mapping run for real."""

from __future__ import annotations

import random
import time

import openai_server as fake_openai
import pytest

from data_gen.synth.llm import (
    STRATEGIES,
    extract_code_block,
    function_stub,
    llm_modify,
    llm_rewrite,
    replace_function,
)
from data_gen.synth.modifiers import find_entities, is_valid_python
from swelego.errors import SwelegoError
from swelego.llm import LLMClient, LLMConfig, client_from_options

openai_server = fake_openai.openai_server

# Retry-After in milliseconds keeps the SDK's real backoff path but makes it fast.
FAST_RETRY = {"retry-after-ms": "10"}

SAMPLE = '''"""Small statistics helpers."""

import math
from collections import Counter


def mean(values):
    """Arithmetic mean of a non-empty sequence."""
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def mode(values):
    # most common value; ties go to the first seen
    return Counter(values).most_common(1)[0][0]


class Summary:
    """Summary statistics of a sample."""

    def __init__(self, values):
        self.values = list(values)

    @property
    def stdev(self):
        """Population standard deviation."""
        m = mean(self.values)
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / len(self.values))

    def describe(self):
        def fmt(x):
            return f"{x:.2f}"

        return {"mean": fmt(mean(self.values)), "stdev": fmt(self.stdev)}
'''


def entity(qualname, source=SAMPLE):
    return next(e for e in find_entities(source) if e.qualname == qualname)


def make_client(server, **kw):
    return LLMClient(LLMConfig(base_url=server.base_url, model="test-model", **kw))


def fenced(code, lang="python"):
    return f"Sure! Here is the function:\n\n```{lang}\n{code}```\n\nLet me know if you need anything else."


# --- LLMClient -------------------------------------------------------------------------------------


def test_completion_returns_content_and_counts_tokens(openai_server):
    openai_server.script("hello there")
    client = make_client(openai_server, temperature=0.2, max_tokens=64)
    assert client.complete([{"role": "user", "content": "say hi"}], seed=7) == "hello there"
    request = openai_server.requests[0]
    assert request["model"] == "test-model"
    assert request["temperature"] == 0.2 and request["max_tokens"] == 64 and request["seed"] == 7
    assert client.calls == 1 and client.prompt_tokens == 2 and client.completion_tokens == 2


def test_rate_limit_is_retried(openai_server):
    openai_server.script({"status": 429, "headers": {"retry-after": "0", **FAST_RETRY}}, "ok")
    client = make_client(openai_server, max_retries=2)
    assert client.complete([{"role": "user", "content": "x"}]) == "ok"
    assert len(openai_server.requests) == 2


def test_persistent_server_error_becomes_one_line_swelego_error(openai_server):
    retries = 2
    openai_server.script(*[{"status": 500, "headers": FAST_RETRY}] * (retries + 1))
    client = make_client(openai_server, max_retries=retries)
    with pytest.raises(SwelegoError) as err:
        client.complete([{"role": "user", "content": "x"}])
    message = str(err.value)
    assert "\n" not in message and openai_server.base_url in message
    assert len(openai_server.requests) == retries + 1


def test_timeout_becomes_swelego_error(openai_server):
    openai_server.script({"delay": 1.0, "content": "too late"})
    client = make_client(openai_server, timeout=0.2, max_retries=0)
    start = time.monotonic()
    with pytest.raises(SwelegoError, match="APITimeoutError"):
        client.complete([{"role": "user", "content": "x"}])
    assert time.monotonic() - start < 1.0


def test_client_from_options_needs_endpoint_and_model():
    assert client_from_options(None, "m") is None
    assert client_from_options("http://127.0.0.1:1/v1", None) is None
    client = client_from_options("http://127.0.0.1:1/v1", "m", temperature=0.0)
    assert isinstance(client, LLMClient) and client.config.temperature == 0.0


# --- extract_code_block -----------------------------------------------------------------------------


def test_extract_prefers_python_fence():
    text = "Intro\n```text\nnot code at all, but a much longer block of text\n```\n```python\nx = 1\n```\n"
    assert extract_code_block(text) == "x = 1\n"


def test_extract_plain_and_tilde_fences():
    assert extract_code_block("Here:\n```\ny = 2\n```\nDone.") == "y = 2\n"
    assert extract_code_block("Here:\n~~~py\nz = 3\n~~~\n") == "z = 3\n"


def test_extract_longest_valid_of_several():
    text = "```python\na = 1\n```\nand\n```python\ndef f(:\n    broken and longer\n```\n```python\nb = 2\nc = 3\n```"
    assert extract_code_block(text) == "b = 2\nc = 3\n"


def test_extract_unterminated_fence():
    assert extract_code_block("Answer:\n```python\ndef f():\n    return 1\n") == "def f():\n    return 1\n"


def test_extract_without_fences():
    assert extract_code_block("I cannot help with that request.") is None
    assert extract_code_block("def f():\n    return 1\n") == "def f():\n    return 1\n"


# --- replace_function -------------------------------------------------------------------------------


def _only_changed_lines(before, after, first, last):
    """Lines outside [first, last] (1-based, of `before`) must be unchanged and in place."""
    b, a = before.splitlines(keepends=True), after.splitlines(keepends=True)
    tail = len(b) - last
    assert a[: first - 1] == b[: first - 1]
    assert a[len(a) - tail :] == b[len(b) - tail :]


def test_replace_top_level_function_keeps_rest_byte_identical():
    target = entity("mean")
    new = "def mean(values):\n    return sum(values) / (len(values) + 1)\n"
    out = replace_function(SAMPLE, target, new)
    assert out is not None and is_valid_python(out)
    assert "return sum(values) / (len(values) + 1)" in out
    _only_changed_lines(SAMPLE, out, target.start_line, target.end_line)


def test_replace_decorated_method_keeps_decorator_and_indentation():
    target = entity("Summary.stdev")
    # Models often drop the decorator and the class indentation; both are restored.
    new = fenced(
        "def stdev(self):\n    m = mean(self.values)\n    return math.sqrt(sum(v - m for v in self.values))\n"
    )
    out = replace_function(SAMPLE, target, extract_code_block(new))
    assert out is not None
    assert "    @property\n    def stdev(self):\n        m = mean(self.values)\n" in out
    _only_changed_lines(SAMPLE, out, target.start_line, target.end_line)


def test_replace_nested_function_inside_method():
    target = entity("Summary.describe.fmt")
    new = "import math\n\n\ndef fmt(x):\n    return f'{x:.1f}'\n"
    out = replace_function(SAMPLE, target, new)
    assert out is not None
    assert "        def fmt(x):\n            return f'{x:.1f}'\n" in out
    _only_changed_lines(SAMPLE, out, target.start_line, target.end_line)


def test_replace_accepts_method_returned_inside_its_class():
    target = entity("Summary.__init__")
    new = "class Summary:\n    def __init__(self, values):\n        self.values = sorted(values)\n"
    out = replace_function(SAMPLE, target, new)
    assert out is not None and "        self.values = sorted(values)\n" in out
    _only_changed_lines(SAMPLE, out, target.start_line, target.end_line)


def test_replace_rejects_wrong_name_syntax_error_and_no_change():
    target = entity("mean")
    assert replace_function(SAMPLE, target, "def average(values):\n    return 0\n") is None
    assert replace_function(SAMPLE, target, "def mean(values)\n    return 0\n") is None
    original = "\n".join(SAMPLE.splitlines()[target.start_line - 1 : target.end_line]) + "\n"
    assert replace_function(SAMPLE, target, original) is None


# --- strategies against the server ------------------------------------------------------------------


def test_function_stub_drops_body_keeps_docstring():
    stub = function_stub(SAMPLE, entity("Summary.stdev"))
    assert stub == '@property\ndef stdev(self):\n    """Population standard deviation."""\n    ...\n'


def test_llm_rewrite_sends_stub_not_body(openai_server):
    body_line = "total += v"
    openai_server.responder = lambda request: fenced(
        'def mean(values):\n    """Arithmetic mean of a non-empty sequence."""\n'
        "    return sum(values) / max(len(values) - 1, 1)\n"
    )
    client = make_client(openai_server, max_retries=0)
    out = llm_rewrite(client, SAMPLE, "stats/core.py", entity("mean"), random.Random(0))
    assert out is not None and out != SAMPLE and is_valid_python(out)
    assert "max(len(values) - 1, 1)" in out and body_line not in out
    prompt = openai_server.requests[0]["messages"][-1]["content"]
    assert "stats/core.py" in prompt and "def mean(values):" in prompt and "Arithmetic mean" in prompt
    assert body_line not in prompt and "from collections import Counter" in prompt
    assert isinstance(openai_server.requests[0]["seed"], int)


def test_llm_modify_sends_full_function(openai_server):
    openai_server.responder = lambda request: fenced(
        "def mode(values):\n    return Counter(values).most_common()[-1][0]\n"
    )
    client = make_client(openai_server, max_retries=0)
    out = llm_modify(client, SAMPLE, "stats/core.py", entity("mode"), random.Random(1))
    assert out is not None and "most_common()[-1][0]" in out and is_valid_python(out)
    prompt = openai_server.requests[0]["messages"][-1]["content"]
    assert "    return Counter(values).most_common(1)[0][0]\n" in prompt
    assert "# most common value; ties go to the first seen" in prompt


def test_same_rng_seed_gives_same_request_seed(openai_server):
    openai_server.responder = lambda request: fenced("def mode(values):\n    return values[0]\n")
    client = make_client(openai_server, max_retries=0)
    for _ in range(2):
        llm_modify(client, SAMPLE, "stats/core.py", entity("mode"), random.Random(42))
    assert openai_server.requests[0]["seed"] == openai_server.requests[1]["seed"]


@pytest.mark.parametrize(
    "answer",
    [
        fenced("def mode(values)\n    return values[0]\n"),
        fenced("def most_frequent(values):\n    return values[0]\n"),
        "I'd rather not modify this function.",
    ],
)
def test_unusable_answers_yield_none(openai_server, answer):
    openai_server.script(answer)
    client = make_client(openai_server, max_retries=0)
    assert llm_modify(client, SAMPLE, "stats/core.py", entity("mode"), random.Random(0)) is None


def test_strategy_registry():
    assert STRATEGIES == {"llm_rewrite": llm_rewrite, "llm_modify": llm_modify}
