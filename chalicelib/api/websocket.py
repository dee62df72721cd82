"""The WebSocket API (spec 000, "WebSocket接口描述"): ``$connect``, ``$default``, ``$disconnect``.

``$connect`` authenticates the JWT (``?token=<jwt>`` or ``Authorization: Token|Bearer <jwt>``, or the
Linkis session cookie) and records the connection for its user; anything else is refused with 401.

``$default`` takes frames ``{"method": ..., "data": {...}, "websocketTag": ...}``:

============================================================  ===============================================
method                                                        answer ``data``
============================================================  ===============================================
``/api/rest_j/v1/entrance/execute``                           ``{execID, taskID}`` (same body as HTTP); the
                                                              socket is subscribed to the new Job
``/api/rest_j/v1/entrance/submit``                            same, Linkis 1.x body
``/api/rest_j/v1/entrance/{execID}/status``                   ``{execID, taskID, status}``
``/api/rest_j/v1/entrance/{execID}/progress``                 ``{execID, taskID, progress, progressInfo}``
``/api/rest_j/v1/entrance/{execID}/log``                      ``{execID, taskID, log, fromLine}``; ``data`` may
                                                              carry ``fromLine`` and ``size``
``/api/rest_j/v1/entrance/{execID}/kill``                     ``{execID, taskID, status}``
``/api/rest_j/v1/entrance/{execID}/subscribe``                ``{execID, taskID, status}``; pushes for the Job
                                                              follow, echoing this frame's ``websocketTag``
``/api/rest_j/v1/entrance/{execID}/unsubscribe``              ``{execID}``
============================================================  ===============================================

Every answer echoes ``method`` and ``websocketTag``. A bad frame gets an error frame (Linkis status
1 or 2, -1 when the connection is not logged in, 3 for another user's Job); the connection stays open.
Answers are posted through ``@connections`` (API Gateway sends a route's return value nowhere).

Registered handlers are module attributes Lambda calls as ``chalicelib.api.websocket.<name>(event,
context)``. A Chalice ``Blueprint`` has no ``websocket_api`` of its own, so its ``on_ws_*`` decorators
would hand back the bare function; this blueprint gets one so they are wrapped as Lambda handlers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chalice import Blueprint
from chalice.app import WebsocketAPI, WebsocketEvent

from chalicelib import entrance, jobs, push
from chalicelib.api.routing import SESSION_COOKIE
from chalicelib.config import settings
from chalicelib.dialects import LinkisDialect
from chalicelib.errors import BadRequest, InternalError, NotFound, SparkgateError, Unauthorized, ValidationFailed
from chalicelib.observability import logger
from chalicelib.store import connections, wsapi
from chalicelib.store import logs as log_store
from chalicelib.tokens import Principal, decode_token, principal_of, subprotocol_token, token_from_headers

blueprint = Blueprint(__name__)
blueprint.websocket_api = WebsocketAPI()  # see the module docstring

PREFIX = "/api/rest_j/v1/entrance/"
EXECUTE = f"{PREFIX}execute"
SUBMIT = f"{PREFIX}submit"
JOB_METHOD = re.compile(
    r"^/api/rest_j/v1/entrance/([A-Za-z0-9_\-.:]{1,64})/(status|progress|log|kill|subscribe|unsubscribe)$"
)
MAX_FRAME_BYTES = 128 * 1024
_LINKIS = LinkisDialect()
_OK = {"statusCode": 200}


# ---- $connect / $disconnect ---------------------------------------------------------------------


def connect_principal(event: dict[str, Any]) -> tuple[Principal, dict[str, Any]]:
    """The principal of a ``$connect`` event: ``Sec-WebSocket-Protocol: sparkgate, token.<jwt>`` (what
    browsers can send), ``Authorization``, the Linkis cookie, or ``?token=`` (kept for old clients; URLs
    end up in logs, so prefer the others). 401 otherwise."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    token = subprotocol_token(headers.get("sec-websocket-protocol"))[0] or token_from_headers(headers, SESSION_COOKIE)
    if not token:
        query = event.get("queryStringParameters") or {}
        token = query.get("token") if isinstance(query, dict) else None
    if not token:
        raise Unauthorized(
            "missing credentials: connect with Sec-WebSocket-Protocol: sparkgate, token.<jwt> "
            "or Authorization: Token <jwt>"
        )
    claims = decode_token(str(token))
    return principal_of(claims), claims


@blueprint.on_ws_connect(name="ws_connect")  # type: ignore[untyped-decorator]
def ws_connect(event: WebsocketEvent) -> dict[str, Any]:
    """Authenticate and record the connection; 401 refuses it. A client that offered subprotocols gets
    ``sparkgate`` selected (browsers drop a connection whose offer the server does not answer)."""
    raw = event.to_dict()
    try:
        principal, claims = connect_principal(raw)
    except Unauthorized as err:
        logger.info("websocket refused", extra={"reason": err.message})
        return {"statusCode": 401, "body": json.dumps({"message": err.message})}
    connections.put_connection(event.connection_id, principal.user_id, principal.username, claims=claims)
    logger.info("websocket connected", extra={"connection_id": event.connection_id, "user_id": principal.user_id})
    offered = {str(k).lower(): str(v) for k, v in (raw.get("headers") or {}).items()}.get("sec-websocket-protocol")
    selected = subprotocol_token(offered)[1]
    if selected:
        return {**_OK, "headers": {"Sec-WebSocket-Protocol": selected}}
    return _OK


@blueprint.on_ws_disconnect(name="ws_disconnect")  # type: ignore[untyped-decorator]
def ws_disconnect(event: WebsocketEvent) -> dict[str, Any]:
    """Forget the connection and its subscriptions."""
    connections.delete_connection(event.connection_id)
    return _OK


