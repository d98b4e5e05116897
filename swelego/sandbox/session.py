"""ShellSession: one long-lived interactive bash in a sandbox, as an agent's terminal.

The shell is `bash -i` on a pseudo-terminal (a `docker exec` with stdin and a tty), so it
reads /etc/bash.bashrc and ~/.bashrc the way a terminal in the image would (the official
SWE-bench images activate their conda `testbed` env only there), and cwd, exported variables
and activated environments persist from one command to the next. Not a login shell: on
Debian and Ubuntu /etc/profile resets PATH, and an interactive login shell skips ~/.bashrc.

Protocol on the pty (echo and output CR translation off, no readline, no history):
- a command goes in as one `eval -- $'...'` line (backslash-newline continued every 512 bytes,
  under the tty's 4095-byte line limit), so a multi-line command prints one prompt;
- the prompt is a PROMPT_COMMAND function that prints `\\n<<swelego:TOKEN:RC>>\\n` and
  clears PS1/PS2 (activating a venv must not put text in the stream); the sentinel ends a
  command's output and carries its exit code;
- input to a running command (`send`) is written raw; `C-c`, `C-d`, `C-z`… become the
  control bytes, so the tty delivers SIGINT/EOF/SIGTSTP to the foreground job.
A command past its hard timeout gets C-c, then SIGKILL to the tty's foreground process
group, then the shell is replaced; the result says which. Output is read continuously by a
thread (a daemon writing while the shell is idle cannot block) and capped head + tail.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass

from swelego.errors import SwelegoError
from swelego.sandbox.output import EXEC_MARKER, _CappedBuffer

_CHUNK = 512  # raw command bytes per pty line; escaped, at most 4 * 512 + 3 < 4095
_KEY = re.compile(r"^C-([a-zA-Z@\[\\\]^_])$")
_HOLD = 96  # bytes kept back from the buffer while they may begin a sentinel


@dataclass(frozen=True)
class ShellResult:
    """What one wait on the shell produced."""

    output: str  # new output since the last result, capped head + tail
    exit_code: int | None  # None while the command is still running (or when it never finished)
    running: bool = False  # returned because no new output came for `idle_timeout` seconds
    timed_out: bool = False  # the hard timeout passed and the command was interrupted
    restarted: str = ""  # why the shell was replaced by a new one ("" when it was not)
    duration: float = 0.0
    truncated_bytes: int = 0


def _ansi_c(data: bytes) -> bytes:
    """`data` as the body of a bash $'...' string: printable ASCII kept, the rest \\xHH."""
    out = bytearray()
    for b in data:
        if 0x20 <= b < 0x7F and b not in (0x27, 0x5C):
            out.append(b)
        else:
            out += b"\\x%02x" % b
    return bytes(out)


def eval_line(command: str) -> bytes:
    """The bytes that make the shell run `command` as if typed, as one logical line."""
    raw = command.encode("utf-8", errors="surrogateescape")
    parts = [b"$'" + _ansi_c(raw[i : i + _CHUNK]) + b"'" for i in range(0, len(raw), _CHUNK)] or [b"''"]
    return b"eval -- " + b"\\\n".join(parts) + b"\n"


def key_bytes(text: str) -> bytes | None:
    """`C-c` → b'\\x03' and the like; None when `text` names no control key."""
    m = _KEY.match(text.strip())
    return bytes([ord(m.group(1).upper()) & 0x1F]) if m else None


class ShellSession:
    """An interactive bash inside `sandbox` (a started DockerSandbox), kept for an episode."""

    def __init__(self, sandbox, *, workdir: str = "/testbed", max_output: int | None = None,
                 start_timeout: float = 60.0, columns: int = 120):
        self.sandbox = sandbox
        self.workdir = workdir
        self.max_output = max_output or sandbox.limits.max_output
        self.start_timeout = start_timeout
        self.columns = columns
        self.container_id: str | None = None
        self.pid: int | None = None  # the shell's pid in the container
        self.running = False  # a command was sent and its sentinel has not come back
        self._token = ""
        self._sock = None
        self._reader: threading.Thread | None = None
        self._cv = threading.Condition()
        self._buf = _CappedBuffer(self.max_output)
        self._hold = b""
        self._rc: int | None = None  # exit code from the last sentinel, until consumed
        self._done: _CappedBuffer | None = None  # the output that sentinel ended
        self._eof = False
        self._last_output = 0.0
        self._sentinel: re.Pattern | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return (self._sock is not None and not self._eof
                and self.container_id is not None and self.container_id == self.sandbox.container_id)

    def start(self) -> ShellSession:
        """Start the shell and wait for its first prompt; the startup output is dropped."""
        if self.alive:
            return self
        self.close()
        sb = self.sandbox.start()
        api = sb.client.api
        self._token = uuid.uuid4().hex
        self._sentinel = re.compile(rb"\r?\n<<swelego:" + self._token.encode() + rb":(\d+)>>\r?\n")
        self._buf, self._hold, self._done = _CappedBuffer(self.max_output), b"", None
        self._rc, self._eof, self.running = None, False, False
        self.container_id = sb.container_id
        exec_id = api.exec_create(sb.container_id, ["bash", "--noediting", "-i"], stdin=True, tty=True,
                                  environment={**sb.env, EXEC_MARKER: self._token}, workdir=self.workdir)["Id"]
        sock = api.exec_start(exec_id, socket=True, tty=True)
        self._sock = getattr(sock, "_sock", sock)
        try:
            api.exec_resize(exec_id, height=40, width=self.columns)
        except Exception:  # noqa: BLE001 - an engine that cannot resize leaves the default size
            pass
        self._last_output = time.monotonic()
        self._reader = threading.Thread(target=self._pump, daemon=True, name="swelego-shell")
        self._reader.start()
        # The sentinel is printed by pieces, so the echo of this very line cannot match it.
        init = (
            "stty -echo -onlcr 2>/dev/null; set +H +o history; unset HISTFILE; "
            "__swelego_prompt() { local rc=$?; stty -echo -onlcr 2>/dev/null; PS1=''; PS2=''; "
            f"printf '\\n<<%s:%s:%s>>\\n' swelego {self._token} \"$rc\"; }}; "
            "PROMPT_COMMAND=__swelego_prompt; printf 'SWELEGO_PID=%s\\n' $$\n"
        )
        self._write(init.encode())
        r = self.wait(timeout=self.start_timeout, idle_timeout=None, _starting=True)
        m = re.search(r"SWELEGO_PID=(\d+)", r.output)
        if r.exit_code is None or m is None:
            tail = r.output.strip()[-300:]
            self.close()
            raise SwelegoError(f"the interactive shell of {sb.image} did not start "
                               f"(~/.bashrc may exit or hang): {tail or 'no output'}")
        self.pid = int(m.group(1))
        return self

    def close(self) -> None:
        """End the shell and everything started from it (background jobs included)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self.container_id is not None and self.container_id == self.sandbox.container_id:
            self.sandbox._kill_tree(self._token)
        try:
            sock.close()
        except OSError:
            pass
        if self._reader is not None:
            self._reader.join(2)
        self.running, self.pid, self.container_id = False, None, None

    # -- I/O ---------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError:
            with self._cv:
                self._eof = True
                self._cv.notify_all()

    def _pump(self) -> None:
        sock = self._sock
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            with self._cv:
                if not chunk:
                    self._eof = True
                    self._cv.notify_all()
                    return
                self._last_output = time.monotonic()
                self._feed(chunk)
                self._cv.notify_all()

    def _feed(self, chunk: bytes) -> None:
        data = self._hold + chunk
        while (m := self._sentinel.search(data)) is not None:
            self._buf.write(data[: m.start()])
            if self._done is not None:  # a second prompt before the first was read: one window
                self._done.write(bytes(self._buf.head) + b"".join(self._buf.tail))
            else:
                self._done = self._buf
            self._rc = int(m.group(1))
            self._buf = _CappedBuffer(self.max_output)  # what follows opens the next window
            data = data[m.end():]
        keep = self._partial(data)
        self._buf.write(data[:keep])
        self._hold = data[keep:]

    def _partial(self, data: bytes) -> int:
        """Where the tail of `data` may begin a sentinel still arriving (len(data) if nowhere)."""
        head = b"\n<<swelego:" + self._token.encode() + b":"
        i = data.find(b"\n", max(0, len(data) - _HOLD))
        while i != -1:
            s = data[i:]
            if head.startswith(s) or (s.startswith(head) and re.fullmatch(rb"\d*(>(>\r?)?)?", s[len(head):])):
                return i - 1 if data[i - 1 : i] == b"\r" else i
            i = data.find(b"\n", i + 1)
        return len(data) - 1 if data.endswith(b"\r") else len(data)

    def _take(self, finished: bool) -> tuple[str, int]:
        """The output of the window that just ended (finished) or of the one still open."""
        if finished:
            buf, self._done = self._done, None
        else:
            buf, self._buf = self._buf, _CappedBuffer(self.max_output)
            buf.write(self._hold)  # nothing more is coming now: a would-be prefix is output too
            self._hold = b""
        return buf.render()

    # -- commands ------------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float, idle_timeout: float | None = None) -> ShellResult:
        """Run `command` in the shell. Returns when it finishes, when `idle_timeout` seconds
        pass with no new output (`running` set; talk to it with `send`), or after `timeout`
        seconds, interrupted (`timed_out`)."""
        if self.running:
            raise SwelegoError("a command is still running in the shell; send input or interrupt it first")
        self.start()
        with self._cv:  # a prompt nobody waited for (text typed ahead ran as a command) is stale
            self._rc, self._done = None, None
        self._write(eval_line(command))
        self.running = True
        return self.wait(timeout=timeout, idle_timeout=idle_timeout)

    def poll(self) -> ShellResult | None:
        """The result of the running command if it has finished since the last wait, else None."""
        with self._cv:
            if self.running and self._rc is not None:
                return self._finish(time.monotonic())
        return None

    def send(self, text: str, *, timeout: float, idle_timeout: float | None = None) -> ShellResult:
        """Send `text` (a line, or a key such as `C-c`; "" sends nothing) to the running
        command and wait for it as `run` does."""
        if not self.running:
            raise SwelegoError("no command is running in the shell")
        if text:
            key = key_bytes(text)
            self._write(key if key is not None else text.encode("utf-8", errors="surrogateescape") + b"\n")
        return self.wait(timeout=timeout, idle_timeout=idle_timeout)

    def wait(self, *, timeout: float, idle_timeout: float | None, _starting: bool = False) -> ShellResult:
        t0 = time.monotonic()
        deadline = t0 + timeout
        with self._cv:
            self._last_output = max(self._last_output, t0)
            while True:
                if self._rc is not None:
                    return self._finish(t0)
                if self._eof:
                    break
                now = time.monotonic()
                if now >= deadline:
                    break
                if idle_timeout is not None and now - self._last_output >= idle_timeout:
                    out, dropped = self._take(finished=False)
                    return ShellResult(out, None, running=True, duration=now - t0, truncated_bytes=dropped)
                wake = deadline if idle_timeout is None else min(deadline, self._last_output + idle_timeout)
                self._cv.wait(max(0.001, min(wake - now, 1.0)))
        if _starting:
            with self._cv:
                out, dropped = self._take(finished=False)
            return ShellResult(out, None, duration=time.monotonic() - t0)
        if self._eof:
            return self._restart(t0, "the shell exited", timed_out=False)
        return self._interrupt(t0, timeout)

    def _finish(self, t0: float, **kw) -> ShellResult:
        rc = self._rc
        self._rc = None
        self.running = False
        out, dropped = self._take(finished=True)
        return ShellResult(out, rc, duration=time.monotonic() - t0, truncated_bytes=dropped, **kw)

    def _interrupt(self, t0: float, timeout: float) -> ShellResult:
        """The hard timeout passed: C-c, then SIGKILL to the foreground job, then a new shell."""
        self._write(b"\x03")
        if self._settle(2.0):
            return self._finish(t0, timed_out=True)
        p = self.pid
        self.sandbox.exec(
            f"set -- $(sed 's/^.*) //' /proc/{p}/stat 2>/dev/null); pg=$3; tp=$6; "
            '[ -n "$tp" ] && [ "$tp" -gt 0 ] && [ "$tp" != "$pg" ] && kill -9 -- "-$tp"; true',
            timeout=30)
        if self._settle(3.0):
            return self._finish(t0, timed_out=True)
        return self._restart(t0, f"the command did not stop after {timeout:g} seconds", timed_out=True)

    def _settle(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        with self._cv:
            while self._rc is None and not self._eof:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return self._rc is not None

    def _restart(self, t0: float, why: str, *, timed_out: bool) -> ShellResult:
        with self._cv:
            out, dropped = self._take(finished=False)
        self.close()
        self.start()
        return ShellResult(out, None, timed_out=timed_out, restarted=why, duration=time.monotonic() - t0,
                           truncated_bytes=dropped)

    def __enter__(self) -> ShellSession:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
