"""HTTP/1.1 keep-alive for the embedded AWS's server (werkzeug's closes every connection).

werkzeug's development server answers every request with ``Connection: close`` (it cannot drain
a request body it did not read without reading into the next request), so each boto3 call of an
engine supervisor or driver paid a TCP handshake, a new server thread and, after the answer, a
10 ms ``select`` while werkzeug drained the socket. :class:`KeepAliveHandler` keeps the connection:
the request body is bounded by its ``Content-Length`` (or its chunked framing), whatever the
application left unread is read off before the next request, and the answer carries its length.
A connection idle for :data:`IDLE_SECONDS` is closed (botocore opens a new one when it needs it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.wsgi import LimitedStream

from chalicelib.local.inprocess import call_wsgi

#: an idle keep-alive connection is closed after this long
IDLE_SECONDS = 120.0
#: a chunked request body left unread beyond this is not drained: the connection closes instead
MAX_DRAIN_BYTES = 64 * 1024 * 1024
#: response headers the handler writes itself
_FRAMING = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


class KeepAliveHandler(MotoRequestHandler):  # type: ignore[misc]
    """moto's request handler (its environ, its header names) on persistent HTTP/1.1 connections."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in one write anyway; no delayed-ACK wait
    timeout = IDLE_SECONDS

    def setup(self) -> None:
        super().setup()
        track: Callable[[socket.socket, bool], None] | None = getattr(self.server, "track_connection", None)
        if track is not None:
            track(self.connection, True)

    def finish(self) -> None:
        track: Callable[[socket.socket, bool], None] | None = getattr(self.server, "track_connection", None)
        if track is not None:
            track(self.connection, False)
        super().finish()

    def run_wsgi(self) -> None:
        """Answer one request; leave the connection ready for the next (or mark it to close)."""
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        environ = self.environ = self.make_environ()
        body_stream: Any = environ["wsgi.input"]
        if not environ.get("wsgi.input_terminated"):
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                length, self.close_connection = 0, True
            body_stream = environ["wsgi.input"] = LimitedStream(self.rfile, length)
        status, headers, body = call_wsgi(self.server.app, environ)
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
            self.close_connection = True  # e.g. a refusal, which may not have read the body: no drain
        else:
            self._drain(body_stream)
        self.send_response(status)
        declared = next((v for k, v in headers if k.lower() == "content-length"), None)
        for name, value in headers:
            if name.lower() not in _FRAMING:
                self.send_header(name, value)
        no_body = 100 <= status < 200 or status in (204, 304)
        if not no_body:
            # a HEAD answer declares the length a GET would have
            self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        if body and not no_body and self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()  # status line, headers and body in one write

    def _drain(self, stream: Any) -> None:
        """Read what the application left of the request body, so the next request starts clean."""
        try:
            if isinstance(stream, LimitedStream):
                stream.exhaust()  # at most the Content-Length the client declared
                return
            drained = 0
            while chunk := stream.read(1024 * 1024):  # chunked: up to the final chunk
                drained += len(chunk)
                if drained > MAX_DRAIN_BYTES:
                    self.close_connection = True
                    return
        except Exception:  # a client that went away mid-body (werkzeug's ClientDisconnected) or a bad chunk
            self.close_connection = True

    def log_error(self, format: str, *args: Any) -> None:
        """Quiet about idle keep-alive connections timing out (that is how they end)."""
        if not format.startswith("Request timed out"):
            super().log_error(format, *args)


class ConnectionTracker:
    """The open connections of a server, so that stopping it closes them too (mixin for the server)."""

    #: connections accepted so far
    accepted = 0

    def track_connection(self, conn: socket.socket, opened: bool) -> None:
        """Note ``conn`` opened (True) or finished (False)."""
        lock = self.__dict__.setdefault("_conns_lock", threading.Lock())
        with lock:
            conns: set[socket.socket] = self.__dict__.setdefault("_conns", set())
            if opened:
                conns.add(conn)
                self.accepted += 1
            else:
                conns.discard(conn)

    def close_connections(self) -> None:
        """Shut down every connection still open (their threads then end)."""
        lock = self.__dict__.setdefault("_conns_lock", threading.Lock())
        with lock:
            conns = list(self.__dict__.get("_conns", ()))
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
