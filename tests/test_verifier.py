"""Verifier pieces without Docker: the judge prompt and its budget, P(YES) from logits and from
an endpoint's logprobs, batched scoring on the tiny model, judge data splits and balance."""

from __future__ import annotations

import json
import math

import openai_server as fake_openai
import pytest
from click.testing import CliRunner

from swelego.agent import Trajectory
from verifier.cli import verifier as verifier_cli
from verifier.data import LoadReport, balance, build_judge_data, load_trajectories, split_by_instance
from verifier.prompt import (
    NO_PATCH,
    OPEN_TAG,
    JudgeFormatter,
    render_message,
    target,
    verdict_token_ids,
)
from verifier.score import (
    EndpointScorer,
    LocalScorer,
    Verdict,
    p_yes_from_logits,
    p_yes_from_top_logprobs,
    score_trajectories,
    two_way_softmax,
)

openai_server = fake_openai.openai_server
PATCH = """\
diff --git a/pkg/core.py b/pkg/core.py
--- a/pkg/core.py
+++ b/pkg/core.py
@@ -1,2 +1,2 @@
 def area(w, h):
-    return w + h
+    return w * h
"""


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from sft.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_tokenizer):
    from sft.tiny import build_tiny_model

    return build_tiny_model(tiny_tokenizer, seed=3)


