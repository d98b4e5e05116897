"""Leak safety: task images whose git cannot reach the fix, and an audit that proves it.

A synthetic instance image holds the buggy tree as a single-commit repository: no history,
reflog, branches, tags, stashes or packed objects from the original code. `audit_task`
checks any row's image from inside a sandbox: the fixed version of every file the gold
patch touches must not exist anywhere in the object store, and no line the fix adds may
appear in any git object unless the buggy tree itself has it."""

from __future__ import annotations

import json
import shlex

import docker
from swelego.errors import SwelegoError
from swelego.harness import added_lines, apply_patch, patch_files
from swelego.sandbox import DockerSandbox
from swelego.sandbox.sources import FIXED_GIT_DATE, GIT_EXCLUDES
from swelego.schema import TaskInstance

# Start anew from the buggy working tree. Bytecode of the original code would leak it too.
_REINIT = (
    "set -e; cd /testbed; find . -name __pycache__ -type d -prune -exec rm -rf {} +; rm -rf .git; "
    "git init -q -b main; printf '%s\\n' " + " ".join(shlex.quote(x) for x in GIT_EXCLUDES)
    + " > .git/info/exclude; git add -A; "
    f"GIT_AUTHOR_DATE={FIXED_GIT_DATE} GIT_COMMITTER_DATE={FIXED_GIT_DATE} "
    "git -c user.name=swelego -c user.email=swelego@localhost commit -q --no-verify -m 'Initial commit'; "
    "git reflog expire --expire=now --all; git gc -q --prune=now; git rev-parse HEAD"
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
        repo, tag = name.rsplit(":", 1)
        sb.container.commit(repository=repo, tag=tag, changes=[
            'ENTRYPOINT ["/usr/bin/tini", "-s", "--"]', 'CMD ["sleep", "infinity"]', "WORKDIR /testbed",
            "LABEL swelego.kind=instance"])
    return name, commit


_AUDIT_PY = r'''
import json, subprocess, sys
def git(*a):
    return subprocess.run(["git", *a], capture_output=True, text=True, cwd="/testbed").stdout
spec = json.load(open("/tmp/swelego-audit.json"))
problems = []
head_tree = set(git("ls-tree", "-r", "--format=%(objectname)", "HEAD").split())
if spec["single_commit"]:
    n = len(git("rev-list", "--all").split())
    if n != 1:
        problems.append(f"{n} commits reachable (expected 1)")
for what, args in (("reflog entries", ("reflog", "--all")), ("stashes", ("stash", "list")), ("tags", ("tag",)),
                   ("remotes", ("remote",)), ("other branches", ("branch", "-a", "--format=%(refname)"))):
    lines = [l for l in git(*args).splitlines() if l.strip() and l != "refs/heads/main"]
    if lines:
        problems.append(f"{len(lines)} {what}: {lines[0][:80]}")
for f, sha in spec["fixed_blobs"].items():
    if subprocess.run(["git", "cat-file", "-e", sha], cwd="/testbed").returncode == 0:
        problems.append(f"the fixed {f} is in the object store ({sha[:12]})")
needles = spec["fix_lines"]
if needles:
    objs = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)").split("\n")
    blobs = [o.split()[0] for o in objs if o.endswith(" blob") and o.split()[0] not in head_tree]
    if blobs:
        out = subprocess.run(["git", "cat-file", "--batch"], input="\n".join(blobs) + "\n", capture_output=True,
                             text=True, errors="replace", cwd="/testbed").stdout
        present = {l.strip() for l in out.splitlines()}
        for l in needles:
            if l in present:
                problems.append(f"a line of the fix is in a git object outside HEAD: {l[:80]!r}")
                break
print("AUDIT-JSON " + json.dumps(problems))
'''


def _fix_lines(fix_patch: str) -> list[str]:
    return [s for s in added_lines(fix_patch) if len(s.replace(" ", "")) >= 8]


def audit_task(task: TaskInstance, *, client: docker.DockerClient) -> list[str]:
    """Problems found in `task.image` (empty when the fix is unreachable through git)."""
    with DockerSandbox(task.image, client=client) as sb:
        head = sb.exec("git rev-parse HEAD", timeout=60).output.strip()
        if head != task.base_commit:
            return [f"HEAD is {head[:12]}, not the row's base_commit {task.base_commit[:12]}"]
        # Hash the fixed files in a throwaway copy: applying the patch in /testbed itself
        # could add the very objects we look for (git apply --3way writes blobs).
        sb.write_file("/tmp/swelego-gold.patch", task.patch if task.patch.endswith("\n") else task.patch + "\n")
        files = patch_files(task.patch)
        quoted = " ".join(shlex.quote(f) for f in files)
        r = sb.exec("rm -rf /tmp/swelego-fixed && cp -a /testbed /tmp/swelego-fixed && cd /tmp/swelego-fixed && "
                    "(git apply /tmp/swelego-gold.patch || patch --batch -p1 -i /tmp/swelego-gold.patch) >/dev/null && "
                    f"for f in {quoted}; do if [ -f \"$f\" ]; then echo \"$f $(git hash-object \"$f\")\"; fi; done",
                    timeout=600)
        if not r.ok:
            return ["the gold patch does not apply to the image"]
        blobs = dict(line.rsplit(" ", 1) for line in r.output.splitlines() if " " in line)
        head_lines = set()
        for f in files:
            r = sb.exec(f"cat {shlex.quote(f)}", timeout=60)
            if r.ok:
                head_lines.update(x.strip() for x in r.output.splitlines())
        lines = [x for x in _fix_lines(task.patch) if x not in head_lines]
        spec = {"single_commit": task.source == "synthetic", "fixed_blobs": blobs, "fix_lines": lines}
        sb.write_file("/tmp/swelego-audit.json", json.dumps(spec))
        sb.write_file("/tmp/swelego-audit.py", _AUDIT_PY)
        r = sb.exec("python3 /tmp/swelego-audit.py", timeout=600)
    for line in r.output.splitlines():
        if line.startswith("AUDIT-JSON "):
            return json.loads(line[len("AUDIT-JSON "):])
    raise SwelegoError(f"{task.instance_id}: the audit script failed: {r.output[-300:]}")
