"""TaskInstance: a swebench 5 row that round-trips through JSONL and HF datasets."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from swelego.harness import make_eval_script
from swelego.schema import SWEBENCH_FIELDS, TaskInstance, load_dataset, load_jsonl, save_dataset, save_jsonl


def _task(i: int, **kw) -> TaskInstance:
    return TaskInstance(
        instance_id=f"org__repo-{i}", repo="org/repo", base_commit="a" * 40, patch="diff --git a/x b/x\n",
        test_patch="", problem_statement="ünïcode\nand newlines", FAIL_TO_PASS=[f"t.py::test_{i}"],
        PASS_TO_PASS=["t.py::test_ok[a b]", "t.py::test_ok2"], image="swelego/env.repo:abc",
        eval_script=make_eval_script(base_commit="a" * 40, test_cmd="pytest -rA"), version="1.0",
        source="synthetic", strategy="procedural/op_swap", metadata=kw.get("metadata", {}))


def test_rows_round_trip_losslessly(tmp_path):
    tasks = [_task(0, metadata={"modifier": "op_swap", "lines": [1, 2]}), _task(1, metadata={"other": {"x": None}})]
    assert load_jsonl(save_jsonl(tasks, tmp_path / "t.jsonl")) == tasks
    save_dataset(tasks, tmp_path / "ds")
    assert load_dataset(tmp_path / "ds") == tasks
    assert load_dataset(tmp_path / "ds" / "dataset") == tasks
    assert load_dataset(tmp_path / "ds" / "tasks.jsonl") == tasks


def test_row_is_accepted_by_swebench():
    from swebench.harness.utils import make_test_spec

    row = _task(3).to_row()
    assert set(SWEBENCH_FIELDS) <= set(row)
    spec = make_test_spec(row)
    assert spec.FAIL_TO_PASS == ["t.py::test_3"] and spec.image == "swelego/env.repo:abc"
    assert any("SWEBENCH_TEST_EXIT_CODE" in line for line in spec.eval_script_list)


def test_json_string_test_lists_are_accepted():
    row = _task(4).to_row()
    row["FAIL_TO_PASS"] = json.dumps(row["FAIL_TO_PASS"])
    assert TaskInstance.from_row(row).FAIL_TO_PASS == ["t.py::test_4"]


def test_bad_rows_are_rejected():
    row = _task(5).to_row()
    with pytest.raises(ValidationError):
        TaskInstance.from_row({**row, "instance_id": "has space"})
    with pytest.raises(ValidationError):
        TaskInstance.from_row({**row, "unknown_field": 1})
    with pytest.raises(ValidationError):
        TaskInstance.from_row({k: v for k, v in row.items() if k != "image"})
