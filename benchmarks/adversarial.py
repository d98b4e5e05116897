"""Adversarial grading benchmark: every attack family of swelego.adversarial on a dataset's rows,
graded side by side in one run with

  (a) the rows' own eval scripts (swelego's: test infrastructure restored to the base commit)
      under our grader and under the unmodified official swebench harness, and
  (b) the usual swebench eval-script shape (check out the test patch's files, apply it, run
      the tests) under the official harness, which shows that the attacks are real.

Prints family x {(a) ours, (a) official, (b) official} -> rows graded resolved, next to the gold
patch's count. Target (issue #12): 0 for every attack under (a), gold = all rows. Nothing is
asserted. Rows come from any swebench-style dataset whose images exist locally, e.g. the demo's
(`make demo` writes demo-output/data/tasks: synthetic rows of real PyPI sdists and real rows
mined from a local git history):

    .venv/bin/python benchmarks/adversarial.py demo-output/data/tasks --limit 12
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from swelego.adversarial import FAMILIES, naive_eval_script, run_attacks
from swelego.schema import load_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", default="demo-output/data/tasks")
    ap.add_argument("--limit", type=int, default=None, help="rows per source (synthetic / real)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--no-naive", action="store_true", help="skip (b), the usual eval-script shape")
    args = ap.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    if not Path(args.dataset).exists():
        console.print(f"{args.dataset}: no dataset (run `make demo`, or pass a swebench-style dataset)")
        return 1
    problems: list[str] = []
    rows = load_dataset(args.dataset, problems=problems)
    for p in problems:
        console.print(p, markup=False)
    by_source: dict[str, list] = {}
    for r in rows:
        by_source.setdefault(r.source or "other", []).append(r)
    tasks = [t for group in by_source.values() for t in group[: args.limit]]
    families = tuple(f for f in args.families.split(",") if f)
    counts = {src: sum(1 for t in tasks if (t.source or "other") == src) for src in by_source}
    console.print(f"{len(tasks)} rows: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    work = Path(tempfile.mkdtemp(prefix="swelego-bench-attacks-"))
    t0 = time.monotonic()
    ours = run_attacks(tasks, families=families, workdir=work / "ours")
    t_ours = time.monotonic() - t0
    naive = None
    if not args.no_naive:
        t0 = time.monotonic()
        naive = run_attacks(tasks, families=families, workdir=work / "naive", eval_script=naive_eval_script)
        t_naive = time.monotonic() - t0
    t = Table(title=f"rows graded resolved, of {len(tasks)} ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    for col in ("family", "(a) our grader", "(a) official harness", "(b) usual shape, official"):
        t.add_column(col, justify="left" if col == "family" else "right")
    for name in ("gold", *families):
        t.add_row(name, str(ours.ours[name]), str(ours.official[name]),
                  str(naive.official[name]) if naive else "-")
    console.print(t)
    per = Table(title="per source, (a) official harness")
    per.add_column("family")
    for src in counts:
        per.add_column(src, justify="right")
    for name in ("gold", *families):
        ids = set(ours.resolved_by.get(f"{name}/official", []))
        per.add_row(name, *(str(sum(1 for x in tasks if x.instance_id in ids and (x.source or "other") == src))
                            for src in counts))
    console.print(per)
    console.print(f"(a) {t_ours:.0f} s" + (f", (b) {t_naive:.0f} s" if naive else "")
                  + f"; attacks that could not be built: {len(ours.failures)}")
    for f in ours.failures[:10]:
        console.print("  " + f.splitlines()[0], markup=False)
    console.print("broken: " + ("; ".join(ours.broken()) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
