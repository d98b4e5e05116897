"""GPU checks for `swelego sft train` (not part of the CPU test suite).

On a machine with a CUDA GPU it exercises the paths CPU CI cannot:

  env        torch/CUDA, flash-attn, DeepSpeed, Liger versions
  packing    padding-free packing is exact: the token-weighted loss of three trajectories run
             separately equals the loss of the same three packed into one row (position_ids
             restart per trajectory, no attention mask), for sdpa and, when installed,
             flash_attention_2 (bf16)
  flash      the tiny preset trains on the GPU with flash_attention_2 + packing + bf16; loss falls
  deepspeed  `accelerate launch --config_file configs/sft/accelerate/zero3.yaml -m sft.cli train`
             (ZeRO-3, one process) finishes and writes a run card
  liger      the tiny preset trains with Liger kernels

Each check reports pass / FAIL / skipped (a missing package skips, it does not fail). Exit
status 1 when a check fails. Without a GPU it prints "skipped: no GPU" and exits 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/sft/tiny-cpu.yaml"
ZERO3 = REPO / "configs/sft/accelerate/zero3.yaml"


def _installed(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def check_env() -> tuple[str, str]:
    import torch
    import transformers
    import trl

    parts = [f"torch {torch.__version__} (CUDA {torch.version.cuda})", torch.cuda.get_device_name(0),
             f"transformers {transformers.__version__}", f"trl {trl.__version__}"]
    for mod in ("flash_attn", "deepspeed", "liger_kernel"):
        parts.append(f"{mod}: {'yes' if _installed(mod) else 'no'}")
    return "pass", "; ".join(parts)


def _rows(n: int = 3, max_len: int = 1024):
    from sft.synthetic import compact_tools, synthetic_dataset
    from sft.tiny import build_tiny_tokenizer
    from sft.tokens import render_conversations, training_chat_template

    tok = build_tiny_tokenizer(None)
    eps = synthetic_dataset(n, seed=5, tools=compact_tools())
    items = [(e.trajectory.messages, e.trajectory.tools, [True] * e.trajectory.turns) for e in eps]
    rendered = render_conversations(tok, items, training_chat_template(tok))
    return tok, [(r.input_ids[:max_len], r.labels[:max_len]) for r in rendered]


def check_packing(attn: str) -> tuple[str, str]:
    import torch
    from transformers import AutoModelForCausalLM

    from sft.tiny import build_tiny_model

    if attn == "flash_attention_2" and not _installed("flash_attn"):
        return "skipped", "flash-attn not installed"
    dtype = torch.bfloat16 if attn == "flash_attention_2" else torch.float32
    tok, rows = _rows()
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tok), dtype=dtype, attn_implementation=attn)
    model = model.cuda().eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in rows:
            out = model(input_ids=torch.tensor([ids]).cuda(), labels=torch.tensor([labels]).cuda(), use_cache=False)
            n = sum(1 for x in labels[1:] if x != -100)  # the loss is over shifted labels
            total += out.loss.float().item() * n
            count += n
        separate = total / count
        ids = torch.tensor([sum((r[0] for r in rows), [])]).cuda()
        labels = [r[1] for r in rows]
        # the first label of each document must not be predicted from the previous document
        flat = sum(([-100, *lab[1:]] for lab in labels), [])
        pos = torch.tensor([sum((list(range(len(r[0]))) for r in rows), [])]).cuda()
        packed = model(input_ids=ids, position_ids=pos, labels=torch.tensor([flat]).cuda(), use_cache=False)
        packed = packed.loss.float().item()
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    rel = abs(packed - separate) / separate
    return ("pass" if rel < tol else "FAIL"), f"{attn}: separate {separate:.5f} packed {packed:.5f} (rel {rel:.2e})"


def _train(out: Path, data: Path, sets: dict) -> dict:
    from sft.train import train_from_config

    res = train_from_config(TINY, {"data.paths": [str(data)], "output_dir": str(out), "training.use_cpu": False,
                                   "data.max_length": 2048, **sets})
    return json.loads(res.run_card_path.read_text())


def _loss_fell(card: dict) -> tuple[bool, str]:
    losses = [x["loss"] for x in card["losses"]["log"]]
    k = max(1, len(losses) // 4)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return last < first, f"loss {first:.3f} -> {last:.3f} over {len(losses)} logs"


def check_flash(data: Path, work: Path) -> tuple[str, str]:
    if not _installed("flash_attn"):
        return "skipped", "flash-attn not installed"
    card = _train(work / "flash", data, {"model.attn_implementation": "flash_attention_2", "model.dtype": "bfloat16",
                                         "training.bf16": True, "training.packing": True, "training.max_steps": 20})
    ok, msg = _loss_fell(card)
    attn_ok = card["model"]["attn_implementation"] == "flash_attention_2" and card["run"]["packing"] is True
    return ("pass" if ok and attn_ok and card["run"]["device"] == "cuda" else "FAIL"), msg


def check_liger(data: Path, work: Path) -> tuple[str, str]:
    if not _installed("liger_kernel"):
        return "skipped", "liger-kernel not installed"
    card = _train(work / "liger", data, {"model.liger_kernel": True, "training.bf16": True, "training.max_steps": 10})
    ok, msg = _loss_fell(card)
    return ("pass" if ok and card["run"]["liger_kernel"] else "FAIL"), msg


def check_deepspeed(data: Path, work: Path) -> tuple[str, str]:
    if not _installed("deepspeed"):
        return "skipped", "deepspeed not installed"
    out = work / "zero3"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO3), "--num_processes", "1",
           "-m", "sft.cli", "train", str(TINY), "--data", str(data), "--output-dir", str(out), "--max-steps", "8",
           "--set", "training.use_cpu=false", "--set", "training.bf16=true", "--set", "data.max_length=2048"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    if res.returncode != 0:
        return "FAIL", f"exit {res.returncode}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}"
    card = json.loads((out / "run_card.json").read_text())
    ok, msg = _loss_fell(card)
    return ("pass" if ok else "FAIL"), "ZeRO-3, 1 process; " + msg


def main() -> int:
    try:
        import torch
    except ImportError:
        print("skipped: no GPU (torch is not installed)")
        return 0
    if not torch.cuda.is_available():
        print("skipped: no GPU")
        return 0
    from sft.synthetic import compact_tools, synthetic_dataset, write_jsonl

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "trajectories.jsonl"
        write_jsonl(synthetic_dataset(48, seed=21, turns=(7, 16), tools=compact_tools()), data)
        checks = [("env", check_env), ("packing sdpa", lambda: check_packing("sdpa")),
                  ("packing flash", lambda: check_packing("flash_attention_2")),
                  ("flash + packing train", lambda: check_flash(data, work)),
                  ("deepspeed zero3", lambda: check_deepspeed(data, work)),
                  ("liger", lambda: check_liger(data, work))]
        for name, fn in checks:
            t0 = time.time()
            try:
                status, detail = fn()
            except Exception as e:  # report and go on to the next check
                status, detail = "FAIL", f"{type(e).__name__}: {e}"
                traceback.print_exc()
            results.append((name, status, detail, time.time() - t0))
            print(f"[{status}] {name} ({time.time() - t0:.1f}s): {detail}", flush=True)
    print("\n| check | status | seconds | detail |\n|---|---|---|---|")
    for name, status, detail, secs in results:
        print(f"| {name} | {status} | {secs:.1f} | {detail} |")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check_sft.json").write_text(json.dumps(results, indent=2))
    return 1 if any(s == "FAIL" for _, s, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
