"""Leak safety: task images whose git cannot reach the fix, and an audit that proves it.

A synthetic instance image holds the buggy tree as a single-commit repository; every image
we build, and every sandbox before an episode, goes through the core sanitization
(swelego.sandbox.gitsanitize). `audit_task` checks any row's image (ours or a third party's,
with git and a POSIX shell in it; no Python needed) from inside a sandbox:

- the strong property: the object store (loose, packed, alternates) holds exactly the objects
  of `git rev-list --objects <base_commit>`, and no ref but HEAD's branch, pseudo-ref
  (FETCH_HEAD, ORIG_HEAD, ...), reflog, remote or other leftover file remains in .git;
- the fixed version of every file the gold patch touches exists nowhere in the store (not
  even in the base commit's own history, where a revert would have put it);
- no line the fix adds appears in an object outside the base commit's history (lines of
  older versions inside that history are the project's past, not a leak);
- a synthetic row's repository has exactly one commit.

`audit_dataset` reads rows leniently (any swebench-style JSON/JSONL/HF dataset with at least
instance_id, image, base_commit and patch; other fields are ignored) and yields one verdict a
row: ok, leak, image_missing or bad_row."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
from swelego.errors import SwelegoError
from swelego.harness import added_lines, apply_patch, patch_files
from swelego.sandbox import DockerSandbox
from swelego.sandbox.docker import commit_image
from swelego.sandbox.gitsanitize import KEEP_GIT_DIR, SAFE_GIT_SH, sanitize_command
from swelego.sandbox.sources import FIXED_GIT_DATE, GIT_EXCLUDES

# Start anew from the buggy working tree. Bytecode of the original code would leak it too.
_REINIT = (
    "set -e; cd /testbed; find . -name __pycache__ -type d -prune -exec rm -rf {} +; rm -rf .git; "
    "git init -q -b main; printf '%s\\n' " + " ".join(shlex.quote(x) for x in GIT_EXCLUDES)
    + " > .git/info/exclude; git add -A; "
    f"GIT_AUTHOR_DATE={FIXED_GIT_DATE} GIT_COMMITTER_DATE={FIXED_GIT_DATE} "
    "git -c user.name=swelego -c user.email=swelego@localhost commit -q --no-verify -m 'Initial commit'; "
    "git gc -q --prune=now; " + sanitize_command() + "; git rev-parse HEAD"
)


def instance_image_name(namespace: str, instance_id: str) -> str:
    """swebench's naming for namespaced instance images."""
    return f"{namespace}/sweb.eval.x86_64.{instance_id.lower().replace('__', '_1776_')}:latest"


def make_instance_image(env_image: str, bug_patch: str, instance_id: str, *, namespace: str,
                        client: docker.DockerClient, reinit: bool = True) -> tuple[str, str]:
    """Commit an image of `env_image` with `bug_patch` applied and git started anew.
    Returns (image name, base commit). `reinit=False` keeps the history (for tests of the
    audit, and never for datasets)."""
    name = instance_image_name(namespace, instance_id)
    with DockerSandbox(env_image, client=client) as sb:
        if not apply_patch(sb, bug_patch):
            raise SwelegoError(f"{instance_id}: bug patch does not apply to {env_image}")
        if reinit:
            r = sb.exec(_REINIT, timeout=300)
        else:
            r = sb.exec("git -c user.name=swelego -c user.email=swelego@localhost commit -qam bug && git rev-parse HEAD",
                        timeout=300)
        if not r.ok:
            raise SwelegoError(f"{instance_id}: could not prepare the instance repository: {r.output[-300:]}")
        commit = r.output.strip().splitlines()[-1]
        commit_image(sb, name)
    return name, commit


