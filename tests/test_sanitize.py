"""Git sanitization (swelego.sandbox.gitsanitize) and `swelego data audit`, on the real engine,
with an image whose /testbed still holds a later fix everywhere git can keep one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_NS

from swelego.agent.loop import run_episode, sanitize_git
from swelego.errors import SwelegoError
from swelego.sandbox import DockerSandbox
from swelego.sandbox.gitsanitize import sanitize_repo

SWELEGO = str(Path(sys.executable).with_name("swelego"))
FIX_LINE = "return (s[n // 2 - 1] + s[n // 2]) / 2"

# Plant the toy task's fix (GOLD_PATCH, marked by where it is kept) in every place git can keep
# it: a branch, tags (light and annotated), a note, remote-tracking and refs/pull refs, a pack,
# a kept pack, the reflog, ORIG_HEAD, FETCH_HEAD, a stash, a dropped stash (dangling commit),
# a loose blob, the index, a replace ref that makes the base look fixed, an alternate object
# store, a commit-graph, COMMIT_EDITMSG. Then remove Python: the routine must need git and sh.
LEAK_SH = r"""
set -eu
cd /testbed
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
base=$(git rev-parse HEAD)
f=toycalc/__init__.py
fix() { sed -i "s|    return s\[len(s) // 2\]|    n = len(s)\n    if n % 2:\n        return s[n // 2]\n    return (s[n // 2 - 1] + s[n // 2]) / 2$1|" "$f"; }
git checkout -q -b fix-branch; fix ""; git commit -qam "Fix median for even lengths"
fixc=$(git rev-parse HEAD)
git tag v-fix; git tag -a -m "release with the fix" v-fix-annotated
git notes add -m "the fix is $fixc" "$base"
git remote add origin https://example.invalid/toycalc.git
git update-ref refs/remotes/origin/main "$fixc"
git update-ref refs/pull/1/head "$fixc"
git checkout -q main
git repack -a -d -q
git checkout -q -b kept; fix "  # kept"; git commit -qam "kept fix"; keptc=$(git rev-parse HEAD); git checkout -q main
pack=$(echo "$keptc" | git pack-objects -q --revs .git/objects/pack/pack)
touch ".git/objects/pack/pack-$pack.keep"
git branch -D -q kept
git reset -q --hard "$fixc"; git reset -q --hard "$base"
git fetch -q . fix-branch
fix "  # stash"; git stash -q
fix "  # dropped"; git stash -q; git stash drop -q
echo "    return (s[n // 2 - 1] + s[n // 2]) / 2  # loose" | git hash-object -w --stdin >/dev/null
fix "  # staged"; git add "$f"; git show "$base:$f" > "$f"
git replace -f "$base" "$fixc"
git commit-graph write --reachable
git init -q --bare /opt/alt.git
echo "    return (s[n // 2 - 1] + s[n // 2]) / 2  # alternate" | git --git-dir=/opt/alt.git hash-object -w --stdin >/dev/null
echo /opt/alt.git/objects > .git/objects/info/alternates
find / -xdev \( -type f -o -type l \) -name 'python*' -path '*/bin/*' -delete
! command -v python3 && ! command -v python
"""

# What an agent would try, one command per line of output.
PROBE = ("cd /testbed; "
         "echo log=$(git log --all --format=%H | tr '\\n' ,); "
         f"echo grep=$(git cat-file --batch-all-objects --batch | grep -c -F '{FIX_LINE}'); "
         "echo fsck=$(git fsck --lost-found --unreachable --dangling --no-reflogs 2>&1 | wc -l)"
         "/$(ls .git/lost-found 2>/dev/null | wc -l); "
         "echo refs=$(git for-each-ref --format='%(refname)' | tr '\\n' ,); "
         "echo reflog=$(git reflog --all 2>/dev/null | wc -l) stash=$(git stash list | wc -l) "
         "tags=$(git tag | wc -l) notes=$(git notes list 2>/dev/null | wc -l) replace=$(git replace -l | wc -l); "
         "echo pseudo=$(git rev-parse -q --verify FETCH_HEAD || echo none)/$(git rev-parse -q --verify ORIG_HEAD || echo none); "
         "echo gitdir=$(ls -A .git | tr '\\n' ,); "
         "echo status=$(git status --porcelain | wc -l) head=$(git rev-parse HEAD)")


def _probe_fields(output: str) -> dict[str, str]:
    fields = {}
    for line in output.splitlines():
        for part in line.split():
            if "=" in part:
                k, v = part.split("=", 1)
                fields[k] = v
    return fields


@pytest.fixture(scope="module")
def leaky_image(toy_env, client):
    with DockerSandbox(toy_env.image, client=client) as sb:
        sb.write_file("/tmp/leak.sh", LEAK_SH)
        r = sb.exec("sh /tmp/leak.sh", timeout=120)
        assert r.ok, r.output[-2000:]
        sb.container.commit(repository=f"{TEST_NS}/leaky", tag="latest", changes=["WORKDIR /testbed"])
    return f"{TEST_NS}/leaky:latest"


@pytest.fixture(scope="module")
def leaky_task(toy_task, leaky_image):
    return toy_task.model_copy(update={"instance_id": "toy__toycalc-leaky", "image": leaky_image})


class Scripted:
    def __init__(self, commands):
        self.commands = list(commands)

    def next_message(self, messages, tools):
        n = len(messages)
        if not self.commands:
            return {"role": "assistant", "content": None,
                    "tool_calls": [{"id": f"c{n}", "type": "function", "function": {"name": "finish", "arguments": json.dumps({"message": "done"})}}]}
        cmd = self.commands.pop(0)
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{n}", "type": "function", "function": {"name": "execute_bash",
                                                             "arguments": json.dumps({"command": cmd})}}]}


def test_the_leaky_image_really_holds_the_fix(leaky_task, client):
    # Without sanitization every probe finds the fix: the episode test below can fail.
    with DockerSandbox(leaky_task.image, client=client) as sb:
        f = _probe_fields(sb.exec(PROBE, timeout=120).output)
    assert int(f["grep"]) >= 5 and f["log"].count(",") >= 4
    assert int(f["reflog"]) > 0 and f["stash"] == "1" and f["tags"] == "2" and f["replace"] == "1"
    assert f["pseudo"].split("/")[0] != "none" and f["pseudo"].split("/")[1] != "none"


def test_episode_starts_with_nothing_of_a_later_fix(leaky_task, client):
    with DockerSandbox(leaky_task.image, client=client) as sb:
        traj = run_episode(leaky_task, sb, Scripted([PROBE]), grade=False)
        out = next(m["content"] for m in traj.messages if m["role"] == "tool")
        f = _probe_fields(out)
        assert f["log"] == leaky_task.base_commit + ",", out  # one commit: the base
        assert f["grep"] == "0", out  # no object, loose, packed, kept or alternate, holds the fix
        assert f["fsck"] == "0/0", out  # nothing dangling or unreachable
        assert f["refs"] == "refs/heads/main,", out
        assert (f["reflog"], f["stash"], f["tags"], f["notes"], f["replace"]) == ("0",) * 5, out
        assert f["pseudo"] == "none/none", out
        assert set(f["gitdir"].strip(",").split(",")) <= {"HEAD", "config", "description", "hooks", "index", "info",
                                                          "objects", "packed-refs", "refs"}, out
        assert f["status"] == "0" and f["head"] == leaky_task.base_commit, out  # the working tree is untouched
        assert traj.patch == "" and traj.exit_reason == "finish"
        again = sanitize_git(sb, leaky_task.base_commit)  # after the episode's own `git reset` (ORIG_HEAD)
        assert again.objects_removed == 0 and again.refs_removed == 0, again
        assert sb.exec("cat /opt/alt.git/objects/info/packs 2>/dev/null; test ! -e .git/objects/info/alternates",
                       timeout=30).ok


def test_sanitizing_refuses_a_head_that_is_not_the_base(toy_task, client):
    with DockerSandbox(toy_task.image, client=client) as sb:
        with pytest.raises(SwelegoError, match="not in the repository"):
            sanitize_repo(sb, "0" * 40)
        r = sb.exec("git -c user.name=t -c user.email=t@t commit -q --allow-empty -m later && git rev-parse HEAD",
                    timeout=30)
        with pytest.raises(SwelegoError, match=f"HEAD is {r.output.strip()}, not the base commit"):
            sanitize_repo(sb, toy_task.base_commit)


def test_our_images_need_no_sanitizing(toy_task, client):
    with DockerSandbox(toy_task.image, client=client) as sb:
        res = sanitize_repo(sb, toy_task.base_commit)
    assert not res.changed and res.objects > 0, res


HISTORY_SH = r"""
set -eu
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
rm -rf /tmp/hist && mkdir /tmp/hist && cd /tmp/hist && git init -q -b main
i=0
while [ $i -lt 300 ]; do
  i=$((i + 1)); mkdir -p "d$((i % 7))"; echo "line $i" >> "d$((i % 7))/f$((i % 13)).txt"
  git add -A; git commit -q -m "commit $i"
  [ $((i % 50)) -ne 0 ] || git tag "v$i"
