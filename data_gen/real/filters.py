"""Candidate records and the filters every mined change must pass (SWE-rebench defaults).

A change is split into its code part (`patch`, what a solver must write) and its test part
(`test_patch`, applied before grading). Filters are reasons, not booleans, so a run can say
why each change was dropped."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from swelego.config import doc_field
from swelego.harness import patch_files
from swelego.records import iter_jsonl

TEST_DIRS = {"test", "tests", "testing", "e2e", "unittests", "unit_tests"}


@dataclass
class FilterConfig:
    """Which mined changes become candidates."""

    min_files: int = doc_field("Fewest files the whole change touches (code + tests).", default=1)
    max_files: int = doc_field("Most files the whole change touches (code + tests).", default=15)
    require_tests: bool = doc_field("The change must touch at least one test file (its tests define the task).",
                                    default=True)
    require_code: bool = doc_field("The change must touch at least one non-test file (the fix a solver writes).",
                                   default=True)
    min_statement_chars: int = doc_field("The problem statement must have at least this many non-blank "
                                         "characters.", default=10)
    allow_binary: bool = doc_field("Keep changes with binary diffs (they cannot be shown to a model as text).",
                                   default=False)


@dataclass
class Candidate:
    """A mined change, before validation. One JSON line of `candidates.jsonl`.

    instance_id: swebench-style id, `owner__name-<PR number or short sha>`.
    repo: `owner/name` when known, else the repository's directory name.
    source: where validation gets the repository: a git URL or a local path.
    base_commit: the upstream commit both patches apply to.
    patch / test_patch: the code part and the test part of the change.
    problem_statement: issue title + body (PRs); for commits the texts of the local issues they
        name, or empty. A commit message describes the fix: it is `metadata["commit_message"]`.
    statement_origin: `issue` (that text), or `tests` for a commit without one. Validation writes
        every commit's final statement once the failing tests are known (validate.commit_statement:
        its issue text if leak-free, else LLM, else template); PR statements stay as mined.
    origin / ref: "pr" and the PR number, or "commit" and the commit sha.
    """

    instance_id: str
    repo: str
    source: str
    base_commit: str
    patch: str
    test_patch: str
    problem_statement: str
    origin: str
    ref: str
    statement_origin: str = "issue"
    hints_text: str = ""
    created_at: str = ""
    issues: list[int] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Candidate:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


_TEXT_FIELDS = ("instance_id", "repo", "source", "base_commit", "patch", "test_patch", "problem_statement")


def _candidate(rec) -> Candidate | None:
    """The Candidate of one JSON record (None for a mined.jsonl line that is no candidate)."""
    if not isinstance(rec, dict):
        raise ValueError(f"a JSON {type(rec).__name__}, not an object")
    if "key" in rec and "value" in rec:  # a line of mined.jsonl
        if not isinstance(rec["value"], dict) or rec["value"].get("status") != "candidate":
            return None
        rec = rec["value"]["candidate"]
    missing = [k for k in (*_TEXT_FIELDS, "origin", "ref") if k not in rec]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    wrong = [k for k in _TEXT_FIELDS if not isinstance(rec[k], str)]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} must be text")
    if not rec["instance_id"] or any(c.isspace() for c in rec["instance_id"]) or "/" in rec["instance_id"]:
        raise ValueError(f"instance_id must be non-empty, without spaces or '/': {rec['instance_id']!r}")
    return Candidate.from_json(rec)


def load_candidates(path: str | Path, problems: list[str] | None = None) -> list[Candidate]:
    """Candidates from a JSONL file (plain records, or a mining store's key/value lines) or a
    mining output directory (its candidates.jsonl). A malformed line raises ValueError
    (`file:N: ...`); with `problems`, it is described there instead and the rest still load."""
    path = Path(path)
    if path.is_dir():
        path = path / "candidates.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no candidates file at {path}")
    out = []
    for n, rec in iter_jsonl(path):
        try:
            if isinstance(rec, ValueError):
                raise rec
            cand = _candidate(rec)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            why = str(e).splitlines()[0][:300]
            if problems is None:
                raise ValueError(f"{path}:{n}: not a candidate record ({why})") from None
            problems.append(f"{path}:{n}: not a candidate record ({why})")
            continue
        if cand is not None:
            out.append(cand)
    return out


def is_test_path(path: str) -> bool:
    """Test files by the usual conventions: a tests/ directory anywhere, test_*.py, *_test.py,
    conftest.py."""
    p = PurePosixPath(path)
    if any(part.lower() in TEST_DIRS for part in p.parts[:-1]):
        return True
    name = p.name.lower()
    return name.startswith("test_") or name.endswith(("_test.py", "_tests.py")) or name in ("conftest.py", "tests.py")


def file_diffs(diff: str) -> list[str]:
    """A unified git diff cut into one text per file (each starting with `diff --git`)."""
    blocks: list[list[str]] = []
    for line in diff.splitlines(keepends=True):
        if line.startswith("diff --git "):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    return ["".join(b) for b in blocks]


def _is_binary(block: str) -> bool:
    return bool(re.search(r"^(Binary files .* differ|GIT binary patch)$", block, re.MULTILINE))


@dataclass
class SplitDiff:
    patch: str  # non-test files
    test_patch: str  # test files
    files: list[str]
    binary: list[str]


def split_diff(diff: str) -> SplitDiff:
    """Split a change into code and test parts by file path."""
    code, tests, files, binary = [], [], [], []
    for block in file_diffs(diff):
        paths = patch_files(block)
        files += [p for p in paths if p not in files and p != "/dev/null"]
        if _is_binary(block):
            binary += paths[-1:]
        (tests if any(is_test_path(p) for p in paths) else code).append(block)
    return SplitDiff("".join(code), "".join(tests), files, binary)


def rejection_reasons(split: SplitDiff, statement: str, cfg: FilterConfig) -> list[str]:
    """Why a change is not a candidate (empty when it is); each reason is `label: detail`."""
    reasons = []
    n = len(split.files)
    if not cfg.min_files <= n <= cfg.max_files:
        reasons.append(f"file count: touches {n} files (allowed {cfg.min_files}-{cfg.max_files})")
    if cfg.require_tests and not split.test_patch:
        reasons.append("no tests: touches no test file")
    if cfg.require_code and not split.patch:
        reasons.append("no code: touches only test files")
    if not cfg.allow_binary and split.binary:
        reasons.append(f"binary: binary diff of {split.binary[0]}")
    if len("".join(statement.split())) < cfg.min_statement_chars:
        reasons.append(f"short statement: fewer than {cfg.min_statement_chars} characters")
    return reasons


def reason_label(reason: str) -> str:
    """The countable label of a reason (`file count`, `no tests`, ...)."""
    return reason.split(":", 1)[0]
