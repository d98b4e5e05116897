"""SFT data preparation benchmark: swelego's rendering + labelling versus TRL's own
`assistant_only_loss` preparation, on the same trajectories and tokenizer.

  (a) swelego, error masks  label every turn (swelego.trajectories.labels), render with the training template,
                            batch-tokenize, labels with error turns masked (what `sft train` does)
  (b) swelego, no masks     the same without labelling (every assistant turn trained)
  (c) TRL                   SFTTrainer's dataset preparation of the conversational dataset with
                            `assistant_only_loss=True` (apply_chat_template per example with
                            `return_assistant_tokens_mask`, then labels from the mask)

For each it reports trajectories, tokens, seconds and tokens/s, and the speedup over (c); then
it checks that (b)'s input_ids and labels are identical to (c)'s for every trajectory, and that
(a) differs from (b) only by masking (same input_ids, labels a subset). Nothing is asserted; the
exit status is 1 only when the labels differ.

Data: synthetic SWE-style episodes with the scaffold's full tool schemas (default), or
`--data` trajectory files. Tokenizer: the tiny offline one, or `--tokenizer DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)


def _load(args) -> list:
    if args.data:
        from sft.data import iter_trajectories

        trajs = [t for _, t in iter_trajectories(args.data) if not isinstance(t, Exception)]
        return trajs[: args.n] if args.n else trajs
    from sft.synthetic import synthetic_dataset

    return [e.trajectory for e in synthetic_dataset(args.n, seed=args.seed, turns=(8, 30), mistakes=(0, 3))]


def _ours(tok, template, trajs, mask: bool):
    from sft.tokens import render_conversations
    from swelego.trajectories.labels import label_trajectory

    t0 = time.perf_counter()
    out = []
    for i in range(0, len(trajs), 32):
        chunk = trajs[i: i + 32]
        items = []
        for t in chunk:
            flags = [not lab.error for lab in label_trajectory(t)] if mask else \
                [True] * sum(1 for m in t.messages if m.get("role") == "assistant")
            items.append((t.messages, t.tools, flags))
        out.extend(render_conversations(tok, items, template))
    return out, time.perf_counter() - t0


def _trl(tok, template, trajs, workdir):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from sft.tiny import build_tiny_model, build_tiny_tokenizer

    rows = [{"messages": [{k: v for k, v in m.items() if v is not None and k in
                           ("role", "content", "tool_calls", "tool_call_id", "name")} for m in t.messages],
             "tools": json.dumps(t.tools)} for t in trajs]
    ds = Dataset.from_list(rows)
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(build_tiny_tokenizer(None)))
    tok.chat_template = template
    args = SFTConfig(output_dir=workdir, assistant_only_loss=True, max_length=None, use_cpu=True, bf16=False,
                     activation_checkpointing=False, report_to="none", shuffle_dataset=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds.select(range(1)), processing_class=tok)
    fresh = Dataset.from_list(rows)  # not yet cached by datasets
    t0 = time.perf_counter()
    prepared = trainer._prepare_dataset(fresh, tok, args, False, None, "bench")
    return prepared, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="trajectories (synthetic, or the first N of --data)")
    ap.add_argument("--data", nargs="*", default=None, help="trajectory files/folders instead of synthetic ones")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the tiny offline one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from datasets import disable_caching

    from sft.tiny import build_tiny_tokenizer
    from sft.tokens import IGNORE_INDEX, training_chat_template

    disable_caching()
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tok = build_tiny_tokenizer(None)
    template = training_chat_template(tok)
    trajs = _load(args)
    console.print(f"{len(trajs)} trajectories, tokenizer with {len(tok)} ids")

    masked, t_masked = _ours(tok, template, trajs, mask=True)
    plain, t_plain = _ours(tok, template, trajs, mask=False)
    with tempfile.TemporaryDirectory() as wd:
        ref, t_trl = _trl(tok, template, trajs, wd)
    ref_rows = list(ref)

    n_tokens = sum(len(r.input_ids) for r in plain)
    table = Table(title="SFT preparation throughput")
    for col in ("method", "trajectories", "tokens", "seconds", "tokens/s", "vs TRL"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, secs in (("(a) swelego, error masks", t_masked), ("(b) swelego, no masks", t_plain),
                       ("(c) TRL assistant_only_loss", t_trl)):
        table.add_row(name, str(len(trajs)), f"{n_tokens:,}", f"{secs:.2f}", f"{n_tokens / secs:,.0f}",
                      f"{t_trl / secs:.2f}x")
    console.print(table)

    same = sum(1 for r, x in zip(plain, ref_rows, strict=True)
               if r.input_ids == x["input_ids"] and r.labels == x["labels"])
    subset = sum(1 for a, b in zip(masked, plain, strict=True)
                 if a.input_ids == b.input_ids
                 and all(x == IGNORE_INDEX or x == y for x, y in zip(a.labels, b.labels, strict=True)))
    trained_plain = sum(sum(1 for x in r.labels if x != IGNORE_INDEX) for r in plain)
    trained_masked = sum(sum(1 for x in r.labels if x != IGNORE_INDEX) for r in masked)
    check = Table(title="label checks")
    check.add_column("check")
    check.add_column("result", justify="right")
    check.add_row("(b) input_ids + labels identical to TRL's", f"{same}/{len(trajs)}")
    check.add_row("(a) = (b) with some turns masked", f"{subset}/{len(trajs)}")
    check.add_row("trained tokens (b) / (a)", f"{trained_plain:,} / {trained_masked:,} "
                                              f"({100 * (1 - trained_masked / max(trained_plain, 1)):.1f}% masked)")
    console.print(check)
    return 0 if same == len(trajs) and subset == len(trajs) else 1


if __name__ == "__main__":
    sys.exit(main())
