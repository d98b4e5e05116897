"""A tiny, offline Qwen3-style tokenizer and model for CPU tests, demos and the verifier's tests.

No model hub is needed: the tokenizer is a byte-level BPE (Qwen's pre-tokenizer regex, 4096
ids, the 26 Qwen3 special tokens) trained in about a second on Python standard-library sources,
with TRL's Qwen3 training chat template (tools, tool calls, `{% generation %}` markers). The
model is a randomly initialised `Qwen3ForCausalLM` of a few hundred thousand parameters.

Both are cached by content (build parameters, template, corpus), so repeated calls load from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedTokenizerFast

FORMAT_VERSION = "1"
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
)
# Qwen2/3's pre-tokenizer split (contractions, letters, single digits, punctuation runs, newlines, spaces).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
DEFAULT_MODEL_SIZE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "max_position_embeddings": 8192,
}


def cache_root() -> Path:
    """Where built artefacts are cached: $SWELEGO_CACHE/tiny, else ~/.cache/swelego/tiny."""
    base = os.environ.get("SWELEGO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "swelego")
    return Path(base) / "tiny"


def training_chat_template() -> str:
    """TRL's Qwen3 training template: tools, tool calls, `<tool_response>` turns, generation markers."""
    from trl.chat_template_utils import _CHAT_TEMPLATES_DIR

    return (Path(_CHAT_TEMPLATES_DIR) / "qwen3_training.jinja").read_text(encoding="utf-8")


def _corpus_files(max_bytes: int) -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for f in sorted(stdlib.glob("*.py")):
        size = f.stat().st_size
        if total + size > max_bytes:
            continue
        files.append(f)
        total += size
    return files


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cached(dest: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Build into `dest` once per key; concurrent builders race harmlessly (atomic rename)."""
    stamp = dest / ".swelego-key"
    if stamp.is_file() and stamp.read_text() == key:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        build(tmp)
        (tmp / ".swelego-key").write_text(key)
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process won the race
            if not (stamp.is_file() and stamp.read_text() == key):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build_tiny_tokenizer(out_dir: str | Path | None = None, *, vocab_size: int = 4096,
                         corpus_bytes: int = 1_500_000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Qwen3's special tokens and chat template, saved in `out_dir`
    (default: the cache) and loadable offline with `AutoTokenizer.from_pretrained(out_dir)`."""
    template = training_chat_template()
    files = _corpus_files(corpus_bytes)
    key = _key({"v": FORMAT_VERSION, "vocab": vocab_size, "template": template,
                "corpus": [(f.name, f.stat().st_size) for f in files], "split": QWEN_SPLIT})

    def build(tmp: Path) -> None:
        from tokenizers import (
            AddedToken,
            Regex,
            Tokenizer,
            decoders,
            models,
            normalizers,
            pre_tokenizers,
            trainers,
        )

        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(QWEN3_SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train([str(f) for f in files], trainer)
        tok.add_special_tokens([
            AddedToken(t, special=t.startswith("<|"), normalized=False) for t in QWEN3_SPECIAL_TOKENS
        ])
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                     model_max_length=DEFAULT_MODEL_SIZE["max_position_embeddings"])
        hf.chat_template = template
        hf.save_pretrained(tmp)

    where = Path(out_dir) if out_dir is not None else cache_root() / f"tokenizer-{key}"
    _cached(where, key, build)
    return PreTrainedTokenizerFast.from_pretrained(str(where))


def _vocab_digest(tokenizer) -> str:
    items = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def build_tiny_model(tokenizer, out_dir: str | Path | None = None, *, seed: int = 0, **size) -> Path:
    """A randomly initialised Qwen3 causal LM sized by `size` (see DEFAULT_MODEL_SIZE), saved with
    `tokenizer` in `out_dir` (default: the cache). Returns the directory, loadable with
    `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`."""
    unknown = set(size) - set(DEFAULT_MODEL_SIZE) - {"rope_theta", "tie_word_embeddings", "rms_norm_eps"}
    if unknown:
        raise ValueError(f"unknown tiny model size field(s): {', '.join(sorted(unknown))}")
    dims = {**DEFAULT_MODEL_SIZE, "tie_word_embeddings": True, **size}
    key = _key({"v": FORMAT_VERSION, "dims": dims, "seed": seed, "vocab": _vocab_digest(tokenizer),
                "n": len(tokenizer), "template": tokenizer.chat_template})

    def build(tmp: Path) -> None:
        import torch
        from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

        eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        cfg = Qwen3Config(vocab_size=len(tokenizer), bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, **dims)
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(cfg)
        model.generation_config = GenerationConfig(eos_token_id=[eos, pad], pad_token_id=pad, do_sample=False)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    where = Path(out_dir) if out_dir is not None else cache_root() / f"model-{key}"
    return _cached(where, key, build)
