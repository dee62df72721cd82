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


class TextOutput:
    """A job's printed (stdout) lines, kept for its TEXT result set: at most ``limit`` lines of at most
    ``max_chars`` characters; ``total`` counts every line."""

    def __init__(self, limit: int, max_chars: int) -> None:
        self.limit, self.max_chars = limit, max_chars
        self.lines: list[str] = []
        self.total = 0

    def add(self, level: str, text: str) -> None:
        """Keep one line (the writer splits on newlines; ``level`` is ignored)."""
        self.total += 1
        if len(self.lines) < self.limit:
            self.lines.append(text[: self.max_chars])


class _Tee:
    """A line sink that hands every line to two sinks (the log, and the printed output)."""

    def __init__(self, first: LineSink, second: LineSink) -> None:
        self.first, self.second = first, second

    def add(self, level: str, text: str) -> None:
        self.first.add(level, text)
        self.second.add(level, text)


class _LineWriter(io.TextIOBase):
    """A text stream that turns writes into log lines (partial lines wait for their newline)."""

    def __init__(self, log: LineSink, level: str) -> None:
        self.log, self.level, self._partial = log, level, ""
        self.written = False

    def write(self, s: str) -> int:
        self.written = self.written or bool(s)
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
    """``with capture_into(log):`` the current thread's print goes to ``log`` (stdout INFO, stderr WARN);
    with ``output``, stdout lines go there too (a Python job's TEXT result set)."""

    def __init__(self, log: LineSink, output: LineSink | None = None) -> None:
        self.out = _LineWriter(log if output is None else _Tee(log, output), "INFO")
        self.err = _LineWriter(log, "WARN")

    def printed(self) -> bool:
        """Whether anything was written to stdout so far (a partial line too)."""
        return self.out.written

    def __enter__(self) -> None:
        install_router()
        _LOCAL.out, _LOCAL.err = self.out, self.err

    def __exit__(self, *exc: object) -> None:
        self.out.flush()
        self.err.flush()
        _LOCAL.out = _LOCAL.err = None