done
git gc -q
base=$(git rev-parse main~150)
git reset -q --hard "$base"
echo "$base"
"""


def test_a_long_history_keeps_exactly_the_base_history(toy_env, client):
    # The official layout: the full upstream history, HEAD reset to the base, later commits on
    # tags and in the reflog.
    with DockerSandbox(toy_env.image, client=client) as sb:
        sb.write_file("/tmp/hist.sh", HISTORY_SH)
        r = sb.exec("sh /tmp/hist.sh", timeout=300)
        assert r.ok, r.output[-1000:]
        base = r.output.split()[-1]
        res = sanitize_repo(sb, base, workdir="/tmp/hist")
        check = sb.exec(
            "echo $(git rev-list --all | wc -l) $(git tag | wc -l) "
            "$(git cat-file --batch-all-objects --batch-check | wc -l) $(git rev-list --objects HEAD | wc -l) "
            "$(git grep -c 'line 300' $(git rev-list --all) -- | wc -l) $(git fsck --no-dangling 2>&1 | wc -l)",
            timeout=120, workdir="/tmp/hist")
    assert res.objects_removed > 0 and res.refs_removed == 6, res
    commits, tags, objects, reachable, later, fsck = check.output.split()
    assert commits == "150" and tags == "0" and objects == reachable == str(res.objects), check.output
    assert later == "0" and fsck == "0", check.output


def _audit(*args, timeout=600):
    return subprocess.run([SWELEGO, "data", "audit", *args], capture_output=True, text=True, timeout=timeout)


def test_audit_finds_every_leak_and_passes_the_sanitized_image(leaky_task, client, tmp_path):
    row = leaky_task.to_row()
    # A third party's row: official fields we do not model, lists as JSON strings.
    foreign = {**row, "environment_setup_commit": row["base_commit"], "difficulty": "<15 min fix",
               "image_assets": {"env": "x"}, "FAIL_TO_PASS": json.dumps(row.get("FAIL_TO_PASS", [])),
               "unknown_field": 1}
    rows = tmp_path / "rows.jsonl"
    missing = {**foreign, "instance_id": "toy__missing", "image": f"{TEST_NS}/does-not-exist:latest"}
    no_commit = {k: v for k, v in foreign.items() if k != "base_commit"}
    rows.write_text("\n".join([json.dumps(foreign), "{not json", json.dumps(no_commit), json.dumps(missing)]) + "\n")
    r = _audit(str(rows))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    leak = next(ln for ln in lines if "LEAK" in ln)
    assert "rows.jsonl:1" in leak and leaky_task.instance_id in leak
    for what in ("refs besides HEAD's branch", "tags", "stash", "notes", "replace", "remotes", "pull",
                 "remotes configured: origin", "reflog", "FETCH_HEAD", "ORIG_HEAD", "logs",
                 "objects/info/alternates", "objects not reachable from base_commit", "commit",
                 "the fixed toycalc/__init__.py is in the object store", "a line of the fix"):
        assert what in leak, (what, leak)
    assert any("rows.jsonl:2" in ln and "bad row" in ln and "not valid JSON" in ln for ln in lines), r.stdout
    assert any("rows.jsonl:3" in ln and "bad row" in ln and "base_commit" in ln for ln in lines), r.stdout
    assert any("rows.jsonl:4" in ln and "image missing" in ln for ln in lines), r.stdout
    assert "0/4 rows clean: 1 leak(s), 1 image(s) missing, 2 bad row(s)" in r.stdout

    # The same image after the sanitization that image building and episodes use: clean.
    with DockerSandbox(leaky_task.image, client=client) as sb:
        sanitize_repo(sb, leaky_task.base_commit)
        sb.container.commit(repository=f"{TEST_NS}/sanitized", tag="latest", changes=["WORKDIR /testbed"])
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({**foreign, "image": f"{TEST_NS}/sanitized:latest"}) + "\n")
    r = _audit(str(clean), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    verdicts = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(v["status"], v["ok"], v["problems"], v["where"]) for v in verdicts] == [("ok", True, [], "clean.jsonl:1")]
    assert "1/1 rows clean" in r.stderr
