"""DockerSandbox on the real engine: isolation, limits, timeouts, output caps, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import docker.errors
import pytest

from swelego.sandbox import DockerSandbox, SandboxLimits, gc_containers


def _exists(client, cid) -> bool:
    try:
        client.containers.get(cid)
        return True
    except docker.errors.NotFound:
        return False


@pytest.fixture(scope="module")
def sb(toolz_env, client):
    with DockerSandbox(toolz_env.image, client=client, limits=SandboxLimits(exec_timeout=60)) as s:
        yield s


def test_no_network_inside(sb):
    code = ("import socket,errno\ns=socket.socket()\ns.settimeout(3)\n"
            "try:\n s.connect(('1.1.1.1',53)); print('CONNECTED')\n"
            "except OSError as e: print('ERR', errno.errorcode.get(e.errno, e.errno))")
    sb.write_file("/tmp/net.py", code)
    r = sb.exec("python /tmp/net.py; ls /sys/class/net")
    assert "CONNECTED" not in r.output
    assert "ERR ENETUNREACH" in r.output
    assert r.output.split()[-1] == "lo"  # the loopback is the only interface


def test_host_environment_not_visible(toolz_env, client, monkeypatch):
    monkeypatch.setenv("SWELEGO_HOST_SECRET", "s3cr3t-value")
    with DockerSandbox(toolz_env.image, client=client) as s:
        r = s.exec("env")
    assert r.ok
    assert "s3cr3t-value" not in r.output and "SWELEGO_HOST_SECRET" not in r.output
    assert "PATH=/opt/venv/bin" in r.output


def test_capabilities_dropped_and_no_new_privileges(sb):
    r = sb.exec("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; chown nobody /tmp 2>&1; echo rc=$?")
    assert "CapEff:\t0000000000000000" in r.output
    assert "NoNewPrivs:\t1" in r.output
    assert "rc=1" in r.output  # chown needs CAP_CHOWN


def test_fork_bomb_hits_pid_limit(toolz_env, client):
    with DockerSandbox(toolz_env.image, client=client, limits=SandboxLimits(pids=64)) as s:
        code = textwrap.dedent("""\
            import os, time
            n = 0
            try:
                while True:
                    if os.fork() == 0:
                        time.sleep(3); os._exit(0)
                    n += 1
            except OSError as e:
                print("fork failed after", n, "children:", e.strerror)
            """)
        s.write_file("/tmp/bomb.py", code)
        r = s.exec("python /tmp/bomb.py", timeout=30)
        assert "fork failed after" in r.output and "Resource temporarily unavailable" in r.output
        n = int(r.output.split("fork failed after")[1].split()[0])
        assert n < 64
        assert client.api.inspect_container(s.container_id)["HostConfig"]["PidsLimit"] == 64
        time.sleep(4)  # the children exit; the sandbox is usable again
        assert s.exec("echo recovered", timeout=20).output.strip() == "recovered"


def test_memory_bomb_is_killed(toolz_env, client):
    with DockerSandbox(toolz_env.image, client=client, limits=SandboxLimits(memory="256m")) as s:
        r = s.exec("python -c \"x = bytearray(800 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('ALIVE')\"",
                   timeout=60)
        assert r.exit_code == 137 and "ALIVE" not in r.output
        assert s.exec("echo still-here").output.strip() == "still-here"  # the sandbox survives


def test_infinite_loop_times_out_and_whole_tree_dies(sb):
    t0 = time.monotonic()
    # The daemonized child leaves the process group; the timeout must still find it.
    r = sb.exec("setsid sleep 1000 & while true; do :; done", timeout=2)
    assert r.timed_out and r.exit_code != 0
    assert time.monotonic() - t0 < 15
    left = sb.exec("ps -eo args").output
    assert "sleep 1000" not in left and "while true" not in left


def test_background_job_does_not_hold_the_command(sb):
    r = sb.exec("sleep 30 & echo started", timeout=20)
    assert r.ok and "started" in r.output and r.duration < 10
    sb.exec("pkill -f 'sleep 30'")


def test_huge_output_is_capped(sb):
    r = sb.exec("head -c 50000000 /dev/urandom | base64 -w 100; echo END-MARK", timeout=60)
    assert r.exit_code == 0
    assert r.truncated_bytes > 40_000_000
    assert len(r.output.encode()) < sb.limits.max_output + 1024
    assert r.output.rstrip().endswith("END-MARK")  # the tail is kept


def test_binary_output_and_files_round_trip(sb):
    blob = bytes(range(256)) * 4
    sb.write_file("/tmp/blob.bin", blob)
    assert sb.read_file("/tmp/blob.bin") == blob
    r = sb.exec("cat /tmp/blob.bin")
    assert r.ok and "\ufffd" in r.output  # undecodable bytes replaced, not an exception
    with pytest.raises(FileNotFoundError):
        sb.read_file("/tmp/does-not-exist")


def test_git_reset_restores_repo(sb):
    before = sb.exec("git status --porcelain").output
    assert before == ""
    # what the install left ignored in the tree (egg-info, built .so files) is part of the image's state
    sb.reset("git")  # the module's earlier tests may have left caches behind
    installed = sb.exec("git status --porcelain --ignored").output
    sb.exec("echo junk >> toolz/itertoolz.py && touch new_untracked.py && mkdir -p build && touch build/x")
    assert sb.exec("git status --porcelain").output != ""
    t0 = time.monotonic()
    sb.reset("git")
    assert time.monotonic() - t0 < 5
    assert sb.exec("git status --porcelain --ignored").output == installed
    assert "new_untracked.py" not in installed and "build/" not in installed


def test_fresh_reset_drops_state_outside_repo(toolz_env, client):
    with DockerSandbox(toolz_env.image, client=client) as s:
        s.exec("echo x > /root/outside && echo junk >> setup.py")
        first = s.container_id
        s.reset("fresh")
        assert s.container_id != first and not _exists(client, first)
        assert s.exec("test -e /root/outside").exit_code == 1
        assert s.exec("git status --porcelain").output == ""


FORGE = r"""
import importlib._bootstrap_external as be, os, tarfile
src = "toolz/functoolz.py"
text = open(src).read()
bad = text.replace("    return x\n", "    return 0\n", 1)  # identity(), same size
assert bad != text and len(bad) == len(text)
st = os.stat(src)
pyc = be._code_to_timestamp_pyc(compile(bad, os.path.abspath(src), "exec"), st.st_mtime, st.st_size)
os.makedirs("/tmp/forged/toolz/__pycache__", exist_ok=True)
with open("/tmp/forged/toolz/__pycache__/functoolz.cpython-311.pyc", "wb") as f:
    f.write(pyc)
