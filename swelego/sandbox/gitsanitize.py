"""Git sanitization: a repository left holding its base commit's history and nothing else.

One POSIX sh script (git and coreutils only, so it runs in any image: ours, or a foreign
SWE-bench-layout image whose /testbed still has the full upstream history), used by image
building and by the episode loop before every episode. After it:

- HEAD (and its branch, if any) is the base commit; no other ref of any namespace exists
  (branches, tags, remotes, notes, replace refs, stash, refs/original, ...), nor a pseudo-ref
  (FETCH_HEAD, ORIG_HEAD, MERGE_HEAD, ...), reflog, worktree, remote, rerere cache, commit
  message file or lost-found directory. The git directory keeps only what a working
  repository needs (HEAD, config, index, hooks, info/exclude, objects, refs, ...).
- The object store (loose, packed, and alternates, whose objects are first copied in) holds
  exactly `git rev-list --objects <base>`: anything else is repacked away and pruned, and the
  script checks the result before it reports success.

Git runs with hooks, fsmonitor, replace objects and auto-gc off, so a hostile repository
config cannot run code or hide objects from the check. When there is nothing to remove (our
own single-commit images) the script only lists refs and counts objects: a few git calls.
A shallow repository keeps its `shallow` file (without it the base commit's cut-off parents
would be missing), restricted to commits that still exist.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from swelego.errors import SwelegoError

# What a git directory keeps (sh `case` patterns): enough for a working repository.
KEEP_GIT_DIR = "HEAD|config|description|hooks|index|info|modules|objects|packed-refs|refs|reftable|shallow|sharedindex.*"
KEEP_INFO = "exclude|attributes|sparse-checkout"

# The shell prelude of every script here: no inherited git environment, and `g` runs git
# with hooks, fsmonitor, replace objects and automatic maintenance off.
SAFE_GIT_SH = r"""
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES \
  GIT_COMMON_DIR GIT_NAMESPACE GIT_GRAFT_FILE GIT_SHALLOW_FILE GIT_REPLACE_REF_BASE 2>/dev/null || true
export GIT_NO_REPLACE_OBJECTS=1 GIT_TERMINAL_PROMPT=0 GIT_OPTIONAL_LOCKS=0
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c safe.directory='*' -c gc.auto=0 \
  -c core.untrackedCache=false -c maintenance.auto=false -c repack.writeBitmaps=false \
  -c pack.writeBitmapHashCache=false -c repack.useDeltaIslands=false -c core.commitGraph=false "$@"; }
die() { echo "swelego-sanitize: $*" >&2; exit 3; }
"""

SANITIZE_SH = "set -eu\nbase=${1:-}\n" + SAFE_GIT_SH + r"""
command -v git >/dev/null 2>&1 || die "git is not installed in the image"
gd=$(g rev-parse --absolute-git-dir 2>/dev/null) || die "$(pwd) is not a git repository"
[ ! -f "$gd/commondir" ] || die "$(pwd) is a linked worktree of another repository (not supported)"
# Grafts could add or hide parents: gone before anything asks what is reachable.
rm -f "$gd/info/grafts"
head=$(g rev-parse -q --verify 'HEAD^{commit}') || die "HEAD does not name a commit"
if [ -n "$base" ] && [ "$base" != "$head" ]; then
  b=$(g rev-parse -q --verify "$base^{commit}") || die "the base commit $base is not in the repository"
  [ "$b" = "$head" ] || die "HEAD is $head, not the base commit $b"
fi
cur=$(g symbolic-ref -q HEAD || true)
refs=0 files=0
# Remotes live in config (and legacy files, removed below); their refs go with the others.
for r in $(g remote); do g config --remove-section "remote.$r" 2>/dev/null || true; done
# Every ref but HEAD's branch (ref names hold no whitespace), in one transaction: the files
# and the reftable backends alike.
drop=""
for r in $(g for-each-ref --format='%(refname)'); do
  if [ "$r" != "$cur" ]; then drop="${drop}delete $r
