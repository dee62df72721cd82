"""The stack's own boto3 clients reach the embedded AWS without a socket: same requests, same checks.

Every boto3 client of the local stack's process (the HTTP handlers, the stream pump, the
snapshots) used to send its requests over loopback HTTP to the moto server that runs in the very
same process: a TCP connection, a server thread, werkzeug's request parsing and response writing
per call, on two cores shared with Spark. :class:`InProcessSession` is a botocore HTTP session (the
object a client's endpoint sends its prepared requests through, ``URLLib3Session`` by default)
that hands each request, byte for byte as it would have been sent, to the embedded AWS's WSGI
application instead: the same :class:`~chalicelib.local.aws.SignedOnly` SigV4 check, the same
write-ahead log (:class:`~chalicelib.local.journal.Journaled`, ``fdatasync`` before the answer) and
the same moto backend, request parsing and response serialization as over HTTP. Only the socket
and the HTTP framing go.

Processes the stack starts (engine supervisors, drivers, users' kernels) do not have the
application and keep talking SigV4 over HTTP (:mod:`chalicelib.local.keepalive`).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.request import (
    PRESERVED_HEADER_NAMES_ENVIRON_KEY,
    environ_key_for_header,
    should_preserve_original_header_name,
)
from werkzeug.exceptions import ClientDisconnected

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

LOG = logging.getLogger(__name__)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_INCOMPLETE = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>IncompleteBody</Code></Error>'
_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>"
)


def _latin1(text: str) -> str:
    """A str as WSGI carries it: the UTF-8 bytes, one character each (PEP 3333's "bytes as latin-1")."""
    return text.encode().decode("latin1")


def _text(value: str | bytes) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else value


def request_body(body: Any) -> bytes:
    """The bytes a prepared request's ``body`` (None, bytes, str, a file or an iterable of chunks) sends."""
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    if hasattr(body, "read"):
        data = body.read()
        return data.encode() if isinstance(data, str) else bytes(data)
    return b"".join(chunk.encode() if isinstance(chunk, str) else bytes(chunk) for chunk in body)


def wsgi_environ(
    method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, server: tuple[str, int]
) -> dict[str, Any]:
    """The WSGI environ werkzeug's server (with moto's request handler) builds for this request.

    ``headers`` are the request's headers as sent (a ``Host`` from ``url`` is added when they have
    none, as ``http.client`` adds it); ``server`` is the embedded AWS's (host, port).
    """
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": "sparkgate-inprocess",
        "REQUEST_METHOD": method.upper(),
        "SCRIPT_NAME": "",
        "PATH_INFO": _latin1(unquote(parts.path or "/")),
        "QUERY_STRING": _latin1(parts.query),
        "REQUEST_URI": _latin1(target),
        "RAW_URI": _latin1(target),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": 0,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    names: dict[str, str] = {}
    underscored: list[tuple[str, str]] = []
    has_host = False
    for name, value in headers:
        value = value.replace("\r\n", "")
        lower = name.lower()
        if lower == "host":
            has_host = True
        if lower in ("content-length", "transfer-encoding"):
            continue  # the body is whole: its length is below
        if "_" in name:
            if should_preserve_original_header_name(name):
                underscored.append((name, value))
            continue
        key = environ_key_for_header(name)
        environ[key] = f"{environ[key]},{value}" if key in environ and key.startswith("HTTP_") else value
    for name, value in underscored:  # moto keeps S3 metadata names with underscores; a dashed twin wins
        key = environ_key_for_header(name)
        if key in environ and key not in names:
            continue
        names.setdefault(key, name)
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
    if not has_host:
        host = parts.hostname or server[0]
        port = parts.port
        environ["HTTP_HOST"] = host if port in (None, _DEFAULT_PORTS.get(parts.scheme)) else f"{host}:{port}"
    if body or method.upper() in ("POST", "PUT", "PATCH"):
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


class _Body(io.BytesIO):
    """A response body botocore can read whole (``stream``) or as a ``StreamingBody`` (``read``)."""

    def stream(self, amt: int = 1024 * 1024, decode_content: bool = False) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk


def call_wsgi(app: WsgiApp, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run ``app`` on ``environ``; answers the status code, the headers and the whole body.

    An exception inside the app answers 500 (logged), as werkzeug's server answers it; a body cut short
    by its client answers 400 and closes the connection.
    """
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        answer[:] = [status, headers]
        return lambda chunk: None

    try:
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except ClientDisconnected:  # an HTTP client went away mid-body (a driver being stopped)
        return 400, [("Content-Type", "application/xml"), ("Connection", "close")], _INCOMPLETE
    except Exception:
        LOG.exception("embedded AWS: error on a request")
        return 500, [("Content-Type", "application/xml")], _INTERNAL_ERROR
    status, headers = answer
    return int(status.split(None, 1)[0]), list(headers), body


class InProcessSession:
    """A botocore HTTP session that answers from the embedded AWS's WSGI app in this process."""

    def __init__(self, app: WsgiApp, server: tuple[str, int]) -> None:
        self.app = app
        self.server = server

    def send(self, request: AWSPreparedRequest) -> AWSResponse:
        """Answer ``request`` as the embedded AWS would over HTTP."""
        body = request_body(request.body)
        headers = [(_text(name), _text(value)) for name, value in request.headers.items()]
        environ = wsgi_environ(request.method, request.url, headers, body, self.server)
        status, answer_headers, data = call_wsgi(self.app, environ)
        merged: dict[str, str] = {}
        for name, value in answer_headers:
            key = next((k for k in merged if k.lower() == name.lower()), name)
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        if request.method.upper() == "HEAD" or status in (204, 304):
            data = b""
        response = AWSResponse(request.url, status, cast(Any, merged), _Body(data))
        if not request.stream_output:
            response.content  # noqa: B018 - read it now, as URLLib3Session does
        return response

    def close(self) -> None:
        """Nothing to release (no connections)."""
