"""Repository sources: parsing, and bad input reported as one clear line."""

from __future__ import annotations

import pytest
from conftest import git

from swelego.errors import SourceError
from swelego.sandbox.sources import RepoSource, download_sdist, prepare_testbed


@pytest.mark.parametrize("text,kind,location,ref", [
    ("pypi:toolz==1.0.0", "pypi", "toolz", "1.0.0"),
    ("pypi:python-slugify", "pypi", "python-slugify", None),
    ("https://github.com/pytoolz/toolz.git@0123abc", "git", "https://github.com/pytoolz/toolz.git", "0123abc"),
    ("git@github.com:pytoolz/toolz.git", "git", "git@github.com:pytoolz/toolz.git", None),
    ("file:///srv/repos/toolz@v1.0", "git", "file:///srv/repos/toolz", "v1.0"),
])
def test_parse(text, kind, location, ref):
    s = RepoSource.parse(text)
    assert (s.kind, s.location, s.ref) == (kind, location, ref)


def test_parse_local_path(tmp_path):
    s = RepoSource.parse(f"{tmp_path}@main")
    assert (s.kind, s.location, s.ref) == ("local", str(tmp_path), "main")


@pytest.mark.parametrize("text,words", [
    ("svn://example.org/repo", "unknown source scheme"),
    ("foo:bar", "unknown source scheme"),
    ("pypi:toolz==", "expected pypi:NAME==VERSION"),
    ("pypi:", "expected pypi:NAME==VERSION"),
    ("/definitely/not/here", "no such local path"),
    ("", "empty"),
])
def test_bad_sources_are_one_line_errors(text, words):
    with pytest.raises(SourceError) as e:
        RepoSource.parse(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_missing_pypi_version_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError) as e:
        download_sdist("toolz", "99.99.99", tmp_path)
    assert "pypi:toolz==99.99.99: no sdist of that version on PyPI" in str(e.value)


def test_plain_directory_gets_a_deterministic_commit(tmp_path):
    src = tmp_path / "plain"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("X = 1\n")
    (src / ".gitignore").write_text("pkg/\n")  # ignored files still belong to the tree
    a = prepare_testbed(RepoSource.parse(str(src)), tmp_path / "a", tmp_path / "cache")
    b = prepare_testbed(RepoSource.parse(str(src)), tmp_path / "b", tmp_path / "cache")
    assert a.base_commit == b.base_commit
    assert "pkg/__init__.py" in git("ls-files", cwd=a.testbed)


def test_unknown_git_ref_is_a_clear_error(toy_repo, tmp_path):
    with pytest.raises(SourceError) as e:
        prepare_testbed(RepoSource.parse(f"{toy_repo}@nosuchref"), tmp_path / "t", tmp_path / "cache")
    assert "no commit 'nosuchref'" in str(e.value)