"; refs=$((refs + 1)); fi
done
if [ "$refs" -gt 0 ]; then printf '%s' "$drop" | g update-ref --no-deref --stdin; fi
if [ -d "$gd/reftable" ]; then
  g reflog expire --expire=now --expire-unreachable=now --all
else
  # Files backend: broken refs (which for-each-ref skips) and stale packed-refs lines go too;
  # HEAD's branch is then rewritten as the one loose ref.
  left=$(find "$gd/refs" -type f ! -path "$gd/$cur" | head -n 1)
  packed=""
  if [ -f "$gd/packed-refs" ]; then
    while read -r sha ref; do
      case $sha in "#"*) ;; *) if [ "$sha $ref" != "$head $cur" ]; then packed=1; break; fi ;; esac
    done < "$gd/packed-refs"
  fi
  if [ -n "$left" ] || [ -n "$packed" ]; then
    [ -z "$left" ] || refs=$((refs + 1))
    rm -rf "$gd/refs" "$gd/packed-refs"
    mkdir -p "$gd/refs/heads" "$gd/refs/tags"
    if [ -n "$cur" ]; then mkdir -p "$(dirname "$gd/$cur")"; printf '%s\n' "$head" > "$gd/$cur"; fi
  fi
  if [ "$refs" -gt 0 ]; then
    # Empty directories left by deleted refs would still name them (refs/notes, refs/pull, ...).
    find "$gd/refs" -mindepth 1 -depth -type d -empty ! -path "$gd/refs/heads" ! -path "$gd/refs/tags" \
      -exec rmdir {} \; 2>/dev/null || true
  fi
fi
# The git directory keeps what a working repository needs; everything else (FETCH_HEAD,
# ORIG_HEAD, logs/, worktrees/, rr-cache/, COMMIT_EDITMSG, lost-found/, lfs/, ...) goes.
for f in "$gd"/* "$gd"/.[!.]*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  case ${f##*/} in
    @KEEP_GIT_DIR@) ;;
    *) rm -rf "$f"; files=$((files + 1)) ;;
  esac
done
if [ -d "$gd/info" ]; then
  for f in "$gd"/info/* "$gd"/info/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    case ${f##*/} in @KEEP_INFO@) ;; *) rm -rf "$f"; files=$((files + 1)) ;; esac
  done
fi
for f in "$gd/objects/info/commit-graph" "$gd/objects/info/commit-graphs" "$gd/objects/info/packs"; do
  if [ -e "$f" ] || [ -L "$f" ]; then rm -rf "$f"; files=$((files + 1)); fi
