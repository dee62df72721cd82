"""Cross-origin access for browser clients (Arctern's web front ends and consoles on another origin).

One setting, ``SPARKGATE_CORS_ORIGINS``: a comma-separated allow-list of origins
(``https://maps.example.com,http://localhost:3000``), or ``*`` for any origin; empty (the default)
allows none. An allowed ``Origin`` gets ``Access-Control-Allow-Origin`` (that origin, or ``*``) and
``Vary: Origin`` on every answer; a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) on a
route of a surface with CORS answers 204 with the allowed methods and headers, before any
authentication (browsers send no credentials on a preflight). No ``Access-Control-Allow-Credentials``:
these clients authenticate with the ``Authorization`` header, never with cookies.
"""

from __future__ import annotations

import os

from chalice import Response
from chalice.app import Request

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-Match, Token-User, Token-Code, X-Requested-With"
EXPOSE_HEADERS = "X-Request-Id, X-Total-Count, ETag, Retry-After, Content-Disposition"
MAX_AGE = "600"


def allowed_origins() -> tuple[str, ...]:
    """The allow-list (read each time: a test or an operator may change it)."""
    raw = os.environ.get("SPARKGATE_CORS_ORIGINS", "")
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def allow_origin(origin: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed."""
    if not origin:
        return None
    allowed = allowed_origins()
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/") in allowed else None


def headers_for(origin: str | None) -> dict[str, str]:
    """The CORS headers of an ordinary answer to a request from ``origin`` (none for a foreign one)."""
    value = allow_origin(origin)
    if value is None:
        return {}
    return {"Access-Control-Allow-Origin": value, "Access-Control-Expose-Headers": EXPOSE_HEADERS, "Vary": "Origin"}


def preflight(request: Request) -> Response:
    """The answer to ``OPTIONS``: 204 with what the browser may send, or 403 for an origin not allowed."""
    origin = request.headers.get("origin")
    value = allow_origin(origin)
    if value is None:
        return Response(body="", status_code=403, headers={"Vary": "Origin"})
    return Response(
        body="",
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": value,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin",
        },
    )
