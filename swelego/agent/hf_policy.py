"""HFPolicy: the agent's next move from a local transformers model, with no server in between,
so a checkpoint from `swelego sft train` runs in the loop on the machine that trained it.

Each turn the transcript is put in the same form OpenAIPolicy sends to an endpoint
(`openai_policy.request_messages`: chat messages plus the tool schemas for ``native``, OpenHands
text calls for ``openhands``), rendered with the model's own chat template
(``apply_chat_template(..., tools=..., add_generation_prompt=True)``), and continued with
``generate``. The completion goes through OpenAIPolicy's reply path (`reply_message`), so text
tool calls are parsed by the same code as a server's text reply. A leading
``<think>...</think>`` block (Qwen3-style templates) is split off into `reasoning_content`, as
vLLM's reasoning parser would.

Limits: at most `max_tokens` new tokens per turn, fewer when the context window (the model's
``max_position_embeddings``, or `context_window`) has less room; a prompt that no longer fits
raises `ContextFull` and the episode ends with exit reason "context". Token counts are kept in
`usage` like an endpoint's.

Models are loaded once per process and path (episodes of a rollout share one copy; a lock makes
their `generate` calls take turns while the other episodes run tools).
"""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swelego.agent.loop import ContextFull
from swelego.agent.openai_policy import TOOL_FORMATS, SamplingParams, reply_message, request_messages
from swelego.errors import SwelegoError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    window: int | None  # the model's context length in tokens, when its config says
    stop_ids: list[int]
    lock: threading.Lock


_LOADED: dict[tuple[str, str, str], LoadedModel] = {}
_LOADING = threading.Lock()


