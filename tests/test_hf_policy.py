"""The trained model in the loop with no server: HFPolicy generates with a real (tiny, random-init
Qwen3-architecture) transformers model, its own chat template and the tool schemas; its text tool
calls go through OpenAIPolicy's parser; `data rollout --policy hf` runs real episodes in real
sandboxes. Reasoning a server returns (`reasoning_content`) reaches the trajectory, and SFT
preparation and `data export` keep or drop it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import LogitsProcessor

from sft.tiny import build_tiny_model, build_tiny_tokenizer
from swelego.agent import run_episode
from swelego.agent.hf_policy import HFPolicy, split_reasoning
from swelego.agent.loop import ContextFull
from swelego.agent.openai_policy import OpenAIPolicy, SamplingParams
from swelego.agent.tools import TOOL_SCHEMAS
from swelego.cli import cli as cli_main
from swelego.sandbox import DockerSandbox
from swelego.schema import save_jsonl
from swelego.trajectories.record import Trajectory

FIX = {"command": "str_replace", "path": "/testbed/toycalc/__init__.py", "old_str": "    return s[len(s) // 2]",
       "new_str": "    n = len(s)\n    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2"}
THOUGHT = "median() returns the upper middle element; even lengths need the mean of the two middle ones."


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random-init tiny Qwen3 with the byte-level BPE tokenizer and TRL's Qwen3 template (tools)."""
    tok = build_tiny_tokenizer()
    return build_tiny_model(tok, tmp_path_factory.mktemp("hf") / "model")


class ForceReplies(LogitsProcessor):
    """Makes greedy decoding write `replies` (one per turn, in order), then end the turn: at each
    step every token but the next one of the current reply gets -inf. The model still runs every
    forward pass; what this pins down is the text, so the test can check what becomes of it."""

    def __init__(self, tokenizer, replies: list[str], eos: int):
        self.targets = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in replies]
        self.eos = eos
        self.turn = -1
        self.start = 0

    def __call__(self, input_ids, scores):
        if self.turn < 0 or input_ids.shape[1] < self.start:
            raise AssertionError("state out of step")
        k = input_ids.shape[1] - self.start
        target = self.targets[self.turn] if self.turn < len(self.targets) else []  # then: empty turns
        forced = target[k] if k < len(target) else self.eos
        out = torch.full_like(scores, float("-inf"))
        out[:, forced] = 0.0
        return out

    def next_turn(self, prompt_len: int) -> None:
        self.turn += 1
        self.start = prompt_len


class TurnAwarePolicy(HFPolicy):
    """HFPolicy whose forcing processor learns where each turn's completion starts."""

    def __init__(self, *a, forcer: ForceReplies, **kw):
        super().__init__(*a, logits_processor=[forcer], **kw)
        self.forcer = forcer

    def prompt(self, messages, tools):
        text, ids, stop = super().prompt(messages, tools)
        self.forcer.next_turn(len(ids))
        return text, ids, stop


def _forced_policy(model_dir: Path, replies: list[str], **kw) -> TurnAwarePolicy:
    tok = build_tiny_tokenizer()
    forcer = ForceReplies(tok, replies, tok.convert_tokens_to_ids("<|im_end|>"))
    return TurnAwarePolicy(str(model_dir), forcer=forcer, sampling=SamplingParams(temperature=0.0, max_tokens=400),
                           device="cpu", **kw)


def test_generated_text_tool_call_is_parsed_run_and_graded(toy_task, client, tiny_model):
    """Turn 1 writes a <think> block and a Qwen <tool_call> editing the bug, turn 2 calls finish:
    the calls are parsed into structured tool calls with typed arguments, run in the sandbox,
    and the patch resolves the task; the thinking is kept apart in reasoning_content."""
    replies = [
        f"<think>\n{THOUGHT}\n</think>\n\nFixing median.\n<tool_call>\n"
        + json.dumps({"name": "str_replace_editor", "arguments": FIX}) + "\n</tool_call>",
        "<think>\n\n</think>\n\n<tool_call>\n" + json.dumps({"name": "finish", "arguments": {"message": "fixed"}})
        + "\n</tool_call>",
    ]
    policy = _forced_policy(tiny_model, replies)
    with DockerSandbox(toy_task.image, client=client) as sb:
        traj = run_episode(toy_task, sb, policy, max_turns=4)
    assert traj.error == "" and traj.exit_reason == "finish" and traj.turns == 2, traj.error
    first, second = (m for m in traj.messages if m["role"] == "assistant")
    assert first["content"] == "Fixing median."
    assert first["reasoning_content"] == THOUGHT
    (call,) = first["tool_calls"]
    assert call["function"]["name"] == "str_replace_editor" and json.loads(call["function"]["arguments"]) == FIX
    assert "reasoning_content" not in second  # an empty think block is no reasoning
    assert second["tool_calls"][0]["function"]["name"] == "finish"
    assert [s.tool for s in traj.steps] == ["str_replace_editor", "finish"] and not any(s.error for s in traj.steps)
    assert "(s[n // 2 - 1] + s[n // 2]) / 2" in traj.patch
    assert traj.resolved is True
    tok = build_tiny_tokenizer()
    assert traj.policy == "hf" and traj.model == str(tiny_model.resolve())
    assert traj.usage["requests"] == 2
    assert traj.usage["completion_tokens"] == sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in replies)
    # the second prompt is the first plus the exchange, rendered by the model's own template with the schemas
    text, ids, _ = HFPolicy.prompt(policy, traj.messages[:2], list(TOOL_SCHEMAS))
    assert "<tools>" in text and '"name": "str_replace_editor"' in text and text.endswith("<|im_start|>assistant\n")
    assert traj.usage["prompt_tokens"] > 2 * len(ids)


