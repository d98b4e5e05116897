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
        TaskInstance.from_row({k: v for k, v in row.items() if k != "image"})


# -- official rows: every field kept, unchanged ------------------------------------------------------------
# Field lists of the released datasets (their HF dataset cards): SWE-bench / Verified add
# hints_text, created_at, version, environment_setup_commit (+ Verified's `difficulty`) with the
# test lists as JSON strings; swebench 5 rows also carry image, eval_script, log_parser, eval_type
# and image_assets. SWE-Gym has lists for the tests; SWE-rebench adds `meta` (a struct), install
# data and `docker_image`; SWE-smith has `image_name`. The runnable swebench 5 fields are added to
# the rows that lack them (a row needs an image and an eval script to be run).

_EVAL = make_eval_script(base_commit="c" * 40, test_cmd="pytest -rA")


def _verified_row(**kw) -> dict:
    row = {
        "repo": "astropy/astropy", "instance_id": "astropy__astropy-12907", "base_commit": "d16bfe05a7" * 4,
        "patch": "diff --git a/astropy/modeling/separable.py b/astropy/modeling/separable.py\n",
        "test_patch": "diff --git a/astropy/modeling/tests/test_separable.py b/x\n",
        "problem_statement": "Modeling's `separability_matrix` does not compute separability correctly",
        "hints_text": "", "created_at": "2022-03-03T15:14:54Z", "version": "4.3",
        "FAIL_TO_PASS": json.dumps(["astropy/modeling/tests/test_separable.py::test_separable[compound_model6]"]),
        "PASS_TO_PASS": json.dumps(["astropy/modeling/tests/test_separable.py::test_coord_matrix"]),
        "environment_setup_commit": "298ccb478e" * 4, "difficulty": "15 min - 1 hour",
        "image": "swebench/sweb.eval.x86_64.astropy_1776_astropy-12907:latest", "eval_script": _EVAL,
        "log_parser": "parse_log_pytest", "eval_type": "pass_and_fail",
        "image_assets": {"test_patch": [{"path": "astropy/tests/data/x.png", "url": "https://example.org/x.png"}]},
    }
    row.update(kw)
    return row


def _rebench_row() -> dict:
    return {
        "instance_id": "encode__httpx-2701", "repo": "encode/httpx", "base_commit": "e" * 40, "patch": "diff\n",
        "test_patch": "", "problem_statement": "x", "hints_text": "h", "created_at": "2023-05-01T10:00:00Z",
        "version": "0.24", "environment_setup_commit": "e" * 40, "FAIL_TO_PASS": ["tests/a.py::t"],
        "PASS_TO_PASS": [], "meta": {"llm_score": {"difficulty_score": 1, "issue_text_score": 2, "test_score": 3},
                                     "num_modified_files": 1, "is_lite": False, "failed_lite_validators": []},
        "install_config": {"python": "3.9", "install": "pip install -e .", "test_cmd": "pytest -rA", "pre_install": None},
        "requirements": "anyio==3.6.2\n", "environment": "name: testbed\n", "license_name": "BSD-3-Clause",
        "docker_image": "swerebench/sweb.eval.x86_64.encode_1776_httpx-2701", "__index_level_0__": 7,
        "image": "swerebench/sweb.eval.x86_64.encode_1776_httpx-2701", "eval_script": _EVAL,
    }


def _smith_row() -> dict:
    return {"instance_id": "pandas-dev__pandas.95280573.pr_53652", "repo": "swesmith/pandas-dev__pandas.95280573",
            "patch": "diff\n", "FAIL_TO_PASS": ["t::a"], "PASS_TO_PASS": ["t::b"], "problem_statement": "p",
            "image_name": "jyangballin/swesmith.x86_64.pandas-dev_1776_pandas.95280573", "base_commit": "f" * 40,
            "image": "jyangballin/swesmith.x86_64.pandas-dev_1776_pandas.95280573", "eval_script": _EVAL}


