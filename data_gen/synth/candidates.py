"""Bug candidates: one patch each against a repository's clean tree, from procedural
modifiers or an LLM, plus combinations of validated bugs of the same file."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from data_gen.synth.modifiers import MODIFIERS, Entity, find_entities, is_valid_python, mutate, unified_diff

# Tests, docs and vendored build helpers are not where bugs should go.
_TEST_PATH = re.compile(r"(^|/)(tests?|testing|docs?|examples?|benchmarks?)/"
                        r"|(^|/)(test_[^/]*|[^/]*_test|conftest|setup|versioneer|_version)\.py$")


@dataclass
class Candidate:
    id: str
    repo: str
    strategy: str  # procedural | llm_rewrite | llm_modify | combine
    modifier: str  # the procedural modifier, or the strategy name for LLM bugs
    file: str
    entity: str
    start: int  # the entity's lines in the clean file: what test selection covers
    end: int
    patch: str  # clean tree -> buggy tree
    parts: list[str] = field(default_factory=list)  # component candidate ids (combine)
    spans: list[list] = field(default_factory=list)  # [file, start, end] of every component

    def to_json(self) -> dict:
        return asdict(self)


def candidate_id(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:12]


def is_source_file(path: str) -> bool:
    return path.endswith(".py") and not _TEST_PATH.search(path)


KeepFn = Callable[[str, Entity], bool]


def ranked_entities(files: dict[str, str], rng: random.Random, keep: KeepFn | None = None) -> list[tuple[str, Entity]]:
    """Functions of the source files, most complex first (ties broken by the seed): complex
    functions give bugs that tests notice and that take reasoning to fix. `keep` filters
    (e.g. to functions that some test executes)."""
    out = []
    for path in sorted(files):
        try:
            ents = find_entities(files[path])
        except Exception:  # a file libcst cannot parse is skipped, not fatal
            continue
        out += [(path, e) for e in ents if e.end_line - e.start_line >= 2 and (keep is None or keep(path, e))]
    keyed = [(-e.complexity, rng.random(), path, e) for path, e in out]
    return [(p, e) for _, _, p, e in sorted(keyed, key=lambda k: k[:2])]


def procedural_candidates(repo: str, files: dict[str, str], *, seed: int, limit: int,
                          per_entity: int = 3, modifiers: list[str] | None = None,
                          keep: KeepFn | None = None) -> list[Candidate]:
    """Up to `limit` distinct candidates, reproducible for a given seed."""
    rng = random.Random(seed)
    names = modifiers or sorted(MODIFIERS)
    out: list[Candidate] = []
    seen: set[str] = set()
    for path, ent in ranked_entities(files, rng, keep):
        made = 0
        for name in rng.sample(names, len(names)):
            if made >= per_entity or len(out) >= limit:
                break
            # Each (entity, modifier) has its own seed, so one candidate never depends on
            # which others were tried before it.
            local = random.Random(candidate_id(str(seed), path, ent.qualname, name))
            buggy = mutate(files[path], ent, MODIFIERS[name], local)
            if buggy is None:
                continue
            patch = unified_diff(path, files[path], buggy)
            cid = candidate_id(repo, "procedural", name, path, ent.qualname, patch)
            if patch in seen:
                continue
            seen.add(patch)
            out.append(Candidate(cid, repo, "procedural", name, path, ent.qualname, ent.start_line, ent.end_line,
                                 patch, spans=[[path, ent.start_line, ent.end_line]]))
            made += 1
        if len(out) >= limit:
            break
    return out


def llm_candidates(repo: str, files: dict[str, str], strategy: str,
                   fn: Callable[[str, str, Entity, random.Random], str | None], *, seed: int,
                   limit: int, keep: KeepFn | None = None) -> Iterator[Candidate]:
    """Candidates from an LLM strategy, one per entity, most complex entities first. A
    generator, so the caller can stop asking the model once it has enough."""
    rng = random.Random(int(candidate_id(str(seed), strategy), 16))
    made = 0
    for path, ent in ranked_entities(files, rng, keep):
        if made >= limit:
            return
        buggy = fn(files[path], path, ent, random.Random(candidate_id(str(seed), strategy, path, ent.qualname)))
        if buggy is None or buggy == files[path] or not is_valid_python(buggy):
            continue
        patch = unified_diff(path, files[path], buggy)
        made += 1
        yield Candidate(candidate_id(repo, strategy, path, ent.qualname, patch), repo, strategy, strategy, path,
                        ent.qualname, ent.start_line, ent.end_line, patch, spans=[[path, ent.start_line, ent.end_line]])


def combinations(valid: list[Candidate], *, seed: int, limit: int, max_parts: int = 3) -> list[Candidate]:
    """Groups of 2–3 validated bugs in the same file (or module) whose entities differ.
    Whether they apply together is checked when the combined patch is built."""
    rng = random.Random(seed)
    by_file: dict[str, list[Candidate]] = {}
    for c in valid:
        if c.strategy != "combine":
            by_file.setdefault(c.file, []).append(c)
    groups = []
    for path in sorted(by_file):
        cands = sorted(by_file[path], key=lambda c: c.id)
        rng.shuffle(cands)
        used_entities: set[str] = set()
        group: list[Candidate] = []
        for c in cands:
            if c.entity in used_entities:
                continue
            group.append(c)
            used_entities.add(c.entity)
            if len(group) == rng.choice(range(2, max_parts + 1)) or len(group) == max_parts:
                groups.append(group)
                group, used_entities = [], set()
        if len(group) >= 2:
            groups.append(group)
    rng.shuffle(groups)
    return [Candidate(candidate_id(g[0].repo, "combine", *[c.id for c in g]), g[0].repo, "combine", "combine",
                      g[0].file, "+".join(c.entity for c in g), min(c.start for c in g), max(c.end for c in g), "",
                      parts=[c.id for c in g], spans=[s for c in g for s in c.spans])
            for g in groups[:limit]]
