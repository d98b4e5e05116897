"""LLM bug strategies: have a chat model re-implement or subtly break one function.
The model only ever returns a function; it is spliced back so the rest of the file stays byte-identical."""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import Callable

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from data_gen.synth.modifiers import Entity, find_entities, is_valid_python

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*$")
_SYSTEM = "You are a senior Python developer. You answer with code in a single fenced block and nothing else."


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) for every fenced block; an unterminated last fence runs to the end."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            # A closing fence uses the same character, at least as long, with no info string.
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        i += 1
        blocks.append((lang, "\n".join(body) + "\n"))
    return blocks


def extract_code_block(text: str) -> str | None:
    """The Python code in a model answer: a python fence first, then any fence, then the bare text."""
    blocks = _fenced_blocks(text)
    if not blocks:
        return text if text.strip() and is_valid_python(text) else None
    tagged = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    for candidates in (tagged, [body for _, body in blocks]):
        valid = [body for body in candidates if body.strip() and is_valid_python(textwrap.dedent(body))]
        if valid:
            return max(valid, key=len)
    # Nothing parses: hand back the likeliest block so the caller can reject it with a reason.
    longest = max(tagged or [body for _, body in blocks], key=len)
    return longest if longest.strip() else None


class _Locate(cst.CSTVisitor):
    """Finds the FunctionDef with a given qualname that starts on a given line."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, entity: Entity):
        self.entity = entity
        self.scope: list[str] = []
        self.found: cst.FunctionDef | None = None

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.scope.append(node.name.value)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.scope.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scope.append(node.name.value)
        line = self.get_metadata(PositionProvider, node).start.line
        if ".".join(self.scope) == self.entity.qualname and line == self.entity.start_line:
            self.found = node

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.scope.pop()


class _Swap(cst.CSTTransformer):
    def __init__(self, target: cst.FunctionDef, replacement: cst.FunctionDef):
        self.target = target
        self.replacement = replacement

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.CSTNode:
        # Identity, not equality: two functions can be textually identical.
        return self.replacement if original_node is self.target else updated_node


def _find(module: cst.Module, entity: Entity) -> cst.FunctionDef | None:
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    finder = _Locate(entity)
    wrapper.visit(finder)
    return finder.found


def _function_named(code: str, name: str) -> cst.FunctionDef | None:
    """The outermost function called `name` in `code`, wherever the model put it (module, class, ...)."""
    try:
        module = cst.parse_module(textwrap.dedent(code))
    except cst.ParserSyntaxError:
        return None
    hits: list[cst.FunctionDef] = []

    class _Collect(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            if node.name.value == name:
                hits.append(node)
                return False
            return True

    module.visit(_Collect())
    return hits[0] if hits else None


def replace_function(source: str, entity: Entity, new_code: str) -> str | None:
    """`source` with `entity` replaced by the same-named function in `new_code`, or None if that fails."""
    new_fn = _function_named(new_code, entity.qualname.rsplit(".", 1)[-1])
    if new_fn is None:
        return None
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:
        return None
    target = _find(module, entity)
    if target is None:
        return None
    # The original's surroundings stay, so only the def and its body can differ in the diff.
    new_fn = new_fn.with_changes(
        leading_lines=target.leading_lines,
        decorators=target.decorators,
        lines_after_decorators=target.lines_after_decorators,
    )
    result = module.visit(_Swap(target, new_fn)).code
    if result == source or not is_valid_python(result):
        return None
    return result


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


def _render(node: cst.FunctionDef) -> str:
    return cst.Module(body=[node.with_changes(leading_lines=())]).code


def _locate(source: str, entity: Entity) -> cst.FunctionDef | None:
    try:
        return _find(cst.parse_module(source), entity)
    except cst.ParserSyntaxError:
        return None


def function_stub(source: str, entity: Entity) -> str:
    """The def line(s), decorators and docstring of `entity` with its body replaced by `...`."""
    node = _locate(source, entity)
    if node is None:
        raise ValueError(f"{entity.qualname} not found at line {entity.start_line}")
    body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
    kept = [body[0]] if body and _is_docstring(body[0]) else []
    ellipsis = cst.SimpleStatementLine([cst.Expr(cst.Ellipsis())])
    return _render(node.with_changes(body=cst.IndentedBlock(body=[*kept, ellipsis])))


def _context(source: str, entity: Entity) -> str:
    """Imports and neighbouring names, so the model reuses what the module already has."""
    module = cst.parse_module(source)
    imports = [
        module.code_for_node(stmt).strip()
        for stmt in module.body
        if isinstance(stmt, cst.SimpleStatementLine)
        and any(isinstance(s, cst.Import | cst.ImportFrom) for s in stmt.body)
    ]
    others = [
        e.qualname
        for e in find_entities(source)
        if e.qualname != entity.qualname and not e.qualname.startswith(entity.qualname + ".")
    ]
    parts = []
    if imports:
        parts.append("Imports at the top of the file:\n" + "\n".join(imports))
    if others:
        parts.append("Other functions defined in the file: " + ", ".join(others[:40]))
    if entity.is_method:
        parts.append(f"The function is a method of class `{entity.class_qualname}`.")
    return "\n\n".join(parts)


def _ask(client, prompt: str, rng: random.Random) -> str | None:
    messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}]
    return extract_code_block(client.complete(messages, seed=rng.randrange(2**31)))


def llm_rewrite(client, source: str, path: str, entity: Entity, rng: random.Random) -> str | None:
    """Have the model implement `entity` again from its signature and docstring alone."""
    stub = function_stub(source, entity)
    prompt = (
        f"File: `{path}`\n\n{_context(source, entity)}\n\n"
        "Here is a function whose body has been removed:\n\n"
        f"```python\n{stub}```\n\n"
        "Write the implementation. Keep the signature, decorators and docstring exactly as given, "
        "and use only names available in this file. Return only the complete function in one "
        "```python block."
    )
    code = _ask(client, prompt, rng)
    return replace_function(source, entity, code) if code else None


def llm_modify(client, source: str, path: str, entity: Entity, rng: random.Random) -> str | None:
    """Have the model slip one subtle, plausible logic bug into `entity`."""
    node = _locate(source, entity)
    if node is None:
        return None
    prompt = (
        f"File: `{path}`\n\n"
        f"```python\n{_render(node)}```\n\n"
        "Change this function so that it contains one subtle but realistic logic bug, the kind a "
        "developer could make by accident, which would make some of the project's existing unit "
        "tests fail. Keep the signature, docstring and coding style unchanged. Do not add comments "
        "or names that hint at the change. Return only the complete modified function in one "
        "```python block."
    )
    code = _ask(client, prompt, rng)
    return replace_function(source, entity, code) if code else None


Strategy = Callable[..., str | None]
STRATEGIES: dict[str, Strategy] = {"llm_rewrite": llm_rewrite, "llm_modify": llm_modify}