def test_openhands_format_stops_at_the_stop_word(tiny_model):
    """openhands: no schemas to the template (the tools are described in the system prompt),
    generation stops at `</function` like an endpoint's stop word, and the text call is parsed."""
    reply = "I will finish.\n<function=finish>\n<parameter=message>\ndone\n</parameter>\n</function>\nnever reached"
    policy = _forced_policy(tiny_model, [reply], tool_format="openhands")
    msgs = [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "fix it"}]
    msg = policy.next_message(msgs, list(TOOL_SCHEMAS))
    assert msg["content"] == "I will finish."
    assert msg["tool_calls"][0]["function"] == {"name": "finish", "arguments": json.dumps({"message": "done"})}
    tok = build_tiny_tokenizer()
    assert policy.usage["completion_tokens"] < len(tok(reply, add_special_tokens=False)["input_ids"])
    text, _, stop = policy.prompt(msgs, list(TOOL_SCHEMAS))
    assert stop == ["</function"] and "---- BEGIN FUNCTION #1: execute_bash ----" in text and "<tools>" not in text


def test_context_window_caps_new_tokens_and_ends_the_turn(tiny_model):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u " * 50}]
    probe = HFPolicy(str(tiny_model), device="cpu", sampling=SamplingParams(temperature=0.0, max_tokens=8))
    _, ids, _ = probe.prompt(msgs, list(TOOL_SCHEMAS))
    tight = HFPolicy(str(tiny_model), device="cpu", context_window=len(ids) + 3,
                     sampling=SamplingParams(temperature=0.0, max_tokens=50))
    tight.next_message(msgs, list(TOOL_SCHEMAS))
    assert 1 <= tight.usage["completion_tokens"] <= 3 and tight.last_prompt_tokens == len(ids)
    full = HFPolicy(str(tiny_model), device="cpu", context_window=len(ids))
    with pytest.raises(ContextFull):
        full.next_message(msgs, list(TOOL_SCHEMAS))


def test_split_reasoning():
    assert split_reasoning("<think>\nplan\n</think>\n\nact") == ("plan", "act")
    assert split_reasoning("<think>\n\n</think>\n\nact") == (None, "act")
    assert split_reasoning("plan\n</think>\n\nact", opened=True) == ("plan", "act")
    quoted = "the tag </think> closes <think>"
    assert split_reasoning(quoted) == (None, quoted)


