"""DockerSandbox: a hardened container with timed, capped, killable commands.

Hardened by default (research/harness.md §4): no network, all capabilities dropped,
no-new-privileges, pid/memory/cpu/nofile limits, a clean environment, an init process,
and labels so that `swelego sandbox gc` can find what a killed driver left behind.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import signal
import socket
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

import docker.errors
from docker.types import Ulimit

import docker
from swelego.errors import DockerUnavailableError, SwelegoError
from swelego.sandbox.base import ExecResult, ResetMode
from swelego.sandbox.output import EXEC_MARKER, _CappedBuffer

LABEL = "swelego.sandbox"
OWNER_LABEL = "swelego.owner"
# The install's build products inside /testbed, copied when the image was built; `reset` restores them.
BUILD_PRODUCTS = "/opt/swelego/build-products.tar"
# The tree's compiled bytecode after a clean run (`keep_bytecode`); `reset` restores it.
BYTECODE = "/opt/swelego/bytecode.tar"
_KILL_SCRIPT = (
    'for i in 1 2 3; do for d in /proc/[0-9]*; do '
    'if tr "\\0" "\\n" < "$d/environ" 2>/dev/null | grep -qx "' + EXEC_MARKER + '=$T"; then '
    'kill -9 "${d#/proc/}" 2>/dev/null; fi; done; done; true'
)
_CLEAN_ENV = {"HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat"}
# What an interactive bash of the image exports once /etc/bash.bashrc and ~/.bashrc ran (the
# official SWE-bench images activate their conda `testbed` env only there). Not a login shell:
# Debian's and Ubuntu's /etc/profile reset PATH, and a login shell skips ~/.bashrc.
_ENV_BEGIN = "__SWELEGO_ENV_BEGIN__"
_SHELL_ENV_CMD = ["bash", "-i", "-c", f"printf '%s\\n' {_ENV_BEGIN}; exec env -0"]
_SHELL_ENV_SKIP = {"PWD", "OLDPWD", "SHLVL", "_", EXEC_MARKER}


def docker_client(timeout: int = 120) -> docker.DockerClient:
    """A client for the local engine, or a one-line error saying how to get one."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as e:  # the SDK raises several types for "nothing is listening"
        raise DockerUnavailableError(
            "Docker engine is not running or not reachable "
            f"({type(e).__name__}); start it (e.g. `dockerd &` as root, or `make engine`) "
            "or set DOCKER_HOST"
        ) from None


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox. Defaults follow research/harness.md's recommendations."""

    memory: str = "2g"  # memory and memory+swap: no swap escape
    cpus: float = 1.0
    pids: int = 512
    nofile: int = 4096
    exec_timeout: float = 600.0  # seconds, used when a command names none
    max_output: int = 256 * 1024  # bytes kept per command: half head, half tail


# Containers this process started and has not removed yet; emptied on exit and on SIGTERM.
_LIVE: dict[str, docker.DockerClient] = {}
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _remove_live() -> None:
    with _LIVE_LOCK:
        items = list(_LIVE.items())
        _LIVE.clear()
    for cid, client in items:
        try:
            client.api.remove_container(cid, force=True)
        except Exception:
            pass


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in a subprocess test
    _remove_live()
    raise SystemExit(128 + signum)