def _call(i, name, args):
    return {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def make_trajectory(instance_id="demo__pkg-1", *, steps=3, output_chars=200, patch=PATCH, resolved=True,
                    sample=None) -> Trajectory:
    msgs = [{"role": "system", "content": "You are an agent. " * 10},
            {"role": "user", "content": "<issue>\narea() adds instead of multiplying\n</issue>"}]
    for i in range(steps):
        msgs.append({"role": "assistant", "content": f"Step {i}: looking around.",
                     "tool_calls": [_call(i, "execute_bash", {"command": f"cat file_{i}.py"})]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"output {i} " + "x = 1\n" * (output_chars // 6)})
    msgs.append({"role": "assistant", "content": "Tests pass now: 3 passed.",
                 "tool_calls": [_call(99, "finish", {"message": "done"})]})
    msgs.append({"role": "tool", "tool_call_id": "c99", "content": "LAST-OBSERVATION"})
    sampling = {} if sample is None else {"sample": sample}
    return Trajectory(instance_id=instance_id, messages=msgs, patch=patch, resolved=resolved, policy="oracle",
                      sampling=sampling)


# -- P(YES) ---------------------------------------------------------------------------------------


def test_p_yes_takes_the_max_logit_of_each_spelling_set():
    logits = [0.0] * 10
    logits[2], logits[5] = -1.0, 2.0  # two YES spellings: the larger counts
    logits[3], logits[7] = 0.5, -3.0  # two NO spellings
    v = p_yes_from_logits(logits, yes_ids=[2, 5], no_ids=[3, 7])
    assert v.logit_yes == 2.0 and v.logit_no == 0.5
    assert v.score == pytest.approx(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5)))
    swapped = p_yes_from_logits(logits, yes_ids=[3, 7], no_ids=[2, 5])
    assert v.score + swapped.score == pytest.approx(1.0)
    assert two_way_softmax(1000.0, -1000.0) == 1.0 and two_way_softmax(-1000.0, 1000.0) == 0.0
    assert two_way_softmax(0.3, 0.3) == 0.5


def test_verdict_ids_cover_spellings_with_and_without_a_leading_space(tiny_tokenizer):
    yes, no = verdict_token_ids(tiny_tokenizer)
    first = lambda s: tiny_tokenizer(s, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    assert first("YES") in yes and first(" YES") in yes and first(" yes") in yes
    assert first("NO") in no and first(" NO") in no and first(" No") in no
    assert first("YES") != first(" YES")  # the tiny BPE gives the space-prefixed form its own token
    assert not set(yes) & set(no)


def test_p_yes_from_endpoint_logprobs():
    top = [{"token": " YES", "logprob": -0.2}, {"token": "Yes", "logprob": -1.5},
           {"token": "NO", "logprob": -2.0}, {"token": "\n", "logprob": -4.0}]
    v = p_yes_from_top_logprobs(top)
    assert v.score == pytest.approx(math.exp(-0.2) / (math.exp(-0.2) + math.exp(-2.0))) and not v.note
    bounded = p_yes_from_top_logprobs([{"token": "YES", "logprob": -0.01}, {"token": "The", "logprob": -6.0}])
    assert bounded.logit_no == -6.0 and "NO not in top logprobs" in bounded.note and bounded.score > 0.99
    assert p_yes_from_top_logprobs([{"token": "Maybe", "logprob": -0.1}]).score is None


def test_local_scorer_batches_give_the_same_scores_as_single_prompts(tiny_model_dir, tiny_tokenizer):
    import torch

    trajs = [make_trajectory(steps=s, output_chars=40 * s) for s in (1, 4, 9)]
    single = LocalScorer(tiny_model_dir, batch_size=1, max_length=2048)
    batched = LocalScorer(tiny_model_dir, batch_size=3, max_length=2048)
    prompts = [single.formatter.prompt(t.messages, t.patch).messages for t in trajs]
    a, b = single.score(prompts), batched.score(prompts)
    for x, y in zip(a, b, strict=True):
        assert 0.0 < x.score < 1.0 and x.score == pytest.approx(y.score, abs=1e-4)
    # the same number straight from the model's logits at the position after "<judgement>"
    ids = single.formatter.encode(single.formatter.render(prompts[1]))
    with torch.no_grad():
        logits = single.model(input_ids=torch.tensor([ids])).logits[0, -1]
    yes, no = verdict_token_ids(tiny_tokenizer)
    direct = two_way_softmax(max(float(logits[i]) for i in yes), max(float(logits[i]) for i in no))
    assert a[1].score == pytest.approx(direct, abs=1e-5)


# -- the judge prompt -----------------------------------------------------------------------------


def test_prompt_shape_and_empty_patch():
    f = JudgeFormatter(None)
    jp = f.prompt(make_trajectory().messages, PATCH)
    system, user = jp.messages
    assert "<judgement>YES</judgement>" in system["content"] and "<judgement>NO</judgement>" in system["content"]
    text = user["content"]
    assert text.startswith("=== INTERACTION LOG ===") and "=== FINAL PATCH ===" in text
    assert "[PATCH]\n" + PATCH.rstrip("\n") + "\n[/PATCH]" in text
    assert text.index("[SYSTEM]") < text.index("[USER]") < text.index("[ASSISTANT]") < text.index("[TOOL]")
    assert "Tool call execute_bash: {\"command\": \"cat file_0.py\"}" in text
    empty = f.prompt(make_trajectory().messages, "  \n").messages[1]["content"]
    assert f"[PATCH]\n{NO_PATCH}\n[/PATCH]" in empty
    assert target(True) == "<judgement>YES</judgement>" and target(False) == "<judgement>NO</judgement>"
    assert render_message({"role": "tool", "content": "ok"}) == "[TOOL]\nok\n[/TOOL]\n"


@pytest.mark.parametrize("use_tokenizer", [True, False])
def test_trimmed_prompt_keeps_the_whole_patch_the_issue_and_the_end(tiny_tokenizer, use_tokenizer):
    tok = tiny_tokenizer if use_tokenizer else None
    big_patch = PATCH + "".join(f"+# line {i} of a long patch\n" for i in range(12))
    traj = make_trajectory(steps=40, output_chars=600, patch=big_patch)
    full = JudgeFormatter(tok).prompt(traj.messages, traj.patch)
    f = JudgeFormatter(tok, max_length=900, chat_template_kwargs={"enable_thinking": False})
    jp = f.prompt(traj.messages, traj.patch)
    text = jp.messages[1]["content"]
    assert f.count(f.render(full.messages)) > 3000  # the log really had to shrink
    assert jp.tokens <= 900 - 1 and not jp.over_budget
    assert jp.omitted_messages > 40
    assert big_patch.rstrip("\n") in text  # whole, verbatim
    assert "area() adds instead of multiplying" in text  # the issue
    assert "LAST-OBSERVATION" in text and "Tests pass now" in text  # the end of the log
    assert "omitted to fit the length budget" in text
    assert "You are an agent." not in text  # the agent's system prompt goes first


def test_patch_longer_than_the_budget_is_kept_whole_and_flagged(tiny_tokenizer):
    huge = PATCH + "".join(f"+# padding line {i}\n" for i in range(400))
    f = JudgeFormatter(tiny_tokenizer, max_length=400)
    jp = f.prompt(make_trajectory().messages, huge)
    assert jp.over_budget and huge.rstrip("\n") in jp.messages[1]["content"]


def test_training_example_trains_only_the_answer(tiny_tokenizer):
    f = JudgeFormatter(tiny_tokenizer, max_length=1024, chat_template_kwargs={"enable_thinking": False})
    assert f.completion(True) == "YES</judgement><|im_end|>" and f.completion(False) == "NO</judgement><|im_end|>"
    ex = f.example(make_trajectory().messages, PATCH, True)
    assert ex["messages"][-1] == {"role": "assistant", "content": "<judgement>YES</judgement>"}
    tok = f.tokenize_example(ex["messages"], True)
    prompt_ids = f.encode(f.render(ex["messages"][:2]))
    n = len(prompt_ids)
    assert tok["input_ids"][:n] == prompt_ids and f.render(ex["messages"][:2]).endswith(OPEN_TAG)
    assert tok["completion_mask"] == [0] * n + [1] * (len(tok["input_ids"]) - n)
    answer = tiny_tokenizer.decode(tok["input_ids"][n:])
    assert answer == "YES</judgement><|im_end|>"
    # the prompt ends where the chat template's assistant turn starts, thinking disabled
    assert f.render(ex["messages"][:2]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n<judgement>")


# -- judge data ------------------------------------------------------------------------------------


def test_split_is_by_instance_and_balance_modes():
    trajs = [make_trajectory(f"demo__pkg-{i}", resolved=(j % 3 == 0), sample=j, steps=1)
             for i in range(10) for j in range(3)]
    data = build_judge_data(trajs, JudgeFormatter(None), eval_fraction=0.3, balance_mode="none", seed=1)
    train_ids = {e["instance_id"] for e in data.train}
    eval_ids = {e["instance_id"] for e in data.eval}
    assert not train_ids & eval_ids and len(eval_ids) == 3 and len(train_ids) == 7
    assert len(data.train) + len(data.eval) == 30
    assert split_by_instance(["a", "b", "c"], 0.3, seed=5) == split_by_instance(["c", "b", "a"], 0.3, seed=5)
    ex = [{"label": 1}] * 3 + [{"label": 0}] * 9
    down, up = balance(ex, "downsample", 0), balance(ex, "upsample", 0)
    assert sum(e["label"] for e in down) == 3 and len(down) == 6
    assert sum(e["label"] for e in up) == 9 and len(up) == 18
    assert balance(ex, "none", 0) == ex


def test_loading_counts_bad_lines_duplicates_and_unlabelled(tmp_path):
    good = make_trajectory("demo__pkg-1", sample=0)
    lines = [good.to_json(), good.to_json(), "{not json", json.dumps({"messages": []}),
             make_trajectory("demo__pkg-2", resolved=None).to_json(),
             make_trajectory("demo__pkg-2").to_json()]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = LoadReport()
    trajs = load_trajectories([path], report)
    assert len(trajs) == 3 and report.duplicates == 1 and len(report.bad_lines) == 2
    assert sorted(t.sampling["sample"] for t in trajs if t.instance_id == "demo__pkg-2") == [0, 1]
    data = build_judge_data(trajs, JudgeFormatter(None), eval_fraction=0.0)
    assert data.stats["skipped"] == {"no label (resolved is null)": 1} and len(data.train) == 2


def test_verifier_data_command_writes_splits(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    path.write_text("".join(make_trajectory(f"demo__pkg-{i}", resolved=bool(i % 2), sample=0, steps=2).to_json()
                            + "\n" for i in range(8)))
    res = CliRunner().invoke(verifier_cli, ["data", str(tmp_path), "--out", str(tmp_path / "d"),
                                            "--max-length", "400", "--eval-fraction", "0.25",
                                            "--balance", "downsample"])
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["instances"] == {"train": 6, "eval": 2} and stats["train"]["yes"] == stats["train"]["no"]
    rows = [json.loads(x) for x in (tmp_path / "d" / "train.jsonl").read_text().splitlines()]
    assert rows and all(r["messages"][2]["content"] == target(bool(r["label"])) for r in rows)
    assert (tmp_path / "d" / "dataset" / "train").is_dir()
    bad = CliRunner().invoke(verifier_cli, ["data", str(tmp_path / "d"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0


# -- scoring through an OpenAI-compatible endpoint --------------------------------------------------


def _logprobs(yes: float, no: float) -> dict:
    return {"content": [{"token": "YES", "logprob": yes,
                         "top_logprobs": [{"token": "YES", "logprob": yes}, {"token": " NO", "logprob": no}]}]}


def test_endpoint_scoring_resumes_and_retries_failures(openai_server, tmp_path):
    trajs = [make_trajectory(f"demo__pkg-{i}", sample=0, resolved=i < 2) for i in range(3)]
    openai_server.script({"content": "YES", "logprobs": _logprobs(-0.1, -2.5)},
                         {"content": "YES", "logprobs": _logprobs(-0.7, -0.7)},
                         {"status": 400, "message": "prompt too long"})
    scorer = EndpointScorer(openai_server.base_url, "judge", workers=1, max_retries=0)
    summary = score_trajectories(trajs, scorer, tmp_path)
    assert summary["scored"] == 2 and summary["failed"] == 1 and summary["labelled"] == 2
    req = openai_server.requests[0]
    assert req["messages"][-1] == {"role": "assistant", "content": OPEN_TAG}
    assert req["continue_final_message"] is True and req["add_generation_prompt"] is False
    assert req["chat_template_kwargs"] == {"enable_thinking": False}
    assert req["logprobs"] is True and req["top_logprobs"] == 20 and req["max_tokens"] == 1
    rows = [json.loads(x) for x in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert rows[0]["score"] == pytest.approx(math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5)))
    assert rows[1]["score"] == pytest.approx(0.5)
    # a rerun asks only for the failed one
    openai_server.script({"content": "NO", "logprobs": _logprobs(-3.0, -0.05)})
    again = score_trajectories(trajs, scorer, tmp_path)
    assert again["reused"] == 2 and again["scored"] == 3 and again["failed"] == 0
    assert len(openai_server.requests) == 4
    assert again["auc"] == pytest.approx(1.0) and again["accuracy"] == pytest.approx(1.0)


def test_verdict_record_shape():
    from verifier.score import verdict_record

    rec = verdict_record("demo__pkg-1", 3, Verdict(0.75, 1.0, 0.0), True)
    assert {"instance_id", "sample", "score"} <= set(rec) and rec["label"] is True


def test_every_command_has_help_and_fields_lists_the_config():
    from tts.cli import tts as tts_cli

    runner = CliRunner()
    for group, name in ((verifier_cli, "data"), (verifier_cli, "train"), (verifier_cli, "score"),
                        (verifier_cli, "fields"), (tts_cli, "score")):
        res = runner.invoke(group, [name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, (name, res.output)
    res = runner.invoke(verifier_cli, ["fields"], terminal_width=200)
    assert res.exit_code == 0
    for key in ("kind", "data.max_length", "data.balance", "training.learning_rate", "model.name_or_path"):
        assert key in res.output, key


@pytest.mark.parametrize("name", ["qwen3-8b.yaml", "tiny-cpu.yaml"])
def test_recipes_load(name):
    from pathlib import Path

    from sft.config import load_config
    from verifier.train import VerifierRunConfig

    cfg = load_config(VerifierRunConfig, Path(__file__).resolve().parents[1] / "configs" / "verifier" / name,
                      {"data.paths": ["x"]})
    cfg.validate()
    assert cfg.kind == "generative" and cfg.data.chat_template_kwargs == {"enable_thinking": False}
    if name == "qwen3-8b.yaml":
        assert cfg.model.name_or_path == "Qwen/Qwen3-8B" and cfg.training.learning_rate == 2e-5
        assert cfg.data.max_length == 131072 and cfg.model.rope_scaling["factor"] == 4.0
    else:
        assert cfg.model.name_or_path == "tiny" and cfg.training.use_cpu
