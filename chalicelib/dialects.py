"""The three response envelopes (works, geo/token, Linkis entrance) and their error mappings."""

from __future__ import annotations

import json
from typing import Any, Protocol

from chalice import Response

from chalicelib.errors import SparkgateError

_JSON = {"Content-Type": "application/json"}

#: Linkis envelope status -> HTTP status (spec 001, "Interface response format").
LINKIS_HTTP_STATUS = {-1: 401, 0: 200, 1: 400, 2: 412, 3: 403}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with compact, UTF-8 output (non-ASCII names stay readable)."""
    return Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers={**_JSON, **(headers or {})},
    )


def error_headers(err: SparkgateError) -> dict[str, str] | None:
    """Headers an error carries (``Retry-After`` for a throttled login)."""
    retry_after = getattr(err, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after else None


class Dialect(Protocol):
    """How one surface renders its answers and its errors."""

    def error(self, err: SparkgateError, method: str) -> Response:
        """The surface's envelope for ``err``; ``method`` is the request path."""


class WorksDialect:
    """Spec 003: ``{"code": 0, "data": ...}`` / ``{"code": <business code>, "msg": ...}``."""

    @staticmethod
    def ok(data: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        """A success envelope; ``data`` omitted only where the spec omits it (delete)."""
        body: dict[str, Any] = {"code": 0}
        if data is not None:
            body["data"] = data
        return json_response(body, status, headers)

    def error(self, err: SparkgateError, method: str) -> Response:
        """``{"code", "msg"}`` with the error's HTTP status."""
        return json_response({"code": err.code, "msg": err.message}, err.http_status, error_headers(err))


class GeoDialect:
    """Spec 004: ``{"status": "success"|"error", "code": ..., ...}``; errors answer HTTP 400."""

    @staticmethod
    def ok(status: int = 200, **fields: Any) -> Response:
        """A success envelope carrying ``fields`` (e.g. ``data=`` or ``result=``)."""
        return json_response({"status": "success", "code": status, **fields}, status)

    def error(self, err: SparkgateError, method: str) -> Response:
        """Authentication failures keep 401, a quota 429; every other error answers 400 as the spec says."""
        status = 401 if err.http_status == 401 else 400
        if err.http_status >= 500 or err.http_status == 429:
            status = err.http_status
        return json_response({"status": "error", "code": status, "message": err.message}, status, error_headers(err))


class LinkisDialect:
    """Specs 000-002: ``{method, status, message, data}``, status mapped to HTTP status."""

    @staticmethod
    def envelope(method: str, data: Any, status: int = 0, message: str = "OK") -> dict[str, Any]:
        """The envelope body alone (the WebSocket sends it as a frame)."""
        return {"method": method, "status": status, "message": message, "data": data}

    def ok(self, method: str, data: Any, message: str = "OK", headers: dict[str, str] | None = None) -> Response:
        """Status 0 / HTTP 200."""
        return json_response(self.envelope(method, data, 0, message), 200, headers)

    def error_body(self, err: SparkgateError, method: str) -> dict[str, Any]:
        """The error envelope; ``data`` names the error type so clients can branch on it."""
        return self.envelope(method, {"errorType": type(err).__name__}, err.linkis_status, err.message)

    def error(self, err: SparkgateError, method: str) -> Response:
        """The error envelope with the HTTP status the Linkis spec pairs with its status (429 for a quota)."""
        http = LINKIS_HTTP_STATUS.get(err.linkis_status, 400)
        if err.http_status >= 500 or err.http_status == 429:
            http = err.http_status
        return json_response(self.error_body(err, method), http, error_headers(err))
