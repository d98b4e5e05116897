"""The judge prompt: a trajectory's interaction log and final patch, asking for a YES/NO verdict.

The shape follows SWE-Lego's verifier (research/paper.md §3), in our own words: a system
message that asks for `<judgement>YES</judgement>` or `<judgement>NO</judgement>` only, and
a user message holding the log (`=== INTERACTION LOG ===`, each message wrapped in
`[ROLE]...[/ROLE]`), the final patch (`=== FINAL PATCH ===`, `[PATCH]...[/PATCH]`, or
"No patch generated") and the question. The answer is the assistant turn
`<judgement>YES</judgement>` (resolved) or `<judgement>NO</judgement>`.

`JudgeFormatter` budgets a prompt to `max_length` tokens: the issue (first user message)
and as many of the last messages as fit are kept; the agent's system prompt and the middle
of the log are replaced by markers, and an oversized issue or last message is cut in its
middle. The patch is never cut; when
the patch alone does not fit, the prompt is returned over budget and flagged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

JUDGE_SYSTEM = (
    "You are a careful reviewer of software-engineering work done by an AI coding assistant. "
    "You are shown the full record of one session in which the assistant worked on a code repository "
    "to fix a problem a user reported, followed by the final change it left in the repository. "
    "Decide whether that final change really fixes the reported problem, so that the project's tests "
    "for it would pass. Reply with exactly <judgement>YES</judgement> or <judgement>NO</judgement> "
    "and nothing else."
)
LOG_HEADER = "=== INTERACTION LOG ==="
PATCH_HEADER = "=== FINAL PATCH ==="
NO_PATCH = "No patch generated"
QUESTION = (
    "Given the session above and the final patch, did the assistant successfully resolve the problem "
    "the user first asked it to fix? Respond with YES or NO."
)
OPEN_TAG = "<judgement>"
CLOSE_TAG = "</judgement>"
YES, NO = "YES", "NO"
# Spellings whose first token counts as a vote for each answer when scoring.
YES_VARIANTS = ("YES", "Yes", "yes", " YES", " Yes", " yes")
NO_VARIANTS = ("NO", "No", "no", " NO", " No", " no")
_ROLE_TAGS = {"system": "SYSTEM", "user": "USER", "assistant": "ASSISTANT", "tool": "TOOL"}


def target(label: bool) -> str:
    """The assistant turn a judge should produce for a resolved (True) or unresolved trajectory."""
    return f"{OPEN_TAG}{YES if label else NO}{CLOSE_TAG}"


def render_message(message: dict) -> str:
    """One log entry: `[ROLE]` text, tool calls as `name(arguments)` lines, `[/ROLE]`."""
    role = str(message.get("role") or "user")
    tag = _ROLE_TAGS.get(role, role.upper())
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    parts = [str(content).strip()] if content else []
    for call in message.get("tool_calls") or []:
        fn = (call or {}).get("function") or {}
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        parts.append(f"Tool call {fn.get('name', '')}: {args}")
    body = "\n".join(parts)
    return f"[{tag}]\n{body}\n[/{tag}]\n"


def render_user(blocks: list[str], patch: str) -> str:
    body = patch.strip("\n") if patch.strip() else NO_PATCH
    return (f"{LOG_HEADER}\n{''.join(blocks)}\n{PATCH_HEADER}\n[PATCH]\n{body}\n[/PATCH]\n\n{QUESTION}")


def cut_middle(text: str, keep_chars: int) -> str:
    """`text` with its middle replaced by a marker, keeping about `keep_chars` characters."""
    if len(text) <= keep_chars:
        return text
    keep_chars = max(keep_chars, 0)
    head = keep_chars // 2
    tail = keep_chars - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[len(text) - tail:] if tail else ''}"


def omitted_marker(n: int) -> str:
    return f"[... {n} message{'s' if n != 1 else ''} omitted to fit the length budget ...]\n"


@dataclass
class JudgePrompt:
    """A judge prompt: the chat messages (system, user) plus how the log was budgeted."""

    messages: list[dict]
    omitted_messages: int = 0
    cut_messages: int = 0
    over_budget: bool = False  # the patch alone does not fit in max_length
    tokens: int | None = None  # prompt tokens (rendered, with the opening tag), when counted


def approx_tokens(text: str) -> int:
    """A tokenizer-free length estimate (UTF-8 bytes / 3), used when no tokenizer is given."""
    return (len(text.encode("utf-8")) + 2) // 3


class JudgeFormatter:
    """Builds budgeted judge prompts and their token encodings for one tokenizer.

    `tokenizer`: a transformers tokenizer (its chat template renders the prompt) or None
    (a plain `System:/User:/Assistant:` rendering and byte-based length estimates).
    `max_length`: the token budget of prompt plus answer; None keeps every message whole.
    `chat_template_kwargs`: passed to `apply_chat_template` (e.g. `enable_thinking: false`).
    """

    def __init__(self, tokenizer=None, *, max_length: int | None = None,
                 chat_template_kwargs: dict | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._answer_reserve = max(self.count(self.completion(True)), self.count(self.completion(False))) + 1

    # -- rendering ---------------------------------------------------------------------------
    def _has_template(self) -> bool:
        return self.tokenizer is not None and bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages: list[dict]) -> str:
        """The text the model reads before its answer: the chat up to the assistant turn, plus
        the opening `<judgement>` tag (so the next token is the verdict)."""
        if self._has_template():
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      **self.chat_template_kwargs)
        else:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant: "
        return text + OPEN_TAG

    def completion(self, label: bool) -> str:
        """What follows the opening tag in a training example: the verdict, the closing tag and
        the template's end of turn."""
        answer = (YES if label else NO) + CLOSE_TAG
        if self._has_template():
            probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
            prompt = self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True,
                                                        **self.chat_template_kwargs)
            full = self.tokenizer.apply_chat_template(
                probe + [{"role": "assistant", "content": target(label)}], tokenize=False,
                **self.chat_template_kwargs)
            if full.startswith(prompt + OPEN_TAG):
                return full[len(prompt) + len(OPEN_TAG):].rstrip("\n")
        eos = getattr(self.tokenizer, "eos_token", None) if self.tokenizer is not None else None
        return answer + (eos or "")

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count(self, text: str) -> int:
        return len(self.encode(text)) if self.tokenizer is not None else approx_tokens(text)

    # -- the prompt --------------------------------------------------------------------------
    def prompt(self, messages: list[dict], patch: str) -> JudgePrompt:
        """The judge prompt for a trajectory's `messages` and final `patch`, within budget."""
        blocks = [render_message(m) for m in messages]

        def build(kept: list[str]) -> list[dict]:
            return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": render_user(kept, patch)}]

        if self.max_length is None:
            msgs = build(blocks)
            return JudgePrompt(msgs, tokens=self.count(self.render(msgs)) if self.tokenizer else None)
        budget = self.max_length - self._answer_reserve
        fixed = self.count(self.render(build([])))
        if fixed > budget:  # the patch alone is too long: keep it whole, drop the log
            msgs = build([omitted_marker(len(blocks))] if blocks else [])
            return JudgePrompt(msgs, omitted_messages=len(blocks), over_budget=True,
                               tokens=self.count(self.render(msgs)))
        sizes = [self.count(b) for b in blocks]
        slack = 0
        for _ in range(6):
            kept, omitted, cut = self._select(blocks, sizes, budget - fixed - slack)
            msgs = build(kept)
            n = self.count(self.render(msgs))
            if n <= budget:
                return JudgePrompt(msgs, omitted_messages=omitted, cut_messages=cut, tokens=n)
            slack += n - budget + 8  # token counts of pieces are not exactly additive; tighten and retry
        return JudgePrompt(msgs, omitted_messages=omitted, cut_messages=cut, over_budget=True, tokens=n)

    def _select(self, blocks: list[str], sizes: list[int], room: int) -> tuple[list[str], int, int]:
        """Keep the issue (the first user message) and as many of the last messages as fit; the
        messages before the issue (the agent's system prompt) and the middle are omitted.
        Returns the kept blocks (with omission markers), the number omitted and the number cut."""
        if sum(sizes) <= room:
            return list(blocks), 0, 0
        issue = next((i for i, b in enumerate(blocks) if b.startswith("[USER]")), 0)
        cut = 0
        kept_head: list[str] = []
        if issue > 0:
            kept_head.append(omitted_marker(issue))
        used = sum(self.count(b) for b in kept_head)
        # The issue may take half the room; what it leaves goes to the end of the log.
        if sizes[issue] <= room // 2 or sizes[issue] + used + sum(sizes[issue + 1:]) <= room:
            kept_head.append(blocks[issue])
            used += sizes[issue]
        else:
            kept_head.append(self._cut(blocks[issue], sizes[issue], room // 2))
            used += room // 2
            cut += 1
        rest = list(range(issue + 1, len(blocks)))
        if used + sum(sizes[i] for i in rest) <= room:
            return kept_head + [blocks[i] for i in rest], issue, cut
        room_tail = room - used - self.count(omitted_marker(len(blocks)))
        tail: list[str] = []
        for i in reversed(rest):
            if sizes[i] <= room_tail:
                tail.insert(0, blocks[i])
                room_tail -= sizes[i]
                continue
            if room_tail > 48:  # the next message is too long: keep its two ends in what is left
                tail.insert(0, self._cut(blocks[i], sizes[i], room_tail))
                cut += 1
            break
        middle = len(rest) - len(tail)
        return (kept_head + ([omitted_marker(middle)] if middle else []) + tail), issue + middle, cut

    def _cut(self, block: str, size: int, tokens: int) -> str:
        chars = int(len(block) * tokens / max(size, 1) * 0.9) - 48
        return cut_middle(block, max(chars, 0))

    # -- examples ----------------------------------------------------------------------------
    def example(self, messages: list[dict], patch: str, label: bool) -> dict:
        """A training example: judge messages with the target turn, and the budgeting record."""
        jp = self.prompt(messages, patch)
        return {"messages": jp.messages + [{"role": "assistant", "content": target(label)}],
                "label": int(bool(label)), "omitted_messages": jp.omitted_messages,
                "cut_messages": jp.cut_messages, "over_budget": jp.over_budget}

    def tokenize_example(self, judge_messages: list[dict], label: bool) -> dict:
        """Token ids of prompt + answer and a completion mask (1 on the answer tokens only)."""
        prompt_ids = self.encode(self.render(judge_messages[:2]))
        answer_ids = self.encode(self.completion(label))
        return {"input_ids": prompt_ids + answer_ids,
                "completion_mask": [0] * len(prompt_ids) + [1] * len(answer_ids)}


def verdict_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The first-token ids of each spelling of YES and of NO (with and without a leading
    space); ids that start both a YES and a NO spelling are dropped as uninformative."""

    def first_ids(variants: tuple[str, ...]) -> set[int]:
        out = set()
        for v in variants:
            ids = tokenizer(v, add_special_tokens=False)["input_ids"]
            if ids:
                out.add(ids[0])
        return out

    yes, no = first_ids(YES_VARIANTS), first_ids(NO_VARIANTS)
    both = yes & no
    yes, no = sorted(yes - both), sorted(no - both)
    if not yes or not no:
        raise ValueError("the tokenizer gives YES and NO the same first token; cannot score verdicts")
    return yes, no

