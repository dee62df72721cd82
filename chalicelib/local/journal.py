"""The embedded AWS's write-ahead log: an acknowledged DynamoDB or S3 write survives ``kill -9``.

Every request that changes the table or the bucket is, once moto has applied it and before its
answer leaves, appended to ``<state>/aws/wal/<generation>.log`` and ``fdatasync``'ed (the answer
waits for the sync; several writers share one). Records are appended in the order moto applied
them: DynamoDB writes under the one DynamoDB lock (:mod:`chalicelib.local.aws`), S3 writes under
an S3 lock. Only requests moto answered 2xx are logged.

At start the stack restores the last snapshot (:mod:`chalicelib.store.snapshot`) and replays, in
order, every log from the generation the snapshot names on, through moto's own request handling.
A snapshot rotates to a new generation under both locks (the table dump is taken at that very
cut), then deletes the older logs once the snapshot is on disk.

A record: 4-byte big-endian length, 4-byte CRC-32, then ``<header JSON>\\n<body>``. A torn record
at the end of a log (a crash mid-append, so never acknowledged) ends the replay of that log.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: DynamoDB actions that change items (everything else is a read or provisioning)
DYNAMODB_WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
_FRAME = struct.Struct(">II")
#: request headers a replay needs (routing, the action, S3 object metadata)
_KEPT_PREFIXES = ("x-amz-", "content-", "cache-control", "expires")
_KEPT = frozenset({"host", "authorization"})


class Journal:
    """Append-only, generation-numbered logs under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # guards the file descriptor and counters
        self._fd: int | None = None
        self.generation = 0
        self.appended = 0  # bytes written to the current generation
        self.records = 0
        self._written = 0  # sequence number of the last record written
        self._synced = 0  # ... and of the last one known durable
        self._sync_lock = threading.Lock()

    # --- files ---

    def path(self, generation: int) -> Path:
        return self.directory / f"{generation:012d}.log"

    def generations(self) -> list[int]:
        """Generations present on disk, oldest first."""
        if not self.directory.exists():
            return []
        return sorted(int(p.stem) for p in self.directory.glob("*.log") if p.stem.isdigit())

    def open(self, generation: int) -> None:
        """Start appending to ``generation`` (created 0600; the directory 0700)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path(generation), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with self._lock:
            old, self._fd = self._fd, fd
            self.generation = generation
            self.appended = os.fstat(fd).st_size
        if old is not None:
            os.fdatasync(old)
            os.close(old)
        _sync_dir(self.directory)

    def rotate(self) -> int:
        """Continue in a new generation; answers it. Call it where no write is in flight (under the locks)."""
        self.open(self.generation + 1)
        return self.generation

    def drop_before(self, generation: int) -> None:
        """Delete the logs of generations older than ``generation`` (a snapshot holds them)."""
        for old in self.generations():
            if old < generation:
                self.path(old).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.fdatasync(fd)
            os.close(fd)

    # --- writing ---

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def append(self, header: dict[str, Any], body: bytes) -> int:
        """Write one record (call it in apply order, under the lock that ordered the write); answers its number."""
        payload = json.dumps(header, separators=(",", ":")).encode() + b"\n" + body
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._fd is None:
                return 0
            os.write(self._fd, frame)
            self.appended += len(frame)
            self.records += 1
            self._written += 1
            return self._written

    def sync(self, number: int) -> None:
        """Return once record ``number`` is on disk; one ``fdatasync`` covers every writer waiting."""
        if number <= self._synced:
            return
        with self._sync_lock:
            if number <= self._synced:
                return
            with self._lock:
                fd, target = self._fd, self._written
            if fd is not None:
                os.fdatasync(fd)
            self._synced = max(self._synced, target)

    # --- reading ---

    def read(self, generation: int) -> Iterator[tuple[dict[str, Any], bytes]]:
        """The records of ``generation`` in order, stopping at a torn or corrupt tail."""
        try:
            data = self.path(generation).read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, offset)
            start, end = offset + _FRAME.size, offset + _FRAME.size + length
            payload = data[start:end]
            if end > len(data) or zlib.crc32(payload) != crc:
                return
            head, _, body = payload.partition(b"\n")
            yield json.loads(head), body
            offset = end


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_MD5"):
            name = key.replace("_", "-").lower()
        else:
            continue
        if name in _KEPT or name.startswith(_KEPT_PREFIXES):
            out[name] = value
    out.pop("content-length", None)
    return out


def _service(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        return str(auth.split(",")[0].split()[1].split("/")[3]).lower()
    except (IndexError, ValueError):
        return ""


class Journaled:
    """WSGI middleware in front of moto: logs each applied DynamoDB/S3 write before answering it."""

    def __init__(
        self, app: WsgiApp, journal: Journal, dynamodb_lock: threading.RLock, s3_lock: threading.RLock
    ) -> None:
        self.app, self.journal = app, journal
        self.dynamodb_lock, self.s3_lock = dynamodb_lock, s3_lock

    def _lock_for(self, environ: dict[str, Any]) -> threading.RLock | None:
        method = environ.get("REQUEST_METHOD", "GET")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_"):
            return self.dynamodb_lock if target.split(".", 1)[-1] in DYNAMODB_WRITES else None
        if method in ("PUT", "POST", "DELETE") and _service(environ) == "s3":
            return self.s3_lock
        return None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        lock = self._lock_for(environ) if self.journal.enabled else None
        if lock is None:
            return self.app(environ, start_response)
        body = read_wsgi_body(environ)
        answer: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer[:] = [status, headers]
            return lambda chunk: None

        number = 0
        with lock:
            result = self.app(environ, capture)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if answer and answer[0][:1] == "2":
                header = {
                    "m": environ.get("REQUEST_METHOD", "GET"),
                    "p": environ.get("PATH_INFO", "/"),
                    "q": environ.get("QUERY_STRING", ""),
                    "h": _headers(environ),
                }
                number = self.journal.append(header, body)
        if number:
            self.journal.sync(number)
        start_response(*answer)
        return chunks


def read_wsgi_body(environ: dict[str, Any]) -> bytes:
    """The whole request body; ``wsgi.input`` is replaced so the app reads the same bytes again."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return bytes(body)


def replay(app: WsgiApp, records: Iterable[tuple[dict[str, Any], bytes]]) -> tuple[int, int]:
    """Apply ``records`` to moto's WSGI ``app`` in order; answers (applied, refused).

    A refused record is normal after a crash between a snapshot and the deletion of the logs it
    covers (a conditional write that already happened fails its condition again).
    """
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    applied = refused = 0
    for header, body in records:
        headers = header.get("h", {})
        builder = EnvironBuilder(
            method=header["m"],
            path=header["p"],
            query_string=header.get("q", ""),
            headers={k: v for k, v in headers.items() if k != "content-type"},
            content_type=headers.get("content-type"),
            data=body,
        )
        environ = builder.get_environ()
        _, status, _ = run_wsgi_app(app, environ, buffered=True)
        if status[:1] == "2":
            applied += 1
        else:
            refused += 1
    return applied, refused
