"""A job's log as the supervisor stores it: contiguous, line-numbered chunks in the table."""

from __future__ import annotations

import threading

from chalicelib.logformat import linkis_line
from chalicelib.store import jobs as job_store
from chalicelib.store import logs as log_store

MAX_LINE_CHARS = 16_000
MAX_CHUNK_CHARS = 200_000  # keeps a log chunk well under DynamoDB's 400 KB item limit


class JobLog:
    """Log lines of one job (level, text), flushed as contiguous chunks ``append_log(exec_id, first, lines)``."""

    def __init__(self, exec_id: str, first_line: int = 0, max_chars: int | None = None) -> None:
        self.exec_id = exec_id
        self.max_chars = max_chars  # beyond it, lines are dropped (one WARN line says so)
        self._chars = 0
        self.dropped = 0
        self._lines: list[tuple[str, str]] = []
        self._base = first_line  # line number of self._lines[0]
        self.flushed = first_line
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def add(self, level: str, text: str) -> None:
        """Append one or more lines (``text`` is split on newlines), each stored as Linkis writes it:
        ``yyyy-MM-dd HH:mm:ss.SSS LEVEL text``."""
        with self._lock:
            for line in text.splitlines() or [""]:
                line = line[:MAX_LINE_CHARS]
                if self.max_chars is not None and self._chars + len(line) > self.max_chars:
                    if not self.dropped:
                        note = f"log truncated: this job wrote more than {self.max_chars} characters"
                        self._lines.append(("WARN", linkis_line("WARN", note + " (SPARKGATE_MAX_LOG_CHARS)")))
                    self.dropped += 1
                    continue
                self._chars += len(line)
                self._lines.append((level, linkis_line(level, line)))

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
                log_store.append_log(self.exec_id, self.flushed, pending[start:end])
                self.flushed += end - start
                start = end
            if update_count:
                job_store.update_job_fields(self.exec_id, {"log_lines": self.flushed})
            return self.flushed