done
# The index may hold blobs of another version (a staged fix): it becomes the base tree.
if ! g diff-index --cached --quiet "$head" --; then g read-tree "$head"; files=$((files + 1)); fi
# Every object of the store (loose, packed, alternates; listed once each) against those
# reachable from the base: equal counts mean equal sets, as the second is part of the first.
# A failing listing yields a count of 0, which never passes (the base has at least 2).
count() {
  na=$(g cat-file --batch-all-objects --batch-check='%(objectname)' | wc -l); na=${na##* }
  nr=$(g rev-list --objects "$head" | wc -l); nr=${nr##* }
  [ "$nr" -ge 2 ] || die "cannot list the objects reachable from $head (is the repository complete?)"
}
extra_store() {
  if [ -s "$gd/objects/info/alternates" ] || [ -s "$gd/objects/info/http-alternates" ]; then return 0; fi
  for f in "$gd"/objects/pack/*.keep "$gd"/objects/pack/*.promisor "$gd"/objects/pack/*.mtimes \
           "$gd"/objects/pack/multi-pack-index*; do
    if [ -e "$f" ]; then return 0; fi
  done
  return 1
}
count
before=$na
if [ "$na" -ne "$nr" ] || extra_store; then
  rm -f "$gd"/objects/pack/*.keep "$gd"/objects/pack/*.promisor "$gd"/objects/pack/multi-pack-index*
  # -a without -l: objects borrowed from alternates are copied into the new pack.
  g repack -a -d -q -n
  rm -f "$gd/objects/info/alternates" "$gd/objects/info/http-alternates"
  g prune --expire=now
  find "$gd/objects" -mindepth 1 -maxdepth 1 ! -name pack ! -name info -exec rm -rf {} +
  for f in "$gd"/objects/pack/*; do
    [ -e "$f" ] || continue
    case $f in *.pack|*.idx|*.rev) ;; *) rm -rf "$f" ;; esac
  done
  if [ -f "$gd/shallow" ]; then
    kept=$(g cat-file --batch-check='%(objectname) %(objecttype)' < "$gd/shallow" | sed -n 's/ commit$//p')
    if [ -n "$kept" ]; then printf '%s\n' "$kept" > "$gd/shallow"; else rm -f "$gd/shallow"; fi
  fi
  count
  [ "$na" -eq "$nr" ] || die "$((na - nr)) objects not reachable from $head remain after pruning"
  ! extra_store || die "alternates or kept packs remain after pruning"
fi
echo "SWELEGO-SANITIZED objects_removed=$((before - na)) refs_removed=$refs files_removed=$files objects=$na"
""".replace("@KEEP_GIT_DIR@", KEEP_GIT_DIR).replace("@KEEP_INFO@", KEEP_INFO)

_RESULT = re.compile(r"SWELEGO-SANITIZED objects_removed=(-?\d+) refs_removed=(\d+) files_removed=(\d+) objects=(\d+)")


@dataclass(frozen=True)
class SanitizeResult:
    objects_removed: int  # objects (commits, trees, blobs, tags) not reachable from the base
    refs_removed: int
    files_removed: int  # pseudo-refs, reflogs, worktrees, alternates, ... in the git directory
    objects: int  # what the store holds now: exactly `git rev-list --objects <base>`

    @property
    def changed(self) -> bool:
        return bool(self.objects_removed or self.refs_removed or self.files_removed)


def sanitize_command(base_commit: str | None = None) -> str:
    """The shell command (sh, run in the repository) that sanitizes it to `base_commit`
    (default: HEAD's commit)."""
    return f"sh -c {shlex.quote(SANITIZE_SH)} swelego-sanitize {shlex.quote(base_commit or '')}"


def _parse(output: str, where: str) -> SanitizeResult:
    m = _RESULT.search(output)
    if not m:
        lines = [ln for ln in output.strip().splitlines() if ln.strip()]
        why = next((ln.split(":", 1)[1].strip() for ln in reversed(lines) if ln.startswith("swelego-sanitize:")),
                   lines[-1] if lines else "no output")
        raise SwelegoError(f"could not sanitize the git repository in {where}: {why}")
    a, b, c, d = (int(x) for x in m.groups())
    return SanitizeResult(objects_removed=a, refs_removed=b, files_removed=c, objects=d)


def sanitize_repo(sandbox, base_commit: str | None = None, *, workdir: str = "/testbed",
                  timeout: float = 1800) -> SanitizeResult:
    """Sanitize the repository at `workdir` inside `sandbox` so that only `base_commit` (which
    HEAD must be) and its history remain. Raises SwelegoError, with the reason, when it cannot."""
    r = sandbox.exec(sanitize_command(base_commit), timeout=timeout, workdir=workdir)
    if r.timed_out:
        raise SwelegoError(f"could not sanitize the git repository in {workdir}: timed out after {timeout:.0f} s")
    if r.exit_code != 0:
        _parse(r.output, workdir)  # raises with the script's reason
        raise SwelegoError(f"could not sanitize the git repository in {workdir}: exit code {r.exit_code}")
    return _parse(r.output, workdir)


def sanitize_local(path: str | Path, base_commit: str | None = None) -> SanitizeResult:
    """The same script on a repository of this machine (one we made: image build contexts)."""
    p = subprocess.run(["sh", "-c", SANITIZE_SH, "swelego-sanitize", base_commit or ""], cwd=str(path),
                       capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        _parse(out, str(path))
        raise SwelegoError(f"could not sanitize the git repository in {path}: exit code {p.returncode}")
    return _parse(out, str(path))
