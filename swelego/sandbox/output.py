"""What a sandbox command leaves behind: its output, capped head + tail, and the marker every
process it starts inherits. Shared by one-shot commands (docker.py) and the persistent shell
(session.py)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# Every process a command starts inherits this variable, daemons included, so a timed-out
# command's whole tree can be found in /proc and killed even if it left its process group.
EXEC_MARKER = "SWELEGO_EXEC"


@dataclass
class _CappedBuffer:
    limit: int
    head: bytearray = field(default_factory=bytearray)
    tail: deque = field(default_factory=deque)
    tail_len: int = 0
    total: int = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        half = self.limit // 2
        if len(self.head) < half:
            take = half - len(self.head)
            self.head += chunk[:take]
            chunk = chunk[take:]
        if chunk:
            self.tail.append(chunk)
            self.tail_len += len(chunk)
            while self.tail_len - len(self.tail[0]) >= half:
                self.tail_len -= len(self.tail.popleft())

    def render(self) -> tuple[str, int]:
        tail = b"".join(self.tail)
        half = self.limit // 2
        if len(tail) > half:
            tail = tail[-half:]
        dropped = self.total - len(self.head) - len(tail)
        if dropped <= 0:
            return (bytes(self.head) + tail).decode("utf-8", errors="replace"), 0
        mid = f"\n[... {dropped} bytes of output truncated ...]\n".encode()
        return (bytes(self.head) + mid + tail).decode("utf-8", errors="replace"), dropped
