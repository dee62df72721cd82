"""The local stand-in for API Gateway's WebSocket API.

- A WebSocket server (``websockets``) on ``ws://host:port``: each socket event becomes the event API
  Gateway sends (``requestContext.routeKey`` ``$connect``/``$default``/``$disconnect``, ``eventType``
  CONNECT/MESSAGE/DISCONNECT, ``connectionId``, ``domainName``, ``stage``, ``apiId``, plus
  ``queryStringParameters``/``headers`` at connect and ``body`` for messages), handed to the app's
  registered handler exactly as Lambda calls it: ``handler(event, context)``. A ``$connect`` answer
  other than 2xx refuses the handshake with that HTTP status, as API Gateway does.
- The ``@connections`` management API over HTTP on its own port (``POST``/``GET``/``DELETE``
  ``/@connections/{connectionId}``; a stage prefix in the path is accepted too). Like API Gateway's
  it requires IAM auth: a request must be SigV4-signed (verified in full) with the platform
  credential (``credentials``, default the process's ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  which botocore's ``apigatewaymanagementapi`` client signs with); anything else answers 403
  ``ForbiddenException`` and reaches no socket. Unknown or closed connections answer 410
  ``GoneException``; bodies over 128 KB answer 413, as in the cloud.
- API Gateway's connection limits: a socket idle for 10 minutes (no message either way) or open for
  2 hours is closed with 1001 "Going away" and gets its ``$disconnect`` (``idle_seconds`` /
  ``max_seconds``; the local stack reads ``SPARKGATE_WS_IDLE_SECONDS`` / ``SPARKGATE_WS_MAX_SECONDS``).

Messages from one socket are handled one at a time, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from chalice.local import LambdaContext
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from chalicelib.local.credentials import Credentials
from chalicelib.local.sigv4 import SigV4Verifier

#: listen backlog of every local server (the socketserver default of 5 resets bursts of clients)
LISTEN_BACKLOG = 128


def _selected_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The subprotocol the ``$connect`` handler answered in ``Sec-WebSocket-Protocol``, as API Gateway
    passes it on (a browser drops a socket whose offered subprotocol is not echoed)."""
    selected = getattr(connection, "sparkgate_subprotocol", None)
    return next((p for p in offered if p == selected), None)


class _BackloggedHTTPServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG


Handler = Callable[[dict[str, Any], Any], Any]

MAX_MESSAGE_BYTES = 128 * 1024
IDLE_SECONDS = 600.0
MAX_SECONDS = 7200.0
ROUTES = ("$connect", "$default", "$disconnect")
_CONNECTIONS_PATH = re.compile(r"/@connections/([^/?]+)$")


def resolve_ws_handlers(app: Any) -> dict[str, Handler]:
    """Route key -> the Lambda entry point the app registered (what Lambda would import and call).

    Falls back to ``chalicelib.api.websocket`` (with a warning) while the app does not register it.
    """
    out: dict[str, Handler] = {}
    for route_key, config in getattr(app, "websocket_handlers", {}).items():
        handler = app.handler_map.get(config.name)
        if handler is None:
            module, _, attr = config.handler_string.rpartition(".")
            handler = getattr(sys.modules.get(module) or importlib.import_module(module), attr)
        out[route_key] = handler
    if not out:
        from chalicelib.api import websocket

        print("sparkgate: the app registers no WebSocket handlers; using chalicelib.api.websocket", flush=True)
        out = {
            "$connect": websocket.ws_connect,
            "$default": websocket.ws_message,
            "$disconnect": websocket.ws_disconnect,
        }
    return out


def resolve_stream_handler(app: Any, name: str = "on_dynamodb_record") -> Handler:
    """The app's stream handler (falls back to ``chalicelib.api.stream`` while the app does not register it)."""
    handler: Handler | None = getattr(app, "handler_map", {}).get(name)
    if handler is None:
        from chalicelib.api import stream

        print(f"sparkgate: the app registers no {name!r}; using chalicelib.api.stream", flush=True)
        handler = stream.on_dynamodb_record
    return handler


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Socket:
    def __init__(self, connection_id: str, connection: ServerConnection, source_ip: str, user_agent: str) -> None:
        self.connection_id = connection_id
        self.connection = connection
        self.source_ip, self.user_agent = source_ip, user_agent
        self.connected_at = _now_ms()
        self.last_active = self.connected_at
        self.opened = asyncio.Event()


