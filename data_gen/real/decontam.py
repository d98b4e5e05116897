"""Decontamination against SWE-bench: skip repositories of SWE-bench Verified (a list shipped
with the package) and changes whose patch matches a task of any swebench dataset file the
user passes, by a hash that ignores context lines, hunk offsets and index lines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from data_gen.real.filters import file_diffs
from swelego.errors import SwelegoError
from swelego.harness import patch_files

VERIFIED_REPOS_FILE = Path(__file__).with_name("swebench_verified_repos.txt")


def verified_repos() -> set[str]:
    lines = VERIFIED_REPOS_FILE.read_text().splitlines()
    return {ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#")}


def repo_overlap(repo: str) -> str | None:
    """Why `repo` (owner/name, or a bare name when the owner is unknown) overlaps SWE-bench
    Verified, or None. A bare name matches any owner: a local clone of `flask` is skipped too."""
    name = repo.strip().lower().removesuffix(".git")
    for known in sorted(verified_repos()):
        if name == known or ("/" not in name and name == known.split("/", 1)[1]):
            return f"{repo} is a SWE-bench Verified repository ({known})"
    return None


def patch_hash(patch: str) -> str:
    """A hash of what a diff changes: per file, its path and its added and removed lines."""
    files = []
    for block in file_diffs(patch):
        changed = [ln.rstrip() for ln in block.splitlines()
                   if ln[:1] in "+-" and not ln.startswith(("+++ ", "--- "))]
        files.append([patch_files(block)[-1:], changed])
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()


class Decontaminator:
    """Checks repositories and patches; `allow=True` reports nothing (--allow-contaminated)."""

    def __init__(self, datasets: list[str | Path] = (), allow: bool = False):
        self.allow = allow
        self.known: dict[str, str] = {}  # patch hash -> instance id
        for path in datasets:
            for row in _load_rows(Path(path)):
                for key in ("patch", "test_patch"):
                    if row.get(key):
                        self.known[patch_hash(row[key])] = row.get("instance_id", "?")

    def repo_reason(self, repo: str) -> str | None:
        return None if self.allow else repo_overlap(repo)

    def patch_reason(self, patch: str, test_patch: str = "") -> str | None:
        if self.allow:
            return None
        for text in (patch, test_patch):
            if text and (hit := self.known.get(patch_hash(text))):
                return f"patch matches SWE-bench task {hit}"
        return None


def _load_rows(path: Path) -> list[dict]:
    """Rows of a local swebench dataset file (.json, .jsonl, .parquet, or a directory with
    `<split>.parquet` / a save_to_disk split); never the Hugging Face hub."""
    from swebench.harness.utils import load_swebench_dataset

    if not path.exists():
        raise SwelegoError(f"no swebench dataset file at {path}")
    name, split = str(path), "test"
    if path.is_dir() and not (path / "test.parquet").exists() and not (path / "test" / "dataset_info.json").exists():
        if (path / "dataset_info.json").exists():  # a save_to_disk directory itself
            import datasets

            return list(datasets.load_from_disk(str(path)))
        raise SwelegoError(f"{path}: not a swebench dataset (expected .json, .jsonl, .parquet, or a directory "
                           "with test.parquet or test/)")
    try:
        return [dict(r) for r in load_swebench_dataset(name, split)]
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise SwelegoError(f"could not read swebench dataset {path}: {type(e).__name__}: {e}") from None
