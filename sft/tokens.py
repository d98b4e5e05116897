"""Trajectory -> `input_ids` + `labels`, with per-turn loss masking.

A trajectory is rendered once with the model's training chat template (tools included). The
template's `{% generation %}` blocks give one character span per assistant message; tokens
overlapping span k are trained when assistant turn k is (the same overlap rule transformers uses
for `assistant_masks`, so unmasked labels equal TRL's `assistant_only_loss` labels). Every other
token (system, user, tool results, the `<|im_start|>assistant` header) and the tokens of masked
turns get -100 but stay in `input_ids`, so a masked turn is still context for later turns.

Texts are rendered in Python and tokenized in batches by the Rust tokenizer.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

IGNORE_INDEX = -100
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_KEEP_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content")


class RenderError(ValueError):
    """A trajectory that cannot be rendered into trainable tokens."""


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and _GENERATION_TAG.search(template) is not None


def training_chat_template(tokenizer, spec: str = "auto") -> str:
    """The chat template to render training data with.

    `auto`: the tokenizer's own template if it marks assistant output with `{% generation %}`;
    else TRL's training variant of it (stock Qwen3 -> qwen3_training, and the other families TRL
    ships); else an error saying what to do. Any other value is a path to a .jinja file.
    """
    if spec != "auto":
        p = Path(spec)
        if p.suffix == ".jinja" or p.is_file():
            if not p.is_file():
                raise RenderError(f"chat template file {p} not found")
            text = p.read_text(encoding="utf-8")
        else:
            from trl.chat_template_utils import _CHAT_TEMPLATES_DIR

            named = Path(_CHAT_TEMPLATES_DIR) / f"{spec}.jinja"
            if not named.is_file():
                raise RenderError(f"chat template {spec!r} is neither a file nor one of TRL's templates")
            text = named.read_text(encoding="utf-8")
        if not has_generation_markers(text):
            raise RenderError(f"chat template {spec} has no {{% generation %}} markers")
        return text
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if has_generation_markers(own):
        return own
    from trl.chat_template_utils import get_training_chat_template

    patched = get_training_chat_template(tokenizer) if own else None
    if patched and has_generation_markers(patched):
        return patched
    raise RenderError(
        "the tokenizer's chat template has no {% generation %} markers and TRL has no training version of it; "
        "set model.chat_template to a .jinja file with {% generation %}...{% endgeneration %} around assistant output"
    )


def clean_messages(messages: list[dict]) -> list[dict]:
    """Messages as the template should see them: known keys, no None values, string arguments."""
    out = []
    for m in messages:
        msg = {k: m[k] for k in _KEEP_KEYS if m.get(k) is not None}
        if msg.get("tool_calls"):
            calls = []
            for c in msg["tool_calls"]:
                fn = dict(c.get("function") or {})
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
                calls.append({"id": c.get("id"), "type": "function", "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


@dataclass
class Rendered:
    """One tokenized conversation. `turn_tokens[k]` = (start, end) token span trained for assistant k."""

    input_ids: list[int]
    labels: list[int]
    turn_tokens: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def render_text(tokenizer, messages: list[dict], tools: list[dict] | None, chat_template: str,
                **template_kwargs) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each `{% generation %}` block."""
    from transformers.utils.chat_template_utils import render_jinja_template

    kwargs = {**tokenizer.special_tokens_map, **template_kwargs}
    rendered, indices = render_jinja_template(
        conversations=[clean_messages(messages)], tools=tools or None, chat_template=chat_template,
        return_assistant_tokens_mask=True, **kwargs,
    )
    return rendered[0], [tuple(s) for s in indices[0]]


def _token_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each char span, the token index range [a, b) of tokens overlapping it."""
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    out = []
    for s, e in spans:
        a = bisect.bisect_right(ends, s)  # first token ending after s
        b = bisect.bisect_left(starts, e)  # first token starting at or after e
        out.append((a, max(a, b)))
    return out


def tokenize_rendered(tokenizer, texts: list[str], spans: list[list[tuple[int, int]]],
                      train: list[list[bool]]) -> list[Rendered]:
    """Tokenize rendered texts in one batch; label the spans whose `train` flag is set."""
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for ids, offsets, sp, flags in zip(enc["input_ids"], enc["offset_mapping"], spans, train, strict=True):
        if len(sp) != len(flags):
            raise RenderError(f"the template produced {len(sp)} assistant spans for {len(flags)} assistant messages")
        labels = [IGNORE_INDEX] * len(ids)
        tok_spans = _token_spans(offsets, sp)
        for (a, b), keep in zip(tok_spans, flags, strict=True):
            if keep:
                labels[a:b] = ids[a:b]
        out.append(Rendered(input_ids=list(ids), labels=labels, turn_tokens=tok_spans))
    return out


def render_conversations(tokenizer, items: list[tuple[list[dict], list[dict] | None, list[bool]]],
                         chat_template: str) -> list[Rendered | RenderError]:
    """Render and tokenize many (messages, tools, train flag per assistant message) at once.

    A conversation that fails to render yields its RenderError in place, so one bad record
    does not stop a batch.
    """
    texts, spans, flags, slots = [], [], [], []
    results: list[Rendered | RenderError] = []
    for messages, tools, train in items:
        n_assistant = sum(1 for m in messages if m.get("role") == "assistant")
        if len(train) != n_assistant:
            results.append(RenderError(f"{len(train)} train flags for {n_assistant} assistant messages"))
            continue
        try:
            text, sp = render_text(tokenizer, messages, tools, chat_template)
        except Exception as e:  # jinja errors: a malformed message
            results.append(RenderError(f"chat template failed: {type(e).__name__}: {e}"))
            continue
        if len(sp) != n_assistant:
            results.append(RenderError(
                f"the template produced {len(sp)} assistant spans for {n_assistant} assistant messages"))
            continue
        slots.append(len(results))
        results.append(RenderError("pending"))
        texts.append(text)
        spans.append(sp)
        flags.append(train)
    if texts:
        for slot, r in zip(slots, tokenize_rendered(tokenizer, texts, spans, flags), strict=True):
            results[slot] = r
    return results


def render_prompt_completion(tokenizer, prompt: list[dict], completion: str, *, tools: list[dict] | None = None,
                             chat_template: str | None = None, add_eos: bool = True,
                             **template_kwargs) -> Rendered:
    """A prompt (messages, rendered with the generation prompt) followed by `completion` text, with
    loss only on the completion tokens (and the end-of-turn token when `add_eos`).

    This is the verifier's shape: prompt = the judge's system + user messages, completion =
    ``<judgement>YES</judgement>``. With Qwen3 templates pass ``enable_thinking=False`` so the
    prompt ends with the empty think block, as the trained assistant turns do.
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    template = chat_template or training_chat_template(tokenizer)
    kwargs = {**tokenizer.special_tokens_map, **template_kwargs}
    rendered, _ = render_jinja_template(conversations=[clean_messages(prompt)], tools=tools or None,
                                        chat_template=template, add_generation_prompt=True, **kwargs)
    head = rendered[0]
    text = head + completion + (tokenizer.eos_token if add_eos and tokenizer.eos_token else "")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [tid if start >= len(head) else IGNORE_INDEX for tid, (start, _e) in zip(ids, enc["offset_mapping"],
                                                                                       strict=True)]
    first = next((i for i, x in enumerate(labels) if x != IGNORE_INDEX), len(ids))
    return Rendered(input_ids=ids, labels=labels, turn_tokens=[(first, len(ids))])