class WsGateway:
    """WebSocket server + ``@connections`` API, each on its own loopback port, in background threads."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 8001,
        admin_port: int = 0,
        *,
        api_id: str = "local",
        stage: str = "local",
        idle_seconds: float = IDLE_SECONDS,
        max_seconds: float = MAX_SECONDS,
        credentials: Credentials | None = None,
    ) -> None:
        self.handlers = dict(handlers)
        # without a credential every @connections request is refused
        self.verifier = SigV4Verifier(credentials or Credentials.from_environment())
        self.idle_seconds, self.max_seconds = idle_seconds, max_seconds
        self.host, self.port, self.admin_port = host, port, admin_port
        self.api_id, self.stage = api_id, stage
        self._sockets: dict[str, _Socket] = {}
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._limits: asyncio.Task[None] | None = None
        self._admin: ThreadingHTTPServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """Where clients connect."""
        return f"ws://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The ``@connections`` endpoint URL (no stage path), for ``SPARKGATE_WS_ENDPOINT``."""
        return f"http://{self.host}:{self.admin_port}"

    def start(self) -> None:
        """Start both servers; returns once they listen (the real ports are then in ``port``/``admin_port``)."""
        threading.Thread(target=self._run_loop, name="ws-gateway", daemon=True).start()
        if not self._ready.wait(15) or self._error:
            raise RuntimeError(f"WebSocket gateway did not start: {self._error}")
        gateway = self

        class AdminHandler(_ConnectionsApi):
            owner = gateway

        self._admin = _BackloggedHTTPServer((self.host, self.admin_port), AdminHandler)
        self._admin.daemon_threads = True
        self.admin_port = self._admin.server_address[1]
        threading.Thread(target=self._admin.serve_forever, name="ws-connections-api", daemon=True).start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._serve())
        except BaseException as err:  # reported by start()
            self._error = err
            self._ready.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._limits = self._loop.create_task(self._enforce_limits())
        self._ready.set()
        self._loop.run_forever()

    async def _enforce_limits(self) -> None:
        """Close sockets past API Gateway's idle or lifetime limit, as the cloud does (1001 Going away)."""
        tick = max(0.05, min(1.0, self.idle_seconds / 4, self.max_seconds / 4))
        while True:
            await asyncio.sleep(tick)
            now = _now_ms()
            for sock in list(self._sockets.values()):
                idle = now - sock.last_active >= self.idle_seconds * 1000
                old = now - sock.connected_at >= self.max_seconds * 1000
                if idle or old:
                    reason = "Going away: idle timeout" if idle else "Going away: connection duration limit"
                    with contextlib.suppress(Exception):
                        await sock.connection.close(1001, reason)

    async def _serve(self) -> Server:
        return await serve(
            self._session,
            self.host,
            self.port,
            process_request=self._on_connect,
            select_subprotocol=_selected_subprotocol,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,
            backlog=LISTEN_BACKLOG,
        )

    def stop(self) -> None:
        """Close every socket and both servers."""
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
        if self._server is not None and self._loop.is_running():

            async def close(server: Server) -> None:
                if self._limits is not None:
                    self._limits.cancel()
                server.close()
                await server.wait_closed()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(self._server), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    # ---- events ---------------------------------------------------------------------------------

    def _event(self, route: str, sock: _Socket, **extra: Any) -> dict[str, Any]:
        now = _now_ms()
        event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
        context: dict[str, Any] = {
            "routeKey": route,
            "eventType": event_type,
            "messageDirection": "IN",
            "connectionId": sock.connection_id,
            "connectedAt": sock.connected_at,
            "domainName": f"{self.host}:{self.port}",
            "stage": self.stage,
            "apiId": self.api_id,
            "requestId": secrets.token_hex(8),
            "extendedRequestId": secrets.token_hex(8),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "requestTimeEpoch": now,
            "identity": {"sourceIp": sock.source_ip, "userAgent": sock.user_agent},
        }
        if event_type == "MESSAGE":
            context["messageId"] = secrets.token_hex(8)
        return {"requestContext": context, "isBase64Encoded": False, **extra}

    def _invoke(self, route: str, event: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(route)
        if handler is None:
            return {"statusCode": 200}
        context = LambdaContext(f"websocket-{route.strip('$')}", memory_size=128, max_runtime_ms=30_000)
        try:
            result = handler(event, context)
        except Exception as err:  # Lambda would log the error; API Gateway answers 500 at connect
            print(f"sparkgate: websocket {route} handler failed: {err!r}", file=sys.stderr, flush=True)
            return {"statusCode": 500}
        return result if isinstance(result, dict) else {"statusCode": 200}

    async def _on_connect(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        headers = {k: v for k, v in request.headers.raw_items()}
        multi: dict[str, list[str]] = {}
        for key, value in request.headers.raw_items():
            multi.setdefault(key, []).append(value)
        remote = connection.remote_address
        sock = _Socket(
            secrets.token_urlsafe(12),
            connection,
            str(remote[0]) if remote else "127.0.0.1",
            request.headers.get("User-Agent", ""),
        )
        event = self._event(
            "$connect",
            sock,
            headers=headers,
            multiValueHeaders=multi,
            queryStringParameters=dict(pairs) or None,
            multiValueQueryStringParameters={k: [v for kk, v in pairs if kk == k] for k, _ in pairs} or None,
        )
        result = await asyncio.to_thread(self._invoke, "$connect", event)
        status = int(result.get("statusCode", 200))
        if not 200 <= status < 300:
            body = result.get("body") or HTTPStatus(status).phrase
            response = connection.respond(HTTPStatus(status), str(body))
            return response
        self._sockets[sock.connection_id] = sock
        connection.sparkgate_id = sock.connection_id  # type: ignore[attr-defined]
        selected = {str(k).lower(): v for k, v in (result.get("headers") or {}).items()}.get("sec-websocket-protocol")
        connection.sparkgate_subprotocol = selected  # type: ignore[attr-defined]
        return None

    async def _session(self, connection: ServerConnection) -> None:
        sock = self._sockets[connection.sparkgate_id]  # type: ignore[attr-defined]
        sock.opened.set()
        reason, code = "", 1000
        try:
            async for message in connection:
                sock.last_active = _now_ms()
                body = message if isinstance(message, str) else message.decode("utf-8", "replace")
                await asyncio.to_thread(self._invoke, "$default", self._event("$default", sock, body=body))
        except ConnectionClosed as closed:
            reason, code = closed.reason, closed.code
        finally:
            self._sockets.pop(sock.connection_id, None)
            if connection.close_code is not None:
                code, reason = connection.close_code, connection.close_reason or reason
            event = self._event("$disconnect", sock, headers={}, disconnectStatusCode=code, disconnectReason=reason)
            await asyncio.to_thread(self._invoke, "$disconnect", event)

    # ---- @connections ---------------------------------------------------------------------------

    async def _post(self, connection_id: str, data: bytes) -> bool:
        sock = self._sockets.get(connection_id)
        if sock is None:
            return False
        try:
            await asyncio.wait_for(sock.opened.wait(), 5)
            text: str | None = None
            with contextlib.suppress(UnicodeDecodeError):
                text = data.decode("utf-8")
            await sock.connection.send(text if text is not None else data)
        except (ConnectionClosed, TimeoutError):
            return False
        sock.last_active = _now_ms()
        return True

    async def _close(self, connection_id: str) -> bool:
        sock = self._sockets.get(connection_id)
        if sock is None:
            return False
        await sock.connection.close(1000, "closed by the server")
        return True

    def post(self, connection_id: str, data: bytes) -> bool:
        """Send to a connection from any thread; False when it is unknown or closed."""
        return asyncio.run_coroutine_threadsafe(self._post(connection_id, data), self._loop).result(30)

    def close(self, connection_id: str) -> bool:
        """Close a connection from any thread; False when it is unknown."""
        return asyncio.run_coroutine_threadsafe(self._close(connection_id), self._loop).result(30)

    def info(self, connection_id: str) -> dict[str, Any] | None:
        """``GetConnection``'s answer, or None when unknown."""
        sock = self._sockets.get(connection_id)
        if sock is None:
            return None
        iso = "%Y-%m-%dT%H:%M:%S.000Z"
        return {
            "connectedAt": time.strftime(iso, time.gmtime(sock.connected_at / 1000)),
            "lastActiveAt": time.strftime(iso, time.gmtime(sock.last_active / 1000)),
            "identity": {"sourceIp": sock.source_ip, "userAgent": sock.user_agent},
        }

    @property
    def connection_ids(self) -> list[str]:
        """Ids of the open sockets."""
        return list(self._sockets)


class _TooLarge(Exception):
    """The body is over :data:`MAX_MESSAGE_BYTES` (raised instead of reading it)."""


class _ConnectionsApi(BaseHTTPRequestHandler):
    """``/@connections/{id}`` as botocore's ``apigatewaymanagementapi`` calls it (IAM-signed)."""

    owner: WsGateway
    protocol_version = "HTTP/1.1"
    server_version = "sparkgate-local-apigw"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per push would drown the stack's output."""

    def _reply(self, status: int, body: dict[str, Any] | None = None, error: str | None = None) -> None:
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)

    def _length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return -1

    def _authorized_body(self) -> bytes | None:
        """The request's body when it is signed with the platform credential; else answer and None.

        The body is read only once the claimed key id and the signature's date hold, and only up to
        the message limit, so an unsigned client cannot make the gateway read anything.
        """
        length = self._length()
        if length < 0:
            self.close_connection = True
            self._reply(400, {"message": "bad Content-Length"}, "BadRequestException")
            return None
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        body: list[bytes] = []

        def read_body() -> bytes:
            if length > MAX_MESSAGE_BYTES:
                raise _TooLarge
            if not body:
                body.append(self.rfile.read(length) if length else b"")
            return body[0]

        try:
            refusal = self.owner.verifier.verify(self.command, self.path, headers, read_body, s3_path=False)
        except _TooLarge:
            self.close_connection = True
            self._reply(413, {"message": f"message exceeds {MAX_MESSAGE_BYTES} bytes"}, "PayloadTooLargeException")
            return None
        if refusal is not None:
            if length and not body:
                self.close_connection = True  # the unread body must not be taken for the next request
            self._reply(403, {"message": refusal.message}, "ForbiddenException")
            return None
        return body[0] if body else b""

    def _connection_id(self) -> str | None:
        matched = _CONNECTIONS_PATH.search(urlsplit(self.path).path)
        return unquote(matched.group(1)) if matched else None

    def _gone(self, connection_id: str) -> None:
        self._reply(410, {"message": f"connection {connection_id} is gone"}, "GoneException")

    def do_POST(self) -> None:
        """PostToConnection."""
        data = self._authorized_body()
        if data is None:
            return
        connection_id = self._connection_id()
        if connection_id is None:
            self._reply(404, {"message": "not found"}, "NotFoundException")
        elif self.owner.post(connection_id, data):
            self._reply(200)
        else:
            self._gone(connection_id)

    def do_GET(self) -> None:
        """GetConnection."""
        if self._authorized_body() is None:
            return
        connection_id = self._connection_id()
        info = self.owner.info(connection_id) if connection_id else None
        if info is None:
            self._gone(connection_id or "")
        else:
            self._reply(200, info)

    def do_DELETE(self) -> None:
        """DeleteConnection."""
        if self._authorized_body() is None:
            return
        connection_id = self._connection_id()
        if connection_id and self.owner.close(connection_id):
            self._reply(204)
        else:
            self._gone(connection_id or "")