with tarfile.open("/opt/swelego/bytecode.tar", "w") as tf:
    tf.add("/tmp/forged/toolz", arcname="./toolz")
"""


def test_kept_bytecode_is_never_stale_and_a_replaced_copy_is_not_restored(toolz_env, client):
    identity = "python -c 'import toolz; print(toolz.identity(5))'"
    same_size_bug = r"sed -i '/^def identity/,/return x/ s/return x$/return 0/' toolz/functoolz.py"
    with DockerSandbox(toolz_env.image, client=client) as s:
        s.reset("git")
        assert s.exec(identity).output.strip() == "5"  # a clean run compiles what it imports
        assert s.keep_bytecode()
        # What validation does, in quick succession (within one second): reset, a same-size edit of
        # a file whose bytecode was kept, a run. The edit is seen, and after the next reset the clean
        # code runs again, never the bytecode of the edit before.
        for _ in range(4):
            s.reset("git")
            assert s.exec("ls toolz/__pycache__").output.count(".pyc") > 3  # restored after git's clean
            assert s.exec(f"{same_size_bug} && {identity}").output.strip() == "0"
        s.reset("git")
        assert s.exec(identity).output.strip() == "5"
        s.reset("fresh")  # a new container gets the archive back
        assert s.exec("ls toolz/__pycache__").output.count(".pyc") > 3 and s.exec(identity).output.strip() == "5"
        # A run replaces the archive with bytecode of the bug that records the clean source's mtime
        # and size: restored, the clean tree would run the bug. The hash check skips it.
        s.write_file("/tmp/forge.py", FORGE)
        r = s.exec("python /tmp/forge.py")
        assert r.ok, r.output
        s.reset("git")
        assert s.exec(identity).output.strip() == "5"
        # The forgery is real: extracted by hand, it makes the clean tree run the bug.
        assert s.exec(f"tar -xf /opt/swelego/bytecode.tar -C /testbed && {identity}").output.strip() == "0"
        s.reset("git")
        assert s.exec(identity).output.strip() == "5"


def test_no_container_left_after_exception(toolz_env, client):
    cid = None
    with pytest.raises(RuntimeError):
        with DockerSandbox(toolz_env.image, client=client) as s:
            cid = s.container_id
            assert _exists(client, cid)
            raise RuntimeError("boom")
    assert cid and not _exists(client, cid)


DRIVER = """
import sys, time
from swelego.sandbox import DockerSandbox
s = DockerSandbox(sys.argv[1]).start()
print(s.container_id, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_remove_the_container(toolz_env, client, sig):
    # A driver started from a terminal: a test session launched as a background job of a
    # non-interactive shell (`... &`) ignores SIGINT, and its children would inherit that.
    p = subprocess.Popen([sys.executable, "-c", DRIVER, toolz_env.image], stdout=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cid = p.stdout.readline().strip()
    assert _exists(client, cid)
    p.send_signal(sig)
    p.wait(timeout=60)
    assert not _exists(client, cid)


def test_gc_removes_containers_of_killed_drivers(toolz_env, client):
    p = subprocess.Popen([sys.executable, "-c", DRIVER, toolz_env.image], stdout=subprocess.PIPE, text=True)
    cid = p.stdout.readline().strip()
    os.kill(p.pid, signal.SIGKILL)  # no handler runs: the container is orphaned
    p.wait(timeout=30)
    assert _exists(client, cid)
    with DockerSandbox(toolz_env.image, client=client) as mine:  # a live driver's sandbox is kept
        removed = gc_containers(client=client)
        assert _exists(client, mine.container_id)
    assert not _exists(client, cid)
    assert removed  # the orphan's name is reported


def test_gc_leaves_containers_others_make_from_our_images(toy_env, client):
    """Instance images are committed from sandboxes. A container the official harness starts
    from one (no labels of its own) is not ours to collect: before, it inherited the
    sandbox's labels, and gc killed harness runs mid-test whenever that pid was free."""
    from conftest import TEST_NS

    from swelego.sandbox.docker import LABEL, OWNER_LABEL, commit_image

    with DockerSandbox(toy_env.image, client=client) as sb:
        fresh = commit_image(sb, f"{TEST_NS}/gc-probe:new")
        # an image committed the old way, labels and a dead driver's pid included
        repo, tag = f"{TEST_NS}/gc-probe:old".rsplit(":", 1)
        sb.container.commit(repository=repo, tag=tag, changes=[
            'ENTRYPOINT ["/usr/bin/tini", "-s", "--"]', 'CMD ["sleep", "infinity"]',
            f"LABEL {OWNER_LABEL}=gone-host:999999"])
    assert client.images.get(fresh).labels.get(LABEL) == ""
    harness = [client.containers.run(img, detach=True) for img in (fresh, f"{repo}:{tag}")]
    try:
        gc_containers(client=client)
        for c in harness:
            c.reload()
            assert c.status == "running", c.name
    finally:
        for c in harness:
            c.remove(force=True)