# Runs in the image with git and a POSIX shell only. $1: the base commit; $2: 1 for a
# synthetic row (single commit expected); /tmp/swelego-audit/fixed: "<blob> <path>" of the
# fixed files; /tmp/swelego-audit/needles: lines the fix adds.
_AUDIT_SH = "set -u\nbase=$1 single=$2 a=/tmp/swelego-audit\n" + SAFE_GIT_SH + r"""
p() { echo "PROBLEM $*"; }
done_() { echo AUDIT-DONE; exit 0; }
command -v git >/dev/null 2>&1 || { p "git is not installed in the image"; done_; }
gd=$(g rev-parse --absolute-git-dir 2>/dev/null) || { p "$(pwd) is not a git repository"; done_; }
head=$(g rev-parse -q --verify 'HEAD^{commit}') || { p "HEAD does not name a commit"; done_; }
b=$(g rev-parse -q --verify "$base^{commit}") || { p "the row's base_commit $base is not in the repository"; done_; }
[ "$head" = "$b" ] || p "HEAD is $head, not the row's base_commit $b"
cur=$(g symbolic-ref -q HEAD || true)
g for-each-ref --format='%(refname)' | grep -vxF -e "$cur" > "$a/refs"
if [ -s "$a/refs" ]; then
  kinds=$(sed -e 's|^refs/\([^/]*\).*|\1|' "$a/refs" | sort | uniq -c | awk '{printf "%s%s %s", s, $1, $2; s=", "}')
  p "$(wc -l < "$a/refs" | tr -d ' ') refs besides HEAD's branch ($kinds), e.g. $(head -n 1 "$a/refs")"
fi
r=$(g remote | tr '\n' ' ')
[ -z "$r" ] || p "remotes configured: ${r% }"
g reflog show --all --format=%H > "$a/reflog" 2>/dev/null || true
[ ! -s "$a/reflog" ] || p "$(wc -l < "$a/reflog" | tr -d ' ') reflog entries"
extra=""
for f in "$gd"/* "$gd"/.[!.]*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  case ${f##*/} in @KEEP_GIT_DIR@) ;; *) extra="$extra ${f##*/}" ;; esac
done
for f in info/grafts objects/info/alternates objects/info/http-alternates; do
  [ ! -e "$gd/$f" ] || extra="$extra $f"
done
[ -z "$extra" ] || p "the git directory still holds:$extra"
if [ "$single" = 1 ]; then
  n=$(g rev-list --count HEAD)
  [ "$n" = 1 ] || p "$n commits reachable (expected 1)"
fi
g cat-file --batch-all-objects --batch-check='%(objectname)' > "$a/all" || p "cannot list the object store"
g rev-list --objects "$b" > "$a/reach.raw" || p "the history of base_commit is incomplete (missing objects)"
cut -d' ' -f1 "$a/reach.raw" | sort > "$a/reach"
sort "$a/all" | comm -23 - "$a/reach" > "$a/extra"
if [ -s "$a/extra" ]; then
  kinds=$(g cat-file --batch-check='%(objecttype)' < "$a/extra" | sort | uniq -c | awk '{printf "%s%s %s", s, $1, $2; s=", "}')
  p "$(wc -l < "$a/extra" | tr -d ' ') objects not reachable from base_commit ($kinds), e.g. $(head -n 1 "$a/extra")"
fi
while read -r sha path; do
  if g cat-file -e "$sha" 2>/dev/null; then
    if grep -qxF -e "$sha" "$a/reach"; then where=", in the history of base_commit"; else where=""; fi
    p "the fixed $path is in the object store ($sha$where)"
  fi
done < "$a/fixed"
if [ -s "$a/needles" ] && [ -s "$a/extra" ]; then
  g cat-file --batch-check='%(objectname) %(objecttype)' < "$a/extra" | awk '$2 == "blob" {print $1}' > "$a/blobs"
  if [ -s "$a/blobs" ]; then
    hit=$(g cat-file --batch < "$a/blobs" | grep -a -F -m 1 -f "$a/needles" | sed 's/^[[:space:]]*//' | cut -c1-100)
    [ -z "$hit" ] || p "a line of the fix is in an object not reachable from base_commit: $hit"
  fi
fi
done_
""".replace("@KEEP_GIT_DIR@", KEEP_GIT_DIR)

# The fixed version of each touched file, hashed outside the repository (applying the patch in
# /testbed could write the very blobs we look for): the base commit's blobs ($1), patched in a
# scratch tree.
_FIXED_SH = "set -eu\nbase=$1\n" + SAFE_GIT_SH + r"""
s=/tmp/swelego-audit/fixed-tree
rm -rf "$s"; mkdir -p "$s"
while IFS= read -r f; do
  if g cat-file -e "$base:$f" 2>/dev/null; then
    mkdir -p "$s/$(dirname "$f")"; g cat-file blob "$base:$f" > "$s/$f"
  fi
done < /tmp/swelego-audit/files
cd "$s"
(git apply /tmp/swelego-audit/gold.patch || patch --batch -p1 -i /tmp/swelego-audit/gold.patch) >/dev/null 2>&1 \
  || { echo "GOLD-DOES-NOT-APPLY"; exit 0; }
while IFS= read -r f; do
  if [ -f "$f" ]; then echo "FIXED $(git hash-object --no-filters -- "$f") $f"; fi
done < /tmp/swelego-audit/files
"""


def _fix_lines(fix_patch: str) -> list[str]:
    return [s for s in added_lines(fix_patch) if len(s.replace(" ", "")) >= 8]


@dataclass
class AuditRow:
    """What the audit needs of a row; any swebench-style row has it."""
    instance_id: str
    image: str
    base_commit: str
    patch: str
    source: str = ""  # "synthetic" rows must have a single commit


_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")


def audit_row(rec) -> AuditRow:
    """The audit's view of one record (a dict); ValueError, with the reason, when it lacks one."""
    if not isinstance(rec, dict):
        raise ValueError(f"a row is a JSON object, not {type(rec).__name__}")
    missing = [k for k in ("instance_id", "image", "base_commit", "patch") if not rec.get(k)]
    if missing:
        raise ValueError(f"missing or empty field(s): {', '.join(missing)}")
    bad = [k for k in ("instance_id", "image", "base_commit", "patch") if not isinstance(rec[k], str)]
    if bad:
        raise ValueError(f"field(s) {', '.join(bad)} must be strings")
    if not _HEX.match(rec["base_commit"].strip()):
        raise ValueError(f"base_commit {rec['base_commit'][:50]!r} is not a commit hash")
    source = rec.get("source") if isinstance(rec.get("source"), str) else ""
    return AuditRow(instance_id=rec["instance_id"], image=rec["image"].strip(), base_commit=rec["base_commit"].strip(),
                    patch=rec["patch"], source=source)


