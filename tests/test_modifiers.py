"""Procedural bug injection: every modifier mutates only its target and keeps formatting intact."""

from __future__ import annotations

import ast
import difflib
import random
import shutil
import subprocess

import pytest

from data_gen.synth.modifiers import (
    MODIFIERS,
    Entity,
    Modifier,
    find_entities,
    is_valid_python,
    mutate,
    unified_diff,
)

SAMPLE = '''\
"""A small inventory module with the usual mess of real code."""
import threading

LOCK = threading.Lock()   # module-level comment


def total(prices, discount=0):
    """Sum prices, then apply a discount."""
    acc = 0
    for p in prices:   # loop comment
        acc += p
    if discount and acc > 10:
        acc = acc - discount
    return acc


def window(items, n):
    # take every window of size n
    out = []
    for i in range(len(items) - n + 1):
        out.append(items[i] + items[i + 1])
    return out


def is_adult(age):
    return age >= 18 and age < 130


def classify(x):
    if x < 0:
        label = "neg"
    else:
        label = "pos"
    count = 0
    while count < 3:
        count += 1
    return label, count


def guarded(path):
    with LOCK:
        data = path.upper()
        extra = 2
    try:
        value = int(data)
    except ValueError:
        value = -1
    return value * extra


class Base:
    pass


class Store(Base, object):
    """Keeps stock."""

    def __init__(self, stock):
        self.stock = dict(stock)   # copy

    def has(self, name, qty=1):
        ok = self.stock.get(name, 0) >= qty or name == "free"
        return ok and True

# trailing comment
'''

TAIL_COMMENTS = ["# module-level comment", "# trailing comment"]


