"""Tokens and labels: trained tokens are exactly the non-error assistant turns (content, tool
calls, end-of-turn token), masked turns stay in the context, unmasked labels equal TRL's own
`assistant_only_loss` labels, and the over-length / fully-masked policies count what they drop."""

from __future__ import annotations

import json
import time

import pytest

from sft.config import CurriculumConfig, DataConfig
from sft.prepare import prepare_dataset
from sft.synthetic import compact_tools, synthetic_dataset, synthetic_episode, write_jsonl
from sft.tiny import build_tiny_model, build_tiny_tokenizer
from sft.tokens import IGNORE_INDEX, render_conversations, render_prompt_completion, training_chat_template
from swelego.trajectories.labels import label_trajectory


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(None)


def _runs(labels: list[int]) -> list[list[int]]:
    runs, cur = [], []
    for x in labels:
        if x == IGNORE_INDEX:
            if cur:
                runs.append(cur)
                cur = []
        else:
            cur.append(x)
    if cur:
        runs.append(cur)
    return runs


def _expected_turn_text(msg: dict) -> str:
    """An assistant turn as Qwen3's template writes it (written out here, not taken from the template)."""
    text = "<think>\n\n</think>\n\n" + (msg.get("content") or "")
    for k, call in enumerate(msg.get("tool_calls") or []):
        if k or msg.get("content"):
            text += "\n"
        fn = call["function"]
        text += f'<tool_call>\n{{"name": "{fn["name"]}", "arguments": {fn["arguments"]}}}\n</tool_call>'
    return text + "<|im_end|>\n"


def test_trained_tokens_are_exactly_the_non_error_turns(tok):
    template = training_chat_template(tok)
    eps = [synthetic_episode(s, turns=10, mistakes=2) for s in (1, 2, 3)]
    items = []
    for ep in eps:
        labels = label_trajectory(ep.trajectory)
        items.append((ep.trajectory.messages, ep.trajectory.tools, [not lab.error for lab in labels]))
    for ep, (msgs, _tools, train), r in zip(eps, items, render_conversations(tok, items, template), strict=True):
        assert len(ep.error_turns) == 2 and train.count(False) == 2
        assistant = [m for m in msgs if m["role"] == "assistant"]
        kept = [m for m, t in zip(assistant, train, strict=True) if t]
        runs = [tok.decode(run) for run in _runs(r.labels)]
        # one contiguous trained run per kept turn, equal to that turn's text and nothing else
        assert runs == [_expected_turn_text(m) for m in kept]
        assert all(run.endswith("<|im_end|>\n") for run in runs)
        full = tok.decode(r.input_ids)
        for i, m in enumerate(msgs):
            if i in ep.error_turns:  # masked turns are still context
                assert _expected_turn_text(m) in full
                args = m["tool_calls"][0]["function"]["arguments"]
                assert args in full and all(args not in run for run in runs)
        assert "<|im_start|>assistant\n" not in "".join(runs)
        assert full.count("<|im_start|>assistant\n") == len(assistant)


def test_unmasked_labels_equal_trls_assistant_only_loss(tok, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    template = training_chat_template(tok)
    eps = synthetic_dataset(6, seed=4, tools=compact_tools())
    items = [(e.trajectory.messages, e.trajectory.tools, [True] * e.trajectory.turns) for e in eps]
    ours = render_conversations(tok, items, template)
    rows = [{"messages": [{k: v for k, v in m.items() if v is not None} for m in e.trajectory.messages],
             "tools": json.dumps(e.trajectory.tools)} for e in eps]
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tok))
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, max_length=None, use_cpu=True,
                     bf16=False, activation_checkpointing=False, report_to="none", shuffle_dataset=False)
    trl_ds = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                        processing_class=tok).train_dataset
    for r, ref in zip(ours, trl_ds, strict=True):
        assert r.input_ids == ref["input_ids"]
        assert r.labels == ref["labels"]


def _prep(tmp_path, eps, **data_kw):
    write_jsonl(eps, tmp_path / "t.jsonl")
    data = DataConfig(paths=[str(tmp_path / "t.jsonl")], **data_kw)
    warnings: list[str] = []
    tok = build_tiny_tokenizer(None)
    ds, stats = prepare_dataset(data, CurriculumConfig(), tok, training_chat_template(tok), warn=warnings.append)
    return ds, stats, warnings


