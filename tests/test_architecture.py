"""The shape of the code, checked from its syntax trees: the rooms import only what
ARCHITECTURE.md allows, the import graph has no cycle (function-level imports included, since
they hide a cycle rather than remove it), and a function longer than 80 lines says why next to
its definition (a `# long: <reason>` comment right above the `def`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("swelego", "data_gen", "sft", "verifier", "tts")
# room -> the other rooms it may import (ARCHITECTURE.md's table)
ALLOWED = {
    "swelego": set(),
    "data_gen": {"swelego"},
    "sft": {"swelego"},
    "verifier": {"swelego", "sft"},
    "tts": {"swelego", "verifier", "sft"},
}
MAX_LINES = 80


def _modules() -> dict[str, Path]:
    mods = {}
    for room in ROOMS:
        for p in (ROOT / room).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        out |= {t for t in (_resolve(n, mods) for n in names) if t and t != mod}
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other (strongly connected, more than one module)."""
    reach = {m: _reachable(graph, m) for m in graph}
    groups = {tuple(sorted(m2 for m2 in reach[m] if m in reach[m2])) for m in graph if m in reach[m]}
    return sorted(list(g) for g in groups)


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = _graph()
    graph["swelego.errors"] = graph["swelego.errors"] | {"swelego.sandbox.docker"}
    assert any("swelego.errors" in c for c in _cycles(graph))


def test_rooms_import_only_the_rooms_architecture_allows():
    wrong = sorted(f"{m} imports {t}" for m, targets in _graph().items() for t in targets
                   if t.split(".")[0] != m.split(".")[0] and t.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert wrong == []


def _long_functions() -> list[str]:
    out = []
    for room in ROOMS:
        for p in sorted((ROOT / room).rglob("*.py")):
            lines = p.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines), str(p))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                span = node.end_lineno - node.lineno + 1
                comment, i = [], first - 2  # the comment block right above the def
                while i >= 0 and lines[i].strip().startswith("#"):
                    comment.append(lines[i].strip())
                    i -= 1
                if span > MAX_LINES and not any(c.startswith("# long:") for c in comment):
                    out.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({span} lines)")
    return out


def test_functions_over_80_lines_say_why():
    assert _long_functions() == []