def check_model_dir(path: str) -> str:
    """`path` as an absolute local model directory; SwelegoError (one line) when it is not one."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SwelegoError(f"--policy hf: no model directory at {path} (give a local directory with config.json, "
                           "e.g. the OUTPUT/model of `swelego sft train`)")
    if not (p / "config.json").is_file():
        raise SwelegoError(f"--policy hf: {path} has no config.json, so it is not a transformers model directory")
    return str(p.resolve())


def parameter_count(path: str) -> int | None:
    """Parameters stored in a model directory's safetensors files (read from their headers, no
    weights loaded); None when there are none."""
    total, found = 0, False
    for f in sorted(Path(path).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in meta.get("shape", []):
                count *= int(d)
            total += count
            found = True
    return total if found else None


def resolve_device(device: str) -> str:
    import torch

    if device not in DEVICES and not device.startswith("cuda:"):
        raise SwelegoError(f"unknown device {device!r} (one of {', '.join(DEVICES)}, or cuda:N)")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SwelegoError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    return device


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype not in DTYPES:
        raise SwelegoError(f"unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def load_model(path: str, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """The model and tokenizer in `path`, loaded once per process (thread-safe)."""
    device = resolve_device(device)
    key = (path, device, dtype)
    with _LOADING:
        if key in _LOADED:
            return _LOADED[key]
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = _resolve_dtype(dtype, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except (OSError, ValueError) as e:
            raise SwelegoError(f"--policy hf: cannot load the model at {path}: "
                               f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
        if not tokenizer.chat_template:
            raise SwelegoError(f"--policy hf: the tokenizer at {path} has no chat template, so prompts cannot be "
                               "rendered (save one with the tokenizer: tokenizer.chat_template = ...)")
        model.to(device)
        model.eval()
        stop = model.generation_config.eos_token_id
        stop_ids = list(stop) if isinstance(stop, (list, tuple)) else [stop] if stop is not None else []
        for tok in (tokenizer.eos_token, "<|im_end|>"):
            tid = tokenizer.convert_tokens_to_ids(tok) if tok and tok in tokenizer.get_vocab() else None
            if tid is not None and tid not in stop_ids:
                stop_ids.append(tid)
        window = getattr(model.config, "max_position_embeddings", None)
        _LOADED[key] = LoadedModel(model, tokenizer, device, str(torch_dtype).removeprefix("torch."), window,
                                   stop_ids, threading.Lock())
        return _LOADED[key]


def split_reasoning(text: str, opened: bool = False) -> tuple[str | None, str]:
    """(reasoning, content) of a completion: the text of a leading ``<think>...</think>`` block,
    or, when the prompt already opened ``<think>`` (`opened`), the text up to ``</think>``.
    Reasoning is None when there is none or it is empty."""
    body = text.lstrip()
    if opened:
        end = text.find("</think>")
        if end == -1:
            return None, text
        reasoning, rest = text[:end], text[end + len("</think>"):]
    elif body.startswith("<think>") and "</think>" in body:
        reasoning, rest = body[len("<think>"):].split("</think>", 1)
    else:
        return None, text
    reasoning = reasoning.strip("\n")
    return (reasoning if reasoning.strip() else None), rest.lstrip("\n")


class HFPolicy:
    """A policy that generates with a local transformers model; one instance per episode (it
    keeps the episode's token counts), the model itself shared per process.

    model_path: a local model directory (config.json, weights, a tokenizer with a chat template).
    sampling: temperature (0 = greedy), top_p, max_tokens (new tokens per turn), seed.
    tool_format: as OpenAIPolicy's (``native``: the template renders the tool schemas and calls;
        ``openhands``: text calls, stopping at ``</function``).
    device / dtype: see `resolve_device` / DTYPES. context_window: a cap below the model's own.
    template_kwargs: extra chat-template variables (e.g. ``enable_thinking=False`` for Qwen3).
    logits_processor: transformers LogitsProcessor objects applied at every step (constrained
        decoding: grammars, banned tokens)."""

    name = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        sampling: SamplingParams | None = None,
        tool_format: str = "native",
        device: str = "auto",
        dtype: str = "auto",
        context_window: int | None = None,
        template_kwargs: dict | None = None,
        logits_processor: list | None = None,
    ):
        if tool_format not in TOOL_FORMATS:
            raise ValueError(f"unknown tool format {tool_format!r} (one of {', '.join(TOOL_FORMATS)})")
        self.model = check_model_dir(model_path)
        self.tool_format = tool_format
        self.params = sampling or SamplingParams()
        self.loaded = load_model(self.model, device, dtype)
        windows = [w for w in (self.loaded.window, context_window) if w]
        self.window = min(windows) if windows else None
        self.template_kwargs = dict(template_kwargs or {})
        self.logits_processor = list(logits_processor or [])
        self.sampling = {k: v for k, v in vars(self.params).items() if v is not None}
        self.sampling.update(tool_format=tool_format, device=self.loaded.device, dtype=self.loaded.dtype)
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        self.last_prompt_tokens = 0

    def prompt(self, messages: list[dict], tools: list[dict]) -> tuple[str, list[int], list[str] | None]:
        """The prompt as the model's chat template renders the transcript, its token ids, and
        the stop strings of the tool format."""
        wire, schemas, stop = request_messages(messages, tools, self.tool_format)
        tok = self.loaded.tokenizer
        try:
            text = tok.apply_chat_template(wire, tools=schemas, add_generation_prompt=True, tokenize=False,
                                           **self.template_kwargs)
        except Exception as e:  # noqa: BLE001 - jinja errors: say which model's template failed
            raise SwelegoError(f"the chat template of {self.model} failed on this transcript: "
                               f"{type(e).__name__}: {e}") from None
        return text, list(tok(text, add_special_tokens=False)["input_ids"]), stop

    def next_message(self, messages: list[dict], tools: list[dict]) -> dict:
        import torch

        prompt, ids, stop = self.prompt(messages, tools)
        n = len(ids)
        budget = self.params.max_tokens
        if self.window:
            if n >= self.window:
                raise ContextFull(f"the prompt has {n} tokens; {self.model} takes {self.window}")
            budget = min(budget, self.window - n)
        m = self.loaded
        greedy = not self.params.temperature or self.params.temperature <= 0
        gen: dict[str, Any] = {"max_new_tokens": budget, "do_sample": not greedy, "eos_token_id": m.stop_ids,
                               "pad_token_id": m.tokenizer.pad_token_id if m.tokenizer.pad_token_id is not None
                               else (m.stop_ids[0] if m.stop_ids else None)}
        if not greedy:
            gen["temperature"] = self.params.temperature
            gen["top_p"] = self.params.top_p if self.params.top_p is not None else 1.0
            gen["top_k"] = 0  # sample from the nucleus as an endpoint does, not a top-50 cut
        if stop:
            gen["stop_strings"], gen["tokenizer"] = stop, m.tokenizer
        if self.logits_processor:
            from transformers import LogitsProcessorList

            gen["logits_processor"] = LogitsProcessorList(self.logits_processor)
        input_ids = torch.tensor([ids], device=m.device)
        with m.lock, torch.inference_mode():
            if not greedy and self.params.seed is not None:
                torch.manual_seed(self.params.seed + self.usage["requests"])  # per turn, reproducible
            out = m.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **gen)
        new = out[0, n:].tolist()
        while new and new[-1] in m.stop_ids:
            new.pop()
        # Only the tokenizer's named special tokens (end of turn, padding, ...) are dropped: added
        # tokens such as <tool_call> and <think> are part of what the model wrote, whatever flag
        # the tokenizer file gives them.
        special = set(m.tokenizer.all_special_ids)
        text = m.tokenizer.decode([t for t in new if t not in special], skip_special_tokens=False)
        for s in stop or ():
            cut = text.find(s)
            if cut != -1:  # endpoints leave the stop string out of the completion
                text = text[:cut]
        self.usage["requests"] += 1
        self.usage["prompt_tokens"] += n
        self.usage["completion_tokens"] += len(new)
        self.last_prompt_tokens = n
        reasoning, content = split_reasoning(text, opened=prompt.rstrip().endswith("<think>"))
        return reply_message(content, tools, self.tool_format, reasoning=reasoning)


def describe_model(path: str) -> str:
    """`path (N parameters)`, for reports that must say what generated the samples."""
    n = parameter_count(path)
    if n is None:
        return path
    size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
    return f"{path} ({size} parameters)"