def test_overlong_policies_and_fully_masked_trajectories(tmp_path):
    eps = synthetic_dataset(8, seed=2, tools=compact_tools())
    ds_all, stats_all, _ = _prep(tmp_path, eps, max_length=100_000)
    lengths = sorted(ds_all["n_tokens"])
    cut = lengths[len(lengths) // 2]
    n_long = sum(x > cut for x in lengths)
    assert 0 < n_long < len(eps)

    ds, stats, _ = _prep(tmp_path, eps, max_length=cut, overlong="drop")
    assert stats.overlong_dropped == n_long and len(ds) == len(eps) - n_long
    assert max(ds["n_tokens"]) <= cut

    ds, stats, _ = _prep(tmp_path, eps, max_length=cut, overlong="keep_start")
    assert stats.overlong_truncated == n_long and len(ds) == len(eps)
    long_rows = [r for r in ds if r["truncated"]]
    assert len(long_rows) == n_long and all(len(r["input_ids"]) == cut == len(r["labels"]) for r in long_rows)
    by_id = {r["instance_id"]: r for r in ds_all}
    for r in long_rows:  # the kept start is the untruncated row's start
        assert r["input_ids"] == by_id[r["instance_id"]]["input_ids"][:cut]

    # every assistant turn fails: dropped with a warning, the rest still trains
    hopeless = synthetic_episode(77, turns=6, mistakes=0, tools=compact_tools())
    for m in hopeless.trajectory.messages:
        if m["role"] == "tool":
            m["content"] = "bash: line 1: nothing: command not found\n[exit code: 127]"
    for s in hopeless.trajectory.steps:
        s.exit_code, s.tool = 127, "execute_bash"
    for m in hopeless.trajectory.messages:
        for c in m.get("tool_calls") or []:
            c["function"]["name"] = "execute_bash"
            c["function"]["arguments"] = json.dumps({"command": "nothing"})
    ds, stats, warnings = _prep(tmp_path, [*eps, hopeless], max_length=100_000)
    assert stats.all_masked_dropped == 1 and len(ds) == len(eps)
    assert any(hopeless.trajectory.instance_id in w and "every assistant turn is masked" in w for w in warnings)
    ds, stats, _ = _prep(tmp_path, [*eps, hopeless], max_length=100_000, error_mask=False)
    assert stats.all_masked_dropped == 0 and len(ds) == len(eps) + 1 and stats.masked_tokens == 0
    assert stats.trained_tokens > stats_all.trained_tokens


def test_prepare_counts_masked_share_and_bad_records(tmp_path):
    eps = synthetic_dataset(10, seed=8, mistakes=(1, 2), tools=compact_tools())
    write_jsonl(eps, tmp_path / "t.jsonl")
    with open(tmp_path / "t.jsonl", "a") as fh:
        fh.write('{"instance_id": "x"}\n{broken\n')
    tok = build_tiny_tokenizer(None)
    ds, stats = prepare_dataset(DataConfig(paths=[str(tmp_path)]), CurriculumConfig(), tok,
                                training_chat_template(tok), warn=lambda _: None)
    assert stats.read == 12 and stats.bad_records == 2 and stats.kept == 10
    planted = sum(len(e.error_turns) for e in eps)
    assert stats.masked_turns == planted == sum(ds["masked_turns"])
    assert stats.turns == sum(e.trajectory.turns for e in eps)
    assert 0 < stats.masked_token_share < 1 and stats.masked_tokens > 0
    assert stats.trained_tokens == sum(sum(1 for x in row if x != IGNORE_INDEX) for row in ds["labels"])
    assert ds["turns"] == [e.trajectory.turns for e in eps]


def test_prompt_completion_trains_only_the_completion(tok):
    r = render_prompt_completion(tok, [{"role": "system", "content": "You are a judge."},
                                       {"role": "user", "content": "Did it work?"}],
                                 "<judgement>YES</judgement>", enable_thinking=False)
    trained = [x for x in r.labels if x != IGNORE_INDEX]
    assert tok.decode(trained) == "<judgement>YES</judgement><|im_end|>"
    text = tok.decode(r.input_ids)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n<judgement>YES</judgement><|im_end|>")
    assert r.labels[: r.turn_tokens[0][0]] == [IGNORE_INDEX] * r.turn_tokens[0][0]


def test_tiny_tokenizer_is_cached_and_lossless(tmp_path):
    t0 = time.perf_counter()
    a = build_tiny_tokenizer(tmp_path / "tok")
    b = build_tiny_tokenizer(tmp_path / "tok")
    assert time.perf_counter() - t0 < 60
    assert a.get_vocab() == b.get_vocab() and len(a) == 4096
    assert (tmp_path / "tok" / ".swelego-key").is_file()
    text = 'def f(x):\n\treturn {"κ": x}  # ünïcode ✓\n'
    assert a.decode(a(text, add_special_tokens=False)["input_ids"]) == text
    assert a.convert_tokens_to_ids("<tool_call>") != a.unk_token_id
    assert a.eos_token == "<|im_end|>" and "{% generation %}" in a.chat_template
    p1 = build_tiny_model(a, tmp_path / "m")
    mtime = (p1 / "model.safetensors").stat().st_mtime_ns
    p2 = build_tiny_model(a, tmp_path / "m")
    assert p1 == p2 and (p2 / "model.safetensors").stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_swe_lego_turn_masks_are_kept_and_each_mask_source_masks_its_turns(tmp_path):
    """A SWE-Lego sharegpt record (text calls, per-message turn_mask) converted to our format:
    `mask_source` rules / imported / both put -100 on exactly the turns each one names."""
    from swelego.trajectories.formats import from_swe_lego, to_sharegpt

    ep = synthetic_episode(7, turns=10, mistakes=2)
    assistant = [i for i, m in enumerate(ep.trajectory.messages) if m["role"] == "assistant"]
    # the dataset's own masks, on two turns the rules do not flag
    pick = [k for k, i in enumerate(assistant) if i not in ep.error_turns][1:3]
    shipped = {assistant[k] for k in pick}
    record = json.loads(json.dumps(to_sharegpt(ep.trajectory, error_turns=shipped)))
    assert sum(m.get("turn_mask", False) for m in record["messages"]) == 2
    (tmp_path / "lego.jsonl").write_text(json.dumps(record) + "\n")

    imported = from_swe_lego(record)
    ours = [i for i, m in enumerate(imported.messages) if m["role"] == "assistant"]
    assert imported.imported_masks == [ours[k] for k in pick]
    by_rules = {k for k, lab in enumerate(label_trajectory(imported)) if lab.error}
    assert len(by_rules) == 2 and by_rules.isdisjoint(pick)
    assert from_swe_lego({**record, "messages": [{k: v for k, v in m.items() if k != "turn_mask"}
                                                 for m in record["messages"]]}).imported_masks is None
    assert json.loads(imported.to_json())["imported_masks"] == imported.imported_masks

    tok = build_tiny_tokenizer(None)
    template = training_chat_template(tok)
    n = len(ours)
    (full,) = render_conversations(tok, [(imported.messages, imported.tools, [True] * n)], template)
    expected = {"rules": by_rules, "imported": set(pick), "both": by_rules | set(pick)}
    for source, masked in expected.items():
        data = DataConfig(paths=[str(tmp_path / "lego.jsonl")], mask_source=source)
        ds, stats = prepare_dataset(data, CurriculumConfig(), tok, template)
        (row,) = ds
        assert row["input_ids"] == full.input_ids and stats.kept == 1 and stats.without_imported_masks == 0
        assert row["masked_turns"] == len(masked) == stats.masked_turns
        trained = set()
        for k, (a, b) in enumerate(full.turn_tokens):
            span = row["labels"][a:b]
            assert span == ([IGNORE_INDEX] * (b - a) if k in masked else full.input_ids[a:b]), (source, k)
            trained.update(range(a, b) if k not in masked else ())
        assert all(x == IGNORE_INDEX for i, x in enumerate(row["labels"]) if i not in trained)
    from click.testing import CliRunner

    from sft.cli import sft as sft_cli

    res = CliRunner().invoke(sft_cli, ["label", str(tmp_path / "lego.jsonl"), "--out", str(tmp_path / "lab"),
                                       "--mask-source", "imported"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "lab" / "summary.json").read_text())
    assert summary["masked_turns"] == 2 and summary["masked_by_rule"] == {"imported_mask": 2}
    # a trajectory with no shipped masks: `imported` trains every turn and says so
    write_jsonl([ep], tmp_path / "ours.jsonl")
    ds, stats = prepare_dataset(DataConfig(paths=[str(tmp_path / "ours.jsonl")], mask_source="imported"),
                                CurriculumConfig(), tok, template)
    assert stats.without_imported_masks == 1 and ds[0]["masked_turns"] == 0
    with pytest.raises(Exception, match="mask_source must be one of rules, imported, both"):
        prepare_dataset(DataConfig(paths=[str(tmp_path / "ours.jsonl")], mask_source="turn_mask"),
                        CurriculumConfig(), tok, template)
