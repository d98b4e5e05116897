"""swelego.records, the one module every room reads and writes records with: torn tails, bad
lines with file:line, appends, and atomic writes that a killed writer cannot leave half done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swelego.records import (
    append_jsonl,
    iter_jsonl,
    iter_records,
    read_jsonl,
    record_writer,
    recover_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from swelego.store import ResultStore

REPO = Path(__file__).resolve().parents[1]

# A writer that streams records slowly into `target` and says when it is half way.
WRITER = """
import sys, time
from pathlib import Path
from swelego.records import write_jsonl_atomic

target, ready = Path(sys.argv[1]), Path(sys.argv[2])

def records():
    for i in range(1000):
        if i == 500:
            ready.write_text("half")
        if i >= 500:
            time.sleep(0.05)
        yield {"i": i, "pad": "x" * 200}

write_jsonl_atomic(target, records())
"""


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "data" / "kept.jsonl"
    old = [{"i": -1, "old": True}, {"i": -2, "old": True}]
    write_jsonl_atomic(target, old)
    before = target.read_bytes()
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ready)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert ready.exists(), "the writer never got half way"
        partial = [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
        assert partial and partial[0].stat().st_size > 500 * 200  # half the records are on disk, elsewhere
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == before and read_jsonl(target) == old
    # readers of the folder never see the dead writer's temporary file
    assert [where for where, _ in iter_records(target.parent)] == ["kept.jsonl:1", "kept.jsonl:2"]
    # the next writer replaces the file whole
    assert write_jsonl_atomic(target, ({"i": i} for i in range(3))) == 3
    assert read_jsonl(target) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "report.json"
    write_json_atomic(target, {"v": 1})

    def boom():
        yield {"i": 0}
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(target, boom())
    assert json.loads(target.read_text()) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # a plain file's mode, not mkstemp's 0600


def test_torn_tail_is_dropped_and_bad_lines_are_one_line_with_file_and_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"a": 1}\n\nnot json\n{"a": 2}\n{"a": 3, "b"')  # line 3 bad, line 5 torn
    assert [n for n, _ in iter_jsonl(p)] == [1, 3, 4]
    problems: list[str] = []
    assert read_jsonl(p, problems=problems) == [{"a": 1}, {"a": 2}]
    assert problems == [f"{p}:3: not valid JSON (Expecting value)"]
    with pytest.raises(ValueError, match=r"t\.jsonl:3: not valid JSON"):
        read_jsonl(p, strict=True)
    assert read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")
    # iter_records gives the same file:line places, the torn tail left out
    assert [(w, type(r).__name__) for w, r in iter_records(p)] == [("t.jsonl:1", "dict"), ("t.jsonl:3", "ValueError"),
                                                                    ("t.jsonl:4", "dict")]


def test_recover_cuts_the_torn_tail_so_appends_start_on_a_line(tmp_path):
    p = tmp_path / "store.jsonl"
    p.write_text('{"key": "a", "value": {"n": 1}}\n{"key": "b", "val')
    assert recover_jsonl(p) == [{"key": "a", "value": {"n": 1}}]
    assert p.read_text() == '{"key": "a", "value": {"n": 1}}\n'
    append_jsonl(p, [{"key": "c", "value": {"n": 3}}], fsync=True)
    with ResultStore(p) as store:
        assert dict(store) == {"a": {"n": 1}, "c": {"n": 3}}
        store.put("d", {"n": 4})
    p.write_bytes(p.read_bytes() + b'{"key": "e"')  # a put killed mid-line
    with ResultStore(p) as store:
        assert sorted(k for k, _ in store) == ["a", "c", "d"]
    assert p.read_text().endswith('"n": 4}}\n')


def test_record_writer_writes_an_array_for_json_and_lines_otherwise(tmp_path, capsys):
    with record_writer(tmp_path / "rows.json") as add:
        add({"a": 1})
        add({"b": "é"})
    assert json.loads((tmp_path / "rows.json").read_text(encoding="utf-8")) == [{"a": 1}, {"b": "é"}]
    with record_writer(tmp_path / "none.json"):
        pass
    assert (tmp_path / "none.json").read_text() == "[]\n"
    with record_writer(tmp_path / "rows.jsonl") as add:
        add({"a": 1})
    assert (tmp_path / "rows.jsonl").read_text() == '{"a": 1}\n'
    with record_writer(None) as add:
        add({"a": 2})
    assert capsys.readouterr().out == '{"a": 2}\n'