def _install_cleanup_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_remove_live)
    # SIGINT already raises KeyboardInterrupt, which unwinds context managers; SIGTERM's
    # default would kill us without cleanup, so turn it into SystemExit when nobody else
    # has claimed it.
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DockerSandbox:
    """One container running `sleep infinity`; commands run through `docker exec`.

    Use as a context manager; the container is removed on exit, on exceptions, on SIGINT
    and SIGTERM, and at interpreter exit.
    """

    def __init__(
        self,
        image: str,
        *,
        limits: SandboxLimits | None = None,
        workdir: str = "/testbed",
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        client: docker.DockerClient | None = None,
        shell_env: bool = True,
    ):
        """`shell_env`: commands run with the environment an interactive bash of the image sets
        up (`~/.bashrc` activation), captured once per container; False: the image's ENV only."""
        self.image = image
        self.limits = limits or SandboxLimits()
        self.workdir = workdir
        # Never the host's environment: only what is listed here reaches the container.
        self.env = {**_CLEAN_ENV, **(env or {})}
        self.labels = dict(labels or {})
        self.client = client or docker_client()
        self.container = None
        self._base_commit: str | None = None
        self.shell_env = shell_env
        self._shell_env: dict[str, str] | None = None
        self._bytecode: bytes | None = None  # keep_bytecode's archive, put back into a fresh container
        self._bytecode_digest = ""  # its sha256, checked before each reset restores it

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def container_id(self) -> str | None:
        return self.container.id if self.container is not None else None

    def start(self) -> DockerSandbox:
        if self.container is not None:
            return self
        _install_cleanup_handlers()
        lim = self.limits
        try:
            self.container = self.client.containers.run(
                self.image,
                command=["sleep", "infinity"],
                entrypoint=[],  # our own init below; the image's entrypoint is for other harnesses
                name=f"swelego-{uuid.uuid4().hex[:12]}",
                detach=True,
                init=True,
                network_mode="none",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=lim.pids,
                mem_limit=lim.memory,
                memswap_limit=lim.memory,
                nano_cpus=int(lim.cpus * 1e9),
                ulimits=[Ulimit(name="nofile", soft=lim.nofile, hard=lim.nofile)],
                environment=self.env,
                working_dir=self.workdir,
                labels={LABEL: "1", OWNER_LABEL: owner_tag(), **self.labels},
            )
        except docker.errors.ImageNotFound:
            raise SwelegoError(f"image not found: {self.image} (build it with `swelego env build`)") from None
        with _LIVE_LOCK:
            _LIVE[self.container.id] = self.client
        return self

    def close(self) -> None:
        if self.container is None:
            return
        cid = self.container.id
        self.container = None
        self._shell_env = None
        with _LIVE_LOCK:
            _LIVE.pop(cid, None)
        try:
            self.client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass

    def __enter__(self) -> DockerSandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands ----------------------------------------------------------------------
    def exec(
        self,
        cmd: str,
        timeout: float | None = None,
        *,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        user: str = "",
        max_output: int | None = None,
    ) -> ExecResult:
        """Run `cmd` with bash (`bash -c`, in the image's interactive-shell environment unless
        `shell_env` is off or another `user` is named). On timeout every process it started is
        killed (SIGKILL). `max_output` overrides the sandbox's output cap (test logs)."""
        self.start()
        base = self.image_shell_env() if self.shell_env and not user else self.env
        # stderr joins stdout in one pipe, so the output keeps the order it was written in
        # (two streams would be interleaved in arrival order); line numbers in bash's own
        # messages stay those of `cmd`.
        return self._run(["bash", "-c", 'exec bash -c "$1" 2>&1', "bash", cmd], timeout, {**base, **(env or {})},
                         workdir=workdir, user=user, max_output=max_output)

    def image_shell_env(self) -> dict[str, str]:
        """The environment an interactive bash of this container's image exports after its
        startup files; the sandbox's own environment if that shell fails (no bash, a
        ~/.bashrc that exits or hangs). Captured once per container, before any command."""
        self.start()
        if self._shell_env is None:
            self._shell_env = dict(self.env)
            r = self._run(_SHELL_ENV_CMD, 60.0, self.env, workdir=None, user="", max_output=1 << 20, stderr=False)
            out = r.output.split(_ENV_BEGIN + "\n", 1)
            if r.exit_code == 0 and not r.timed_out and len(out) == 2:
                pairs = (item.split("=", 1) for item in out[1].split("\0") if "=" in item)
                self._shell_env = {k: v for k, v in pairs if k not in _SHELL_ENV_SKIP}
        return self._shell_env

    def open_shell(self, workdir: str | None = None):
        """A persistent interactive shell in this sandbox (see swelego.sandbox.session)."""
        from swelego.sandbox.session import ShellSession

        return ShellSession(self, workdir=workdir or self.workdir)

    def _run(self, argv: list[str], timeout: float | None, environment: dict[str, str], *, workdir: str | None,
             user: str, max_output: int | None, stderr: bool = True) -> ExecResult:
        timeout = self.limits.exec_timeout if timeout is None else timeout
        token = uuid.uuid4().hex
        api = self.client.api
        exec_id = api.exec_create(
            self.container.id, argv, environment={**environment, EXEC_MARKER: token},
            workdir=workdir or self.workdir, user=user, stderr=stderr,
        )["Id"]
        buf = _CappedBuffer(self.limits.max_output if max_output is None else max_output)
        t0 = time.monotonic()
        stream = api.exec_start(exec_id, stream=True, demux=False)

        def pump():
            try:
                for chunk in stream:
                    buf.write(chunk)
            except Exception:
                pass

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = t0 + timeout
        timed_out = False
        next_inspect = t0 + 1.0
        exited_at = None
        while reader.is_alive():
            reader.join(0.05)
            now = time.monotonic()
            if not reader.is_alive():
                break
            if now >= deadline:
                timed_out = True
                self._kill_tree(token)
                reader.join(5)
                break
            # A background child can hold the output pipe open after the command itself
            # exited; stop waiting for it shortly after the exit.
            if now >= next_inspect:
                next_inspect = now + 0.5
                if not api.exec_inspect(exec_id)["Running"]:
                    if exited_at is not None:
                        break
                    exited_at = now
        duration = time.monotonic() - t0
        info = api.exec_inspect(exec_id)
        exit_code = info.get("ExitCode")
        if timed_out:
            exit_code = 124 if exit_code in (None, 0) else exit_code
        output, dropped = buf.render()
        return ExecResult(
            exit_code=-1 if exit_code is None else int(exit_code),
            output=output,
            timed_out=timed_out,
            duration=duration,
            truncated_bytes=dropped,
        )

    def _kill_tree(self, token: str) -> None:
        try:
            kid = self.client.api.exec_create(
                self.container.id, ["sh", "-c", _KILL_SCRIPT], environment={"T": token}, user="root"
            )["Id"]
            self.client.api.exec_start(kid)
        except docker.errors.APIError:
            pass

    # -- files -------------------------------------------------------------------------
    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        self.start()
        data = content.encode() if isinstance(content, str) else content
        p = PurePosixPath(path if path.startswith("/") else f"{self.workdir}/{path}")
        self.exec(f"mkdir -p '{p.parent}'", timeout=30, user="root")
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as tf:
            info = tarfile.TarInfo(p.name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tf.addfile(info, io.BytesIO(data))
        if not self.container.put_archive(str(p.parent), tar.getvalue()):
            raise SwelegoError(f"could not write {p} in the sandbox")

    def read_file(self, path: str) -> bytes:
        self.start()
        p = path if path.startswith("/") else f"{self.workdir}/{path}"
        try:
            chunks, _ = self.container.get_archive(p)
        except docker.errors.NotFound:
            raise FileNotFoundError(p) from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            member = tf.next()
            if member is None or not member.isfile():
                raise IsADirectoryError(p)
            return tf.extractfile(member).read()

    # -- reset -------------------------------------------------------------------------
    @property
    def base_commit(self) -> str:
        """The commit /testbed was at when this sandbox first looked; `reset` returns to it."""
        if self._base_commit is None:
            r = self.exec("git rev-parse HEAD", timeout=30)
            if r.exit_code != 0:
                raise SwelegoError(f"{self.workdir} is not a git repository in {self.image}")
            self._base_commit = r.output.strip()
        return self._base_commit

    def reset(self, mode: ResetMode = "git") -> None:
        """`git`: restore the repo in place (~0.08 s; state outside the repo survives).
        `fresh`: replace the container (~0.45 s; everything is reset)."""
        if mode == "fresh":
            base = self._base_commit
            self.close()
            self.start()
            self._base_commit = base
            if self._bytecode:
                self.write_file(BYTECODE, self._bytecode)
                self.exec(f"tar -xf {BYTECODE} --no-same-owner -C {self.workdir}", timeout=120)
            return
        if mode != "git":
            raise ValueError(f"unknown reset mode {mode!r}")
        base = self.base_commit
        # Everything untracked goes, ignored or not (an agent's or a candidate's leftovers,
        # planted .py or .pth files, a tampered .so); then the install's own build products
        # come back byte for byte from the copy the image took after installing (see
        # docker/install-testbed.sh). Excluding them from the clean instead (`-e` patterns)
        # would keep whatever sits at those paths, tampered or not.
        cmd = (f"git reset -q --hard {base} && git clean -qfdx && "
               f"if [ -s {BUILD_PRODUCTS} ]; then tar -xf {BUILD_PRODUCTS} --no-same-owner -C {self.workdir}; fi")
        if self._bytecode:
            # Only the archive keep_bytecode wrote: one that a run replaced fails the hash and is skipped.
            cmd += (f" && if echo '{self._bytecode_digest}  {BYTECODE}' | sha256sum -c --status 2>/dev/null; then "
                    f"tar -xf {BYTECODE} --no-same-owner -C {self.workdir}; fi")
        r = self.exec(cmd, timeout=120)
        if not r.ok:
            raise SwelegoError(f"git reset failed in sandbox: {r.output.strip()[-300:]}")

    def keep_bytecode(self, archive: bytes | None = None) -> bytes:
        """Keep compiled bytecode across `reset("git")`, whose clean removes it, so a run after a
        reset does not compile the project and rewrite its test modules again (0.5-0.9 s a run on
        the benchmark's repositories). Without `archive`: every `__pycache__` of the tree as it is
        now, which must be just after a clean run on a clean tree (nothing else may have written
        bytecode); with it: that archive from another sandbox of the same image. Returns the
        archive (b"": nothing kept). Safe because Python, and pytest for its rewritten test modules,
        use a cached file only while its source has the recorded mtime and size: whatever a reset
        or a patch rewrites gets a new mtime, so only untouched sources reuse their bytecode."""
        if archive is None:
            if self.exec("git status --porcelain --untracked-files=no", timeout=60).output.strip():
                return b""  # a modified tree: its bytecode is not the clean tree's
            # A source written less than 2 s ago could be patched again within the second its
            # bytecode records (same size: stale bytecode); wait until that cannot happen.
            r = self.exec("newest=$(git ls-files -z | xargs -0 stat -c %Y 2>/dev/null | sort -n | tail -1); "
                          "w=$(( ${newest:-0} + 2 - $(date +%s) )); if [ $w -gt 0 ]; then sleep $w; fi; "
                          f"mkdir -p {PurePosixPath(BYTECODE).parent} && "
                          "find . -name .git -prune -o -type d -name __pycache__ -print0 > /tmp/swelego-pyc.lst && "
                          f"test -s /tmp/swelego-pyc.lst && tar --null -T /tmp/swelego-pyc.lst -cf {BYTECODE}",
                          timeout=120, user="root")
            archive = self.read_file(BYTECODE) if r.ok else b""
        elif archive:
            self.write_file(BYTECODE, archive)
        self._bytecode = archive or None
        self._bytecode_digest = hashlib.sha256(archive).hexdigest() if archive else ""
        return archive


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit_image(sandbox: DockerSandbox, name: str, kind: str = "instance") -> str:
    """Commit `sandbox`'s container as image `name` (repo:tag), ready to run like our images.

    A commit copies the container's labels into the image, and every container later made
    from it (the official harness's, say) would inherit them and look like one of our
    sandboxes to `gc_containers`; the image gets them blanked instead."""
    repo, tag = name.rsplit(":", 1)
    sandbox.container.commit(repository=repo, tag=tag, changes=[
        'ENTRYPOINT ["/usr/bin/tini", "-s", "--"]', 'CMD ["sleep", "infinity"]', "WORKDIR /testbed",
        f'LABEL swelego.kind={kind} {LABEL}="" {OWNER_LABEL}=""'])
    return name


def gc_containers(*, everything: bool = False, client: docker.DockerClient | None = None) -> list[str]:
    """Remove sandbox containers whose driver process is gone (or all of them).

    Returns the names removed. A container owned by a live process on this host is kept
    unless `everything` is set. Only containers a DockerSandbox labelled at creation are
    candidates: a container whose labels came from its image (one committed from a sandbox
    before `commit_image` blanked them) belongs to whoever started it, e.g. the harness.
    """
    client = client or docker_client()
    removed = []
    host = socket.gethostname()
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        owner = c.labels.get(OWNER_LABEL, "")
        try:
            inherited = (client.api.inspect_image(c.attrs["Image"])["Config"].get("Labels") or {}).get(OWNER_LABEL)
        except (docker.errors.NotFound, KeyError):
            inherited = None
        if owner and owner == inherited:
            continue
        owner_host, _, pid = owner.rpartition(":")
        alive = owner_host == host and pid.isdigit() and _pid_alive(int(pid))
        if everything or not alive:
            try:
                c.remove(force=True)
                removed.append(c.name)
            except docker.errors.NotFound:
                pass
    return removed