def audit_task(task, *, client: docker.DockerClient) -> list[str]:
    """Problems found in `task.image` (empty when nothing of the fix or of any later history
    is in its git). `task` is a TaskInstance or an AuditRow."""
    with DockerSandbox(task.image, client=client) as sb:
        files = [f for f in patch_files(task.patch) if "\n" not in f]
        sb.write_file("/tmp/swelego-audit/gold.patch", task.patch if task.patch.endswith("\n") else task.patch + "\n")
        sb.write_file("/tmp/swelego-audit/files", "".join(f + "\n" for f in files))
        base = shlex.quote(task.base_commit)
        r = sb.exec(f"sh -c {shlex.quote(_FIXED_SH)} swelego-audit {base}", timeout=600)
        if "GOLD-DOES-NOT-APPLY" in r.output:
            problems = ["the gold patch does not apply to base_commit"]
            fixed = []
        elif not r.ok:
            raise SwelegoError(f"{task.instance_id}: could not hash the fixed files: {r.output.strip()[-300:]}")
        else:
            problems = []
            fixed = [line[len("FIXED "):] for line in r.output.splitlines() if line.startswith("FIXED ")]
        head_lines: set[str] = set()
        for f in files:
            r = sb.exec(f"GIT_NO_REPLACE_OBJECTS=1 git -c core.fsmonitor=false cat-file blob {base}:{shlex.quote(f)}",
                        timeout=60)
            if r.ok:
                head_lines.update(x.strip() for x in r.output.splitlines())
        needles = [x for x in _fix_lines(task.patch) if x not in head_lines]
        sb.write_file("/tmp/swelego-audit/fixed", "".join(x + "\n" for x in fixed))
        sb.write_file("/tmp/swelego-audit/needles", "".join(x + "\n" for x in needles))
        single = "1" if getattr(task, "source", "") == "synthetic" else "0"
        r = sb.exec(f"sh -c {shlex.quote(_AUDIT_SH)} swelego-audit {base} {single}",
                    timeout=1800)
    if "AUDIT-DONE" not in r.output:
        raise SwelegoError(f"{task.instance_id}: the audit script failed: {r.output.strip()[-300:]}")
    return problems + [line[len("PROBLEM "):] for line in r.output.splitlines() if line.startswith("PROBLEM ")]


@dataclass
class AuditVerdict:
    where: str  # file:line (or file[i]) of the row
    status: str  # ok | leak | image_missing | bad_row | error
    instance_id: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        return {"where": self.where, "instance_id": self.instance_id, "status": self.status, "ok": self.ok,
                "problems": self.problems}


def _dataset_records(path: Path) -> Iterator[tuple[str, object]]:
    from swelego.records import iter_records

    # The layouts `load_dataset` knows first (a synth/validate output directory), then any records.
    if path.is_dir() and not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
        if (path / "dataset").is_dir():
            path = path / "dataset"
        elif (path / "tasks.jsonl").exists():
            path = path / "tasks.jsonl"
    yield from iter_records(path)


def audit_dataset(path: str | Path, *, client: docker.DockerClient) -> Iterator[AuditVerdict]:
    """One verdict per record under `path`; a malformed record, a missing image or an audit
    that cannot run is reported as such and the rest go on."""
    seen_images: dict[str, bool] = {}
    for where, rec in _dataset_records(Path(path)):
        if isinstance(rec, Exception):
            yield AuditVerdict(where, "bad_row", problems=[str(rec)])
            continue
        iid = rec.get("instance_id", "") if isinstance(rec, dict) else ""
        try:
            row = audit_row(rec)
        except ValueError as e:
            yield AuditVerdict(where, "bad_row", instance_id=iid if isinstance(iid, str) else "", problems=[str(e)])
            continue
        if row.image not in seen_images:
            try:
                client.images.get(row.image)
                seen_images[row.image] = True
            except docker.errors.ImageNotFound:
                seen_images[row.image] = False
            except docker.errors.APIError as e:
                yield AuditVerdict(where, "error", row.instance_id, [f"cannot inspect {row.image}: {e.explanation or e}"])
                continue
        if not seen_images[row.image]:
            yield AuditVerdict(where, "image_missing", row.instance_id, [f"image {row.image} is not present locally"])
            continue
        try:
            problems = audit_task(row, client=client)
        except (SwelegoError, docker.errors.APIError) as e:
            yield AuditVerdict(where, "error", row.instance_id, [f"audit failed: {e}"])
            continue
        yield AuditVerdict(where, "leak" if problems else "ok", row.instance_id, problems)