def test_data_rollout_policy_hf(toy_task, tiny_model, tmp_path):
    """The CLI end to end: the tiny model generates in the rollout process, episodes run in real
    sandboxes, trajectories record policy=hf and the model directory; a user mistake is one line."""
    ds = tmp_path / "tasks.jsonl"
    save_jsonl([toy_task], ds)
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(cli_main, ["data", "rollout", str(ds), "--out", str(out), "--policy", "hf", "--model",
                                   str(tiny_model), "--device", "cpu", "--max-turns", "2", "--max-tokens", "16",
                                   "--temperature", "0.7", "--seed", "3"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert rec["policy"] == "hf" and rec["model"] == str(tiny_model.resolve()), rec["model"]
    assert rec["error"] == "" and rec["exit_reason"] == "max_turns" and rec["turns"] == 2
    assert rec["sampling"]["device"] == "cpu" and rec["sampling"]["max_tokens"] == 16
    assert rec["usage"]["requests"] == 2 and 2 <= rec["usage"]["completion_tokens"] <= 32
    assert rec["usage"]["prompt_tokens"] > 1000  # the system prompt and the four tool schemas, tokenized
    assert rec["resolved"] is False  # a random model: graded, not resolved
    assert "policy=hf" in res.output and "parameters" in res.output

    # The context limit: with room for no prompt the episode ends as "context", not as an error.
    res = runner.invoke(cli_main, ["data", "rollout", str(ds), "--out", str(tmp_path / "ctx"), "--policy", "hf",
                                   "--model", str(tiny_model), "--max-context-tokens", "200", "--no-grade"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "ctx" / "trajectories.jsonl").read_text())
    assert rec["exit_reason"] == "context" and rec["turns"] == 0 and rec["error"] == ""

    for args, words in ((["--policy", "hf"], "needs --model"),
                        (["--policy", "hf", "--model", str(tmp_path / "nope")], "no model directory"),
                        (["--policy", "hf", "--model", str(tmp_path)], "no config.json")):
        res = subprocess.run([sys.executable, "-m", "swelego.cli", "data", "rollout", str(ds), "--out",
                              str(tmp_path / "bad"), *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 1 and words in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_reasoning_content_reaches_the_trajectory_and_sft_keeps_or_drops_it(toy_task, client, openai_server,
                                                                           tmp_path):
    from sft.config import CurriculumConfig, DataConfig
    from sft.prepare import prepare_dataset
    from sft.tokens import IGNORE_INDEX, training_chat_template

    openai_server.script(
        {"reasoning_content": THOUGHT, "content": "", "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "think", "arguments": json.dumps({"thought": "x"})}}]},
        {"content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "finish",
                                                        "arguments": json.dumps({"message": "done"})}}]},
    )
    with DockerSandbox(toy_task.image, client=client) as sb:
        traj = run_episode(toy_task, sb, OpenAIPolicy(openai_server.base_url, "reasoner"), grade=False)
    assert traj.exit_reason == "finish", traj.error
    first = traj.messages[2]
    assert first["reasoning_content"] == THOUGHT and "reasoning_content" not in traj.messages[4]
    # kept in the record, not sent back to the endpoint
    assert all("reasoning_content" not in m for m in openai_server.requests[1]["messages"])
    path = tmp_path / "t.jsonl"
    path.write_text(traj.to_json() + "\n")
    assert Trajectory.from_json(path.read_text()).messages[2]["reasoning_content"] == THOUGHT

    tok = build_tiny_tokenizer()
    template = training_chat_template(tok)
    texts = {}
    for mode in ("keep", "drop"):
        ds, stats = prepare_dataset(DataConfig(paths=[str(path)], max_length=8192, reasoning=mode),
                                    CurriculumConfig(enabled=False), tok, template)
        assert stats.kept == 1
        ids, labels = ds[0]["input_ids"], ds[0]["labels"]
        texts[mode] = tok.decode(ids)
        trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX])
        if mode == "keep":
            assert f"<think>\n{THOUGHT}\n</think>" in texts[mode] and THOUGHT in trained
    assert THOUGHT not in texts["drop"] and "<think>\n\n</think>" in texts["drop"]

    runner = CliRunner()
    for mode in ("keep", "drop"):
        out = tmp_path / f"sharegpt-{mode}.jsonl"
        res = runner.invoke(cli_main, ["data", "export", str(path), "--format", "sharegpt", "--reasoning", mode,
                                       "--out", str(out)])
        assert res.exit_code == 0, res.output
        assistant = [m for m in json.loads(out.read_text())["messages"] if m["role"] == "assistant"]
        assert assistant[0]["content"].startswith(f"<think>\n{THOUGHT}\n</think>\n\n") == (mode == "keep")
        assert THOUGHT not in json.dumps(assistant) or mode == "keep"


def test_tts_run_policy_hf_then_score(toy_task, tiny_model, tmp_path):
    """`tts run --policy hf` samples with the local model (here the same tiny model also serves as
    the verifier) and `tts score` reports the samples as the hf policy's, not as a demonstration."""
    ds = tmp_path / "tasks.jsonl"
    save_jsonl([toy_task], ds)
    run = tmp_path / "run"
    res = CliRunner().invoke(cli_main, ["tts", "run", "--dataset", str(ds), "--policy", "hf", "--model",
                                        str(tiny_model), "--device", "cpu", "--samples", "2", "--max-turns", "1",
                                        "--max-tokens", "8", "--verifier", str(tiny_model), "--out", str(run)])
    assert res.exit_code == 0, res.output
    assert "policy=hf, model" in res.output and "parameters" in res.output
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["sampling"]["sample"] for s in samples) == [0, 1]
    assert all(s["policy"] == "hf" and s["model"] == str(tiny_model.resolve()) for s in samples)
    assert len({s["sampling"]["seed"] for s in samples}) == 2  # each sample its own seed
    assert len((run / "scores.jsonl").read_text().splitlines()) == 2
    scored = CliRunner().invoke(cli_main, ["tts", "score", str(run), "--k", "1,2"])
    assert scored.exit_code == 0, scored.output
    report = json.loads((run / "report.json").read_text())
    assert report["policy"] == "hf" and not report["demo"]
    assert report["metrics"]["pass@1"]["value"] == 0.0
