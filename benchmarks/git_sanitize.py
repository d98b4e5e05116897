"""Git sanitization benchmark: what `swelego.sandbox.gitsanitize` costs per episode.

(1) Our own single-commit image (the toy task's environment, built here): the routine finds
    nothing to remove; next to it, a bare `docker exec` of `true` for the fixed cost.
(2) Histories laid out like the official SWE-bench images: N commits, HEAD reset to the
    middle one, the later half reachable from tags and the reflog. First pass (prune) and
    second pass (nothing left to remove), for a few history sizes.

Numbers are medians of --repeats runs, each in a fresh container.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from swelego.sandbox import DockerSandbox, docker_client  # noqa: E402
from swelego.sandbox.gitsanitize import sanitize_repo  # noqa: E402

NAMESPACE = "swelego-bench"
console = Console(width=None if sys.stdout.isatty() else 200)

# $1 commits, $2 files touched in turn; prints the base commit (the middle one).
HISTORY_SH = r"""
set -eu
export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b
rm -rf /tmp/hist && mkdir /tmp/hist && cd /tmp/hist && git init -q -b main
i=0
while [ $i -lt "$2" ]; do i=$((i + 1)); mkdir -p "d$((i % 17))"; seq 1 40 > "d$((i % 17))/f$i.py"; done
git add -A && git commit -q -m init
i=1
while [ $i -lt "$1" ]; do
  i=$((i + 1)); k=$(( (i % $2) + 1 )); f="d$((k % 17))/f$k.py"; echo "x = $i" >> "$f"
  git commit -q -am "commit $i"; [ $((i % 25)) -ne 0 ] || git tag "v$i"
done
git gc -q
base=$(git rev-parse "main~$(($1 / 2))")
git reset -q --hard "$base"
echo "$base"
"""


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_own_image(image: str, base: str, repeats: int) -> tuple[float, float, int]:
    exec_true, sanitize, objects = [], [], 0
    for _ in range(repeats):
        with DockerSandbox(image) as sb:
            exec_true.append(timed(lambda sb=sb: sb.exec("true", timeout=60)))
            t0 = time.perf_counter()
            res = sanitize_repo(sb, base)
            sanitize.append(time.perf_counter() - t0)
            assert not res.changed, res  # a benchmark of the no-op path
            objects = res.objects
    return statistics.median(exec_true), statistics.median(sanitize), objects


def bench_history(image: str, commits: int, files: int, repeats: int) -> dict:
    first, second, removed, kept = [], [], 0, 0
    for _ in range(repeats):
        with DockerSandbox(image) as sb:
            sb.write_file("/tmp/hist.sh", HISTORY_SH)
            r = sb.exec(f"sh /tmp/hist.sh {commits} {files}", timeout=1200)
            if not r.ok:
                raise SystemExit(f"could not build the history: {r.output[-500:]}")
            base = r.output.split()[-1]
            t0 = time.perf_counter()
            res = sanitize_repo(sb, base, workdir="/tmp/hist")
            first.append(time.perf_counter() - t0)
            removed, kept = res.objects_removed, res.objects
            t0 = time.perf_counter()
            again = sanitize_repo(sb, base, workdir="/tmp/hist")
            second.append(time.perf_counter() - t0)
            assert not again.changed, again
    return {"first": statistics.median(first), "second": statistics.median(second), "removed": removed,
            "kept": kept}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--histories", default="300,1000", help="comma list of history lengths (commits)")
    ap.add_argument("--files", type=int, default=300, help="files in the history repositories")
    args = ap.parse_args()
    docker_client()
    from harness_quickstart import make_toy_repo

    from swelego.sandbox.images import build_env_image

    with tempfile.TemporaryDirectory() as tmp:
        env = build_env_image(str(make_toy_repo(Path(tmp) / "toycalc")), namespace=NAMESPACE, log=lambda m: None)
    exec_true, own, objects = bench_own_image(env.image, env.base_commit, args.repeats)
    t = Table(title=f"(1) our single-commit image (median of {args.repeats})")
    for c in ("objects", "docker exec `true`", "git sanitize", "sanitize minus exec"):
        t.add_column(c, justify="right")
    t.add_row(str(objects), f"{exec_true * 1000:.0f} ms", f"{own * 1000:.0f} ms", f"{(own - exec_true) * 1000:.0f} ms")
    console.print(t)
    t = Table(title=f"(2) official-layout histories, {args.files} files, HEAD at the middle commit "
                    f"(median of {args.repeats})")
    for c in ("commits", "objects removed", "objects kept", "first pass (prune)", "second pass (no-op)"):
        t.add_column(c, justify="right")
    for n in (int(x) for x in args.histories.split(",") if x.strip()):
        h = bench_history(env.image, n, args.files, args.repeats)
        t.add_row(str(n), str(h["removed"]), str(h["kept"]), f"{h['first'] * 1000:.0f} ms",
                  f"{h['second'] * 1000:.0f} ms")
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