def _load(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<sample>", "exec"), namespace)
    return namespace


def _outcome(fn, *args):
    """The return value, or the exception type: crashing is also a behaviour change."""
    try:
        return fn(*args)
    except Exception as exc:
        return type(exc)


def _entity(qualname: str) -> Entity:
    return next(e for e in ENTITIES if e.qualname == qualname)


def _region(modifier: Modifier, entity: Entity) -> tuple[int, int]:
    """1-based inclusive line range the modifier may touch."""
    if modifier.scope == "class":
        cls = entity.class_qualname
        node = next(n for n in ast.parse(SAMPLE).body if isinstance(n, ast.ClassDef) and n.name == cls)
        return node.lineno, node.end_lineno
    return entity.start_line, entity.end_line


def _changed_lines(before: str, after: str) -> set[int]:
    """Line numbers (1-based, in `before`) that the edit replaced or deleted, plus insertion points."""
    changed: set[int] = set()
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal":
            changed.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    return changed


ENTITIES = find_entities(SAMPLE)


def _applicable(modifier: Modifier) -> list[Entity]:
    return [e for e in ENTITIES if modifier.candidates(SAMPLE, e) > 0]


def test_registry_covers_families():
    assert len(MODIFIERS) >= 12
    families = {m.family for m in MODIFIERS.values()}
    assert {
        "operator_change",
        "operator_swap",
        "constant_change",
        "boolean_chain",
        "control_flow_invert",
        "remove",
        "shuffle",
        "class",
        "off_by_one",
        "wrong_return",
    } <= families
    assert all(name == m.name for name, m in MODIFIERS.items())


def test_find_entities():
    entities = find_entities(SAMPLE)
    assert [e.qualname for e in entities] == [
        "total",
        "window",
        "is_adult",
        "classify",
        "guarded",
        "Store.__init__",
        "Store.has",
    ]
    by_name = {e.qualname: e for e in entities}
    assert [e.qualname for e in entities if e.is_method] == ["Store.__init__", "Store.has"]
    assert by_name["total"].start_line == 7 and by_name["total"].end_line == 14
    # total: for + if + `and`; classify: if + while; guarded: with + try.
    assert by_name["total"].complexity == 4
    assert by_name["classify"].complexity == 3
    assert by_name["guarded"].complexity == 3
    assert by_name["Store.__init__"].complexity == 1
    ranked = sorted(entities, key=lambda e: e.complexity, reverse=True)
    assert ranked[0].qualname == "total"


@pytest.mark.parametrize("name", sorted(MODIFIERS))
def test_modifier_mutates_only_its_target(name):
    modifier = MODIFIERS[name]
    entities = _applicable(modifier)
    assert entities, f"{name} applies to nothing in the sample"
    for entity in entities:
        for seed in range(3):
            out = mutate(SAMPLE, entity, modifier, random.Random(seed))
            if out is None:
                continue
            assert out != SAMPLE and is_valid_python(out)
            lo, hi = _region(modifier, entity)
            changed = _changed_lines(SAMPLE, out)
            # Blank lines at the region's edge align ambiguously in a diff, so they count as inside.
            lines = SAMPLE.splitlines()
            slack_lo, slack_hi = lo, hi
            while slack_lo > 1 and not lines[slack_lo - 2].strip():
                slack_lo -= 1
            while slack_hi < len(lines) and not lines[slack_hi].strip():
                slack_hi += 1
            assert changed and all(slack_lo <= line <= slack_hi for line in changed), (entity.qualname, out)
            for comment in TAIL_COMMENTS:
                assert comment in out
            # Lines before and after the region survive byte-for-byte.
            before, after = SAMPLE.splitlines(keepends=True), out.splitlines(keepends=True)
            assert after[: lo - 1] == before[: lo - 1]
            assert after[len(after) - (len(before) - hi) :] == before[hi:]
            assert mutate(SAMPLE, entity, modifier, random.Random(seed)) == out


@pytest.mark.parametrize("name", sorted(MODIFIERS))
def test_every_modifier_produces_a_mutation(name):
    modifier = MODIFIERS[name]
    results = [
        mutate(SAMPLE, e, modifier, random.Random(seed)) for e in _applicable(modifier) for seed in range(5)
    ]
    assert any(r is not None for r in results)


def test_seed_picks_different_sites():
    entity = _entity("window")
    modifier = MODIFIERS["index_off_by_one"]
    assert modifier.candidates(SAMPLE, entity) == 2
    outputs = {mutate(SAMPLE, entity, modifier, random.Random(seed)) for seed in range(10)}
    assert len(outputs) > 1


def test_behaviour_changes():
    orig = _load(SAMPLE)

    out = mutate(SAMPLE, _entity("total"), MODIFIERS["remove_loop"], random.Random(0))
    assert _load(out)["total"]([1, 2, 3]) == 0 != orig["total"]([1, 2, 3])

    out = mutate(SAMPLE, _entity("is_adult"), MODIFIERS["bool_swap_and_or"], random.Random(0))
    assert "age >= 18 or age < 130" in out
    assert _load(out)["is_adult"](5) is True and orig["is_adult"](5) is False

    out = mutate(SAMPLE, _entity("classify"), MODIFIERS["invert_if_else"], random.Random(0))
    assert _load(out)["classify"](-1) == ("pos", 3) and orig["classify"](-1) == ("neg", 3)

    for seed in range(4):
        out = mutate(SAMPLE, _entity("window"), MODIFIERS["range_off_by_one"], random.Random(seed))
        assert "range(len(items) - n + 2)" in out or "range(len(items) - n)" in out
        assert _outcome(_load(out)["window"], [1, 2, 3, 4], 2) != orig["window"]([1, 2, 3, 4], 2)

    removed = set()
    for seed in range(6):
        out = mutate(SAMPLE, _entity("Store.has"), MODIFIERS["class_remove_method"], random.Random(seed))
        gone = {m for m in ("__init__", "has") if f"def {m}(" not in out}
        assert len(gone) == 1
        removed |= gone
        if gone == {"has"}:
            assert not hasattr(_load(out)["Store"]({}), "has")
    assert removed == {"__init__", "has"}

    out = mutate(SAMPLE, _entity("Store.has"), MODIFIERS["class_remove_base"], random.Random(0))
    assert not issubclass(_load(out)["Store"], _load(out)["Base"])


def test_formatting_is_preserved_inside_target():
    out = mutate(SAMPLE, _entity("total"), MODIFIERS["op_change_compare"], random.Random(0))
    assert out == SAMPLE.replace("acc > 10", "acc >= 10")
    out = mutate(SAMPLE, _entity("guarded"), MODIFIERS["remove_wrapper"], random.Random(0))
    assert out is not None and ("with LOCK" not in out) != ("try:" not in out)
    assert "        data = path.upper()" not in out or "        value = int(data)" not in out


def test_unified_diff_applies_with_git(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    out = mutate(SAMPLE, _entity("classify"), MODIFIERS["remove_loop"], random.Random(0))
    assert out is not None
    patch = unified_diff("pkg/inventory.py", SAMPLE, out)
    assert patch.startswith("diff --git a/pkg/inventory.py b/pkg/inventory.py\n--- a/pkg/inventory.py\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "inventory.py").write_text(SAMPLE)
    (tmp_path / "fix.patch").write_text(patch)
    subprocess.run([git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([git, "apply", "--check", "fix.patch"], cwd=tmp_path, check=True)
    subprocess.run([git, "apply", "fix.patch"], cwd=tmp_path, check=True)
    assert (tmp_path / "pkg" / "inventory.py").read_text() == out


def test_unified_diff_without_trailing_newline(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    before = "def f():\n    return 1"
    after = "def f():\n    return 2"
    patch = unified_diff("f.py", before, after)
    assert "\\ No newline at end of file" in patch
    (tmp_path / "f.py").write_text(before)
    (tmp_path / "p.patch").write_text(patch)
    subprocess.run([git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([git, "apply", "p.patch"], cwd=tmp_path, check=True)
    assert (tmp_path / "f.py").read_text() == after
    assert unified_diff("f.py", before, before) == ""


class _Breaker(Modifier):
    """Deliberately emits broken syntax, standing in for a buggy rewrite."""

    name, family = "breaker", "test"

    def apply(self, source, entity, rng):
        return source.replace("def total(", "def total((", 1)


class _NoOp(Modifier):
    name, family = "noop", "test"

    def apply(self, source, entity, rng):
        return source


def test_invalid_or_noop_mutations_are_discarded():
    entity = _entity("total")
    assert not is_valid_python(_Breaker().apply(SAMPLE, entity, random.Random(0)))
    assert mutate(SAMPLE, entity, _Breaker(), random.Random(0)) is None
    assert mutate(SAMPLE, entity, _NoOp(), random.Random(0)) is None
    # A modifier with no site in the entity yields None rather than an unchanged copy.
    assert mutate(SAMPLE, _entity("Store.__init__"), MODIFIERS["remove_loop"], random.Random(0)) is None
    assert MODIFIERS["class_remove_base"].candidates(SAMPLE, entity) == 0
