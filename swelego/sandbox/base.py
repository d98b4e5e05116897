"""The Sandbox protocol: the only surface the harness and the agent see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

ResetMode = Literal["git", "fresh"]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str  # stdout and stderr interleaved, decoded with replacement, capped head + tail
    timed_out: bool
    duration: float
    truncated_bytes: int = 0  # bytes dropped from the middle of the output by the cap

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@runtime_checkable
class Sandbox(Protocol):
    def exec(self, cmd: str, timeout: float | None = None, *, workdir: str | None = None,
             max_output: int | None = None) -> ExecResult: ...

    def write_file(self, path: str, content: str | bytes) -> None: ...

    def read_file(self, path: str) -> bytes: ...

    def reset(self, mode: ResetMode = "git") -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sandbox: ...

    def __exit__(self, *exc) -> None: ...
