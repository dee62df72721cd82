"""The supervisor <-> kernel wire: framed JSON messages (with an optional binary blob) over a socket.

A frame is ``!II`` (JSON length, blob length), the UTF-8 JSON object, then the blob. Both sides
bound what they accept (:data:`MAX_JSON_BYTES`, :data:`MAX_BLOB_BYTES`): the supervisor reads
frames written by untrusted code, so a frame that is too big, not JSON, or not an object closes
the channel instead of growing the supervisor's memory. No pyspark and no boto3 here.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from typing import Any

HEADER = struct.Struct("!II")
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_BLOB_BYTES = 64 * 1024 * 1024


class ChannelClosed(Exception):
    """The other side went away, or sent something that is not a frame."""


class Channel:
    """One end of the wire; ``send`` may be called from several threads, ``recv`` from one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any], blob: bytes = b"") -> None:
        """Send one message (and ``blob``); :class:`ChannelClosed` when the peer is gone."""
        body = json.dumps(message, separators=(",", ":"), default=str).encode()
        if len(body) > MAX_JSON_BYTES or len(blob) > MAX_BLOB_BYTES:
            raise ValueError(f"message too large ({len(body)} + {len(blob)} bytes)")
        with self._send_lock:
            try:
                self.sock.sendall(HEADER.pack(len(body), len(blob)) + body + blob)
            except OSError as err:
                raise ChannelClosed(str(err)) from err

    def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            try:
                chunk = self.sock.recv(min(n, 1 << 20))
            except OSError as err:
                raise ChannelClosed(str(err)) from err
            if not chunk:
                raise ChannelClosed("end of stream")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv(self) -> tuple[dict[str, Any], bytes]:
        """The next message and its blob (blocking); :class:`ChannelClosed` at the end or on garbage."""
        size, blob_size = HEADER.unpack(self._read(HEADER.size))
        if size > MAX_JSON_BYTES or blob_size > MAX_BLOB_BYTES:
            raise ChannelClosed(f"frame too large ({size} + {blob_size} bytes)")
        try:
            message = json.loads(self._read(size))
        except ValueError as err:
            raise ChannelClosed(f"not JSON: {err}") from err
        if not isinstance(message, dict) or not isinstance(message.get("t"), str):
            raise ChannelClosed("not a message object")
        return message, self._read(blob_size) if blob_size else b""

    def close(self) -> None:
        """Close the socket (the peer's ``recv`` then ends)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