# ---- $default -----------------------------------------------------------------------------------


def _tag(frame: Any) -> str | None:
    tag = frame.get("websocketTag") if isinstance(frame, dict) else None
    if isinstance(tag, (int, float)) and not isinstance(tag, bool):
        tag = str(tag)
    return tag if isinstance(tag, str) and len(tag) <= push.MAX_TAG_CHARS else None


def parse_frame(body: str | None) -> tuple[str, dict[str, Any], str | None]:
    """``(method, data, websocketTag)`` of a request frame; :class:`BadRequest` naming what is wrong."""
    if body is None or not body.strip():
        raise BadRequest('empty frame: send {"method", "data", "websocketTag"}')
    if len(body.encode()) > MAX_FRAME_BYTES:
        raise BadRequest(f"frame exceeds {MAX_FRAME_BYTES} bytes")
    try:
        frame = json.loads(body)
    except json.JSONDecodeError as err:
        raise BadRequest(f"invalid JSON: {err}") from err
    if not isinstance(frame, dict):
        raise BadRequest("a frame must be a JSON object")
    method = frame.get("method")
    if not isinstance(method, str) or not method:
        raise BadRequest("frame.method is required", field="method")
    data = frame.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationFailed("frame.data must be an object", field="data")
    return method, data, _tag(frame)


def answer(connection: connections.Connection, method: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer frames (without tag) for one request; more than one only for a long log page."""
    principal = Principal(connection.user_id, connection.username)
    if method == EXECUTE:
        return [_LINKIS.envelope(method, entrance.execute(principal, data, connection.connection_id), 0, "OK")]
    if method == SUBMIT:
        return [_LINKIS.envelope(method, entrance.submit(principal, data, connection.connection_id), 0, "OK")]
    matched = JOB_METHOD.match(method)
    if not matched:
        raise NotFound(f"unknown method {method!r}")
    exec_id, action = matched.groups()
    if action == "unsubscribe":
        connections.unsubscribe(connection.connection_id, exec_id)
        return [_LINKIS.envelope(method, {"execID": exec_id})]
    job = jobs.owned_job(principal, exec_id)
    if action == "status":
        return [_LINKIS.envelope(method, entrance.status(job))]
    if action == "progress":
        return [_LINKIS.envelope(method, entrance.progress(job))]
    if action == "kill":
        return [_LINKIS.envelope(method, entrance.kill(job))]
    if action == "log":
        page = entrance.log(job, data.get("fromLine"), data.get("size"))  # validates both
        whole = _LINKIS.envelope(method, page)
        if len(push.encode(whole)) <= MAX_FRAME_BYTES - push.TAG_HEADROOM:
            return [whole]
        start, count = entrance.log_window(data.get("fromLine"), data.get("size"))
        lines = log_store.read_log(job["exec_id"], start, count)
        return [_LINKIS.envelope(method, part.data) for part in push.log_pushes(job, start, lines)]
    return [_LINKIS.envelope(method, entrance.status(job))]  # subscribe: recorded by the caller


def _send(connection_id: str, endpoint: str, frame: dict[str, Any]) -> None:
    data = push.encode(frame)
    if len(data) > MAX_FRAME_BYTES:
        frame = {
            **_LINKIS.error_body(BadRequest("answer exceeds 128 KB; ask for fewer lines (size)"), frame["method"]),
            "websocketTag": frame.get("websocketTag"),
        }
        data = push.encode(frame)
    wsapi.post(connection_id, data, endpoint)


def _still_valid(connection: connections.Connection) -> None:
    """Refuse a frame of a connection whose token was revoked since ``$connect`` (logout, disable, delete,
    password change) and forget the connection, so no push reaches it either."""
    try:
        principal_of(connection.claims())
    except Unauthorized:
        connections.delete_connection(connection.connection_id)
        raise Unauthorized("token revoked: log in again and reconnect") from None


def handle_frame(connection_id: str, body: str | None, endpoint: str) -> list[dict[str, Any]]:
    """Answer one frame on ``connection_id``; answers the frames sent (for tests and logs)."""
    method, tag = "", None
    try:
        method, data, tag = parse_frame(body)
        connection = connections.get_connection(connection_id)
        if connection is None:
            raise Unauthorized("this connection is not logged in (reconnect with a token)")
        _still_valid(connection)
        frames = answer(connection, method, data)
        if method.endswith("/subscribe") and frames and frames[0]["status"] == 0:
            connections.subscribe(connection, frames[0]["data"]["execID"], tag)
        if method in (EXECUTE, SUBMIT):
            connections.subscribe(connection, frames[0]["data"]["execID"], tag)
    except SparkgateError as err:
        if not method and body:
            try:
                raw = json.loads(body)
                found = raw.get("method") if isinstance(raw, dict) else None
                method = found if isinstance(found, str) else ""
                tag = _tag(raw)
            except json.JSONDecodeError:
                pass
        logger.info("websocket frame refused", extra={"error": type(err).__name__, "reason": err.message})
        frames = [_LINKIS.error_body(err, method)]
    except Exception:
        logger.exception("websocket frame failed")
        frames = [_LINKIS.error_body(InternalError("internal error"), method)]
    sent = [{**frame, "websocketTag": tag} for frame in frames]
    for frame in sent:
        _send(connection_id, endpoint, frame)
    return sent


@blueprint.on_ws_message(name="ws_message")  # type: ignore[untyped-decorator]
def ws_message(event: WebsocketEvent) -> dict[str, Any]:
    """Answer one request frame on the socket it came from."""
    endpoint = settings().ws_endpoint or wsapi.endpoint_from_event(event.domain_name, event.stage)
    raw = event.to_dict().get("body")
    handle_frame(event.connection_id, raw if isinstance(raw, str) else None, endpoint)
    return _OK
