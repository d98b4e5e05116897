"""Scoring trajectories with a verifier: P(YES) for each judge prompt.

Generative verifier (research/paper.md §3): the prompt is rendered with the chat template
and the opening `<judgement>` tag, and the logits of the next token are read. The YES logit
is the largest logit over the first tokens of the YES spellings (`YES`, `Yes`, `yes`, with
and without a leading space), likewise for NO, and P(YES) = e^yes / (e^yes + e^no).

Regressive verifier: a scalar head on the same prompt; P(YES) = sigmoid(logit), reported
as logit_yes = logit, logit_no = 0 so both kinds share one record shape.

Served verifiers (vLLM or any OpenAI-compatible endpoint that returns logprobs): the
judge messages plus an assistant turn holding `<judgement>` are continued for one token
(`continue_final_message`), and the top logprobs of that token give the two logits. A side
missing from the top list is bounded by the smallest listed logprob (the record says so).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from verifier.prompt import NO_VARIANTS, OPEN_TAG, YES_VARIANTS, JudgeFormatter, verdict_token_ids

KINDS = ("generative", "regressive")
META_FILE = "verifier.json"


@dataclass
class Verdict:
    """One score: P(YES), the two logits (or logprobs) it came from, and any problem."""

    score: float | None
    logit_yes: float | None = None
    logit_no: float | None = None
    note: str = ""  # e.g. "NO not in top logprobs (bounded)", or the error that left score empty


def two_way_softmax(logit_yes: float, logit_no: float) -> float:
    """e^yes / (e^yes + e^no), computed without overflow."""
    d = logit_no - logit_yes
    if d > 0:
        e = math.exp(-d)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(d))


def p_yes_from_logits(logits: Sequence[float], yes_ids: Iterable[int], no_ids: Iterable[int]) -> Verdict:
    """P(YES) from one position's logits over the vocabulary (max over each spelling set)."""
    ly = max(float(logits[i]) for i in yes_ids)
    ln = max(float(logits[i]) for i in no_ids)
    return Verdict(two_way_softmax(ly, ln), ly, ln)


def _verdict_of(token: str) -> str | None:
    t = token.strip()
    if t in {v.strip() for v in YES_VARIANTS}:
        return "yes"
    if t in {v.strip() for v in NO_VARIANTS}:
        return "no"
    return None


def p_yes_from_top_logprobs(top: list[dict]) -> Verdict:
    """P(YES) from an OpenAI `top_logprobs` list (`[{"token", "logprob"}, ...]`) of the verdict
    token. Spellings with and without a leading space count for their answer."""
    best: dict[str, float] = {}
    for entry in top or []:
        side = _verdict_of(str(entry.get("token", "")))
        lp = entry.get("logprob")
        if side is None or lp is None:
            continue
        best[side] = max(best.get(side, -math.inf), float(lp))
    if not best:
        return Verdict(None, note="neither YES nor NO among the top logprobs")
    note = ""
    floor = min(float(e["logprob"]) for e in top if e.get("logprob") is not None)
    for side in ("yes", "no"):
        if side not in best:
            best[side] = floor
            note = f"{side.upper()} not in top logprobs (bounded by the smallest listed)"
    return Verdict(two_way_softmax(best["yes"], best["no"]), best["yes"], best["no"], note)


def read_meta(model_dir: str | Path) -> dict:
    """The verifier's own settings saved next to its weights by `verifier train` (may be absent)."""
    p = Path(model_dir) / META_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


