"""Per-job log buffers and the stdout/stderr router that sends a job thread's prints to its log."""

from __future__ import annotations

import io
import sys
import threading
from typing import Any, TextIO

from chalicelib.store import jobs as job_store

MAX_LINE_CHARS = 16_000
MAX_CHUNK_CHARS = 200_000  # keeps a log chunk well under DynamoDB's 400 KB item limit


class JobLog:
    """Log lines of one job (level, text), flushed as contiguous chunks ``append_log(exec_id, first, lines)``."""

    def __init__(self, exec_id: str, first_line: int = 0) -> None:
        self.exec_id = exec_id
        self._lines: list[tuple[str, str]] = []
        self._base = first_line  # line number of self._lines[0]
        self.flushed = first_line
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def add(self, level: str, text: str) -> None:
        """Append one or more lines (``text`` is split on newlines)."""
        with self._lock:
            for line in text.splitlines() or [""]:
                self._lines.append((level, line[:MAX_LINE_CHARS]))

    def info(self, text: str) -> None:
        """An INFO line."""
        self.add("INFO", text)

    def warn(self, text: str) -> None:
        """A WARN line."""
        self.add("WARN", text)

    def error(self, text: str) -> None:
        """An ERROR line."""
        self.add("ERROR", text)

    @property
    def total(self) -> int:
        """Lines written so far (flushed or not)."""
        with self._lock:
            return self._base + len(self._lines)

    def flush(self, *, update_count: bool = True) -> int:
        """Store pending lines as chunks; answers the number of lines stored in total."""
        with self._flush_lock:
            with self._lock:
                pending = self._lines[self.flushed - self._base :]
            if not pending:
                return self.flushed
            start = 0
            while start < len(pending):
                size, end = 0, start
                while end < len(pending) and (end == start or size + len(pending[end][1]) < MAX_CHUNK_CHARS):
                    size += len(pending[end][1])
                    end += 1
                job_store.append_log(self.exec_id, self.flushed, pending[start:end])
                self.flushed += end - start
                start = end
            if update_count:
                job_store.update_job_fields(self.exec_id, {"log_lines": self.flushed})
            return self.flushed


class _LineWriter(io.TextIOBase):
    """A text stream that turns writes into log lines (partial lines wait for their newline)."""

    def __init__(self, log: JobLog, level: str) -> None:
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

    def __init__(self, log: JobLog) -> None:
        self.out, self.err = _LineWriter(log, "INFO"), _LineWriter(log, "WARN")

    def __enter__(self) -> None:
        install_router()
        _LOCAL.out, _LOCAL.err = self.out, self.err

    def __exit__(self, *exc: object) -> None:
        self.out.flush()
        self.err.flush()
        _LOCAL.out = _LOCAL.err = None
