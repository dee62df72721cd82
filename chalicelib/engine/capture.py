"""The stdout/stderr router that sends a job thread's prints to its log (used inside the kernel)."""

from __future__ import annotations

import io
import sys
import threading
from typing import Any, Protocol, TextIO


class LineSink(Protocol):
    """Anything that takes log lines."""

    def add(self, level: str, text: str) -> None:
        """Append one or more lines (split on newlines)."""


class _LineWriter(io.TextIOBase):
    """A text stream that turns writes into log lines (partial lines wait for their newline)."""

    def __init__(self, log: LineSink, level: str) -> None:
        self.log, self.level, self._partial = log, level, ""

    def write(self, s: str) -> int:
        text = self._partial + s
        *complete, self._partial = text.split("\n")
        for line in complete:
            self.log.add(self.level, line)
        return len(s)

    def flush(self) -> None:
        if self._partial:
            self.log.add(self.level, self._partial)
            self._partial = ""


class _Router(io.TextIOBase):
    """Installed as sys.stdout/sys.stderr: a job thread's writes go to its log, others to the real stream."""

    def __init__(self, real: TextIO, local: threading.local, attr: str) -> None:
        self.real, self.local, self.attr = real, local, attr

    def _target(self) -> Any:
        return getattr(self.local, self.attr, None) or self.real

    def write(self, s: str) -> int:
        return int(self._target().write(s))

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8") or "utf-8"


_LOCAL = threading.local()
_INSTALL_LOCK = threading.Lock()


def install_router() -> None:
    """Route sys.stdout/sys.stderr through the per-thread capture (idempotent)."""
    with _INSTALL_LOCK:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, _LOCAL, "out")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, _LOCAL, "err")


class capture_into:
    """``with capture_into(log):`` the current thread's print goes to ``log`` (stdout INFO, stderr WARN)."""

    def __init__(self, log: LineSink) -> None:
        self.out, self.err = _LineWriter(log, "INFO"), _LineWriter(log, "WARN")

    def __enter__(self) -> None:
        install_router()
        _LOCAL.out, _LOCAL.err = self.out, self.err

    def __exit__(self, *exc: object) -> None:
        self.out.flush()
        self.err.flush()
        _LOCAL.out = _LOCAL.err = None