class LocalScorer:
    """Scores judge prompts with a local transformers checkpoint, in batches."""

    def __init__(self, model: str | Path, *, kind: str | None = None, batch_size: int = 4,
                 max_length: int | None = None, chat_template_kwargs: dict | None = None,
                 device: str | None = None, dtype: str = "auto"):
        import torch
        from transformers import AutoTokenizer

        meta = read_meta(model) if Path(model).is_dir() else {}
        self.kind = kind or meta.get("kind", "generative")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        self.batch_size = max(1, batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = meta.get("chat_template_kwargs", {"enable_thinking": False})
        if chat_template_kwargs is not None:
            kwargs = chat_template_kwargs
        self.formatter = JudgeFormatter(self.tokenizer, max_length=max_length or meta.get("max_length"),
                                        chat_template_kwargs=kwargs)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        if self.kind == "generative":
            from transformers import AutoModelForCausalLM

            self.model = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch_dtype)
            self.yes_ids, self.no_ids = verdict_token_ids(self.tokenizer)
        else:
            from transformers import AutoModelForSequenceClassification

            self.model = AutoModelForSequenceClassification.from_pretrained(str(model), num_labels=1,
                                                                           dtype=torch_dtype)
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()

    def score_ids(self, batch: list[list[int]]) -> list[Verdict]:
        """Verdicts for already-encoded prompts (each ending with the opening tag)."""
        import torch

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        # Left padding puts every prompt's last token in the last column; positions count real tokens.
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            if self.kind == "generative":
                out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                 logits_to_keep=1)
                last = out.logits[:, -1, :].float().cpu()
                return [p_yes_from_logits(row, self.yes_ids, self.no_ids) for row in last]
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions)
            logits = out.logits[:, 0].float().cpu().tolist()
            return [Verdict(1.0 / (1.0 + math.exp(-z)), z, 0.0) for z in logits]

    def score(self, judge_messages: list[list[dict]]) -> list[Verdict]:
        encoded = [self.formatter.encode(self.formatter.render(m)) for m in judge_messages]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
        out: list[Verdict | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            for i, v in zip(idx, self.score_ids([encoded[i] for i in idx]), strict=True):
                out[i] = v
        return out  # type: ignore[return-value]


class EndpointScorer:
    """Scores judge prompts through an OpenAI-compatible endpoint that returns logprobs."""

    kind = "generative"

    def __init__(self, base_url: str, model: str, *, tokenizer=None, max_length: int | None = None,
                 chat_template_kwargs: dict | None = None, top_logprobs: int = 20, workers: int = 8,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 600.0, max_retries: int = 4):
        from swelego.llm import LLMClient, LLMConfig

        self.client = LLMClient(LLMConfig(base_url=base_url, model=model, api_key_env=api_key_env,
                                          temperature=0.0, max_tokens=1, timeout=timeout,
                                          max_retries=max_retries))
        self.chat_template_kwargs = {"enable_thinking": False} if chat_template_kwargs is None else chat_template_kwargs
        self.formatter = JudgeFormatter(tokenizer, max_length=max_length,
                                        chat_template_kwargs=self.chat_template_kwargs)
        self.top_logprobs = top_logprobs
        self.workers = max(1, workers)
        self.batch_size = self.workers

    def score_one(self, judge_messages: list[dict]) -> Verdict:
        messages = list(judge_messages[:2]) + [{"role": "assistant", "content": OPEN_TAG}]
        extra = {"continue_final_message": True, "add_generation_prompt": False,
                 "chat_template_kwargs": self.chat_template_kwargs}
        try:
            message, _ = self.client.chat(messages, logprobs=True, top_logprobs=self.top_logprobs, extra_body=extra)
        except Exception as e:
            return Verdict(None, note=f"{type(e).__name__}: {str(e)[:200]}")
        content = ((message.get("logprobs") or {}).get("content")) or []
        if not content:
            return Verdict(None, note="the endpoint returned no logprobs")
        return p_yes_from_top_logprobs(content[0].get("top_logprobs") or [])

    def score(self, judge_messages: list[list[dict]]) -> list[Verdict]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self.score_one, judge_messages))


def verdict_record(instance_id: str, sample: int, verdict: Verdict, label: bool | None, **extra) -> dict:
    """A line of `scores.jsonl`: `instance_id`, `sample`, `score` (P(YES)), and the details."""
    rec = {"instance_id": instance_id, "sample": sample, **asdict(verdict),
           "label": None if label is None else bool(label)}
    rec.update(extra)
    return rec


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U / n_pos n_neg, tied scores count one half);
    None when either class is absent."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]  # average 1-based rank of each tie group
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(scores: Sequence[float], labels: Sequence[bool], threshold: float = 0.5) -> float | None:
    """Share of verdicts on the right side of `threshold` (P(YES) >= threshold means YES)."""
    if not scores:
        return None
    return sum((s >= threshold) == bool(y) for s, y in zip(scores, labels, strict=True)) / len(scores)


def score_key(record: dict) -> str:
    return f"{record['instance_id']}#{record['sample']}"


def score_trajectories(trajectories: list, scorer, out: str | Path, *, chunk: int | None = None,
                       on_progress=None) -> dict:
    """Score every trajectory into `out/scores.jsonl` (one line per (instance, sample), appended
    and fsynced; a rerun skips what is there). Failed scores are not written, so a rerun retries
    them. Writes and returns `out/summary.json`: counts, and AUC / accuracy where labels exist."""
    from swelego.store import ResultStore
    from verifier.data import sample_index

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / "scores.jsonl", key_of=score_key)
    todo = [t for t in trajectories if not store.has(f"{t.instance_id}#{sample_index(t)}")]
    failures: dict[str, str] = {}
    over_budget = 0
    step = chunk or max(1, scorer.batch_size * 4)
    done = len(trajectories) - len(todo)
    if on_progress:
        on_progress(done, len(trajectories))
    try:
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            prompts = [scorer.formatter.prompt(t.messages, t.patch or "") for t in part]
            over_budget += sum(p.over_budget for p in prompts)
            for traj, jp, verdict in zip(part, prompts, scorer.score([p.messages for p in prompts]), strict=True):
                key = f"{traj.instance_id}#{sample_index(traj)}"
                if verdict.score is None or not math.isfinite(verdict.score):
                    failures[key] = verdict.note or "no score"
                    continue
                store.put(key, verdict_record(traj.instance_id, sample_index(traj), verdict, traj.resolved,
                                              policy=traj.policy, omitted_messages=jp.omitted_messages,
                                              over_budget=jp.over_budget))
            done += len(part)
            if on_progress:
                on_progress(done, len(trajectories))
        wanted = {f"{t.instance_id}#{sample_index(t)}" for t in trajectories}
        records = [r for k, r in store if k in wanted]
    finally:
        store.close()
    labelled = [r for r in records if r.get("label") is not None]
    s, y = [r["score"] for r in labelled], [bool(r["label"]) for r in labelled]
    summary = {
        "trajectories": len(trajectories), "scored": len(records), "scored_now": len(todo) - len(failures),
        "reused": len(trajectories) - len(todo), "failed": len(failures),
        "failures": dict(list(failures.items())[:20]), "over_budget": over_budget,
        "kind": getattr(scorer, "kind", "generative"), "labelled": len(labelled),
        "positives": sum(y), "auc": roc_auc(s, y) if labelled else None,
        "accuracy": accuracy(s, y) if labelled else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