def _same_values(original: dict, row: dict) -> None:
    """Every field of `original` is in `row` with the same value (test lists compared as lists)."""
    for key, value in original.items():
        assert key in row, key
        if key in ("FAIL_TO_PASS", "PASS_TO_PASS") and isinstance(value, str):
            value = json.loads(value)
        assert json.dumps(row[key], ensure_ascii=False) == json.dumps(value, ensure_ascii=False), key


def test_an_official_verified_row_keeps_every_field_through_jsonl_and_datasets(tmp_path):
    official = _verified_row()
    task = TaskInstance.from_row(official)
    assert task.difficulty == "15 min - 1 hour" and task.curriculum_bucket == ""  # the row's, not ours
    assert task.FAIL_TO_PASS == ["astropy/modeling/tests/test_separable.py::test_separable[compound_model6]"]
    _same_values(official, task.to_row())
    back = load_jsonl(save_jsonl([task], tmp_path / "t.jsonl"))
    assert back == [task]
    _same_values(official, back[0].to_row())
    save_dataset([task], tmp_path / "ds")
    for where in (tmp_path / "ds", tmp_path / "ds" / "dataset"):
        loaded = load_dataset(where)
        assert loaded == [task]
        _same_values(official, loaded[0].to_row())
    # and image_assets as the JSON string of the HF parquet files, kept as a string
    as_string = _verified_row(image_assets=json.dumps(official["image_assets"]))
    save_dataset([TaskInstance.from_row(as_string)], tmp_path / "ds2")
    _same_values(as_string, load_dataset(tmp_path / "ds2")[0].to_row())


def test_official_row_goes_to_swebench_unchanged():
    from swebench.harness.utils import make_test_spec

    for official in (_verified_row(), _verified_row(image_assets=json.dumps(_verified_row()["image_assets"]))):
        spec = make_test_spec(TaskInstance.from_row(official).to_row())
        assert spec.instance_id == "astropy__astropy-12907" and spec.version == "4.3"
        assert spec.FAIL_TO_PASS == json.loads(official["FAIL_TO_PASS"])
        assert spec.image_assets == _verified_row()["image_assets"]
        assert any("SWEBENCH_TEST_EXIT_CODE" in line for line in spec.eval_script_list)


def test_a_mixed_dataset_of_our_rows_and_official_rows_saves_and_loads(tmp_path):
    gym = {k: v for k, v in _verified_row(instance_id="getmoto__moto-5752").items()
           if k not in ("difficulty", "image_assets")}
    gym.update(FAIL_TO_PASS=["tests/test_x.py::test_a"], PASS_TO_PASS=["tests/test_x.py::test_b"])
    nulls = _verified_row(instance_id="x__y-1", environment_setup_commit=None, difficulty="")
    originals = [_verified_row(), _rebench_row(), _smith_row(), gym, nulls]
    ours = [_task(0, metadata={"modifier": "op_swap"}), _task(1)]
    tasks = ours + [TaskInstance.from_row(r) for r in originals]
    save_dataset(tasks, tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    assert loaded == tasks
    assert [t.extra_fields for t in loaded[:2]] == [{}, {}]  # our rows gain no columns of the others
    for original, task in zip(originals, loaded[2:], strict=True):
        _same_values(original, task.to_row())
    assert loaded[3].meta["llm_score"]["difficulty_score"] == 1 and loaded[3].__index_level_0__ == 7
    assert loaded[6].environment_setup_commit is None and loaded[6].difficulty == ""
    assert load_dataset(tmp_path / "ds" / "tasks.jsonl") == tasks


def test_numbers_and_timestamps_in_text_fields_become_swebench_strings():
    from datetime import datetime

    task = TaskInstance.from_row(_verified_row(version=3.0, created_at=datetime(2022, 3, 3, 15, 14, 54)))
    assert task.version == "3.0" and task.created_at == "2022-03-03T15:14:54Z"
