"""Route plumbing shared by every surface: authentication, body parsing, error mapping.

A view is ``fn(call, **uri_params) -> Response``; whatever :class:`SparkgateError` it raises is
rendered in its surface's envelope here, once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chalice import Blueprint, Response
from chalice.app import Request

from chalicelib.dialects import Dialect
from chalicelib.errors import BadRequest, InternalError, SparkgateError, Unauthorized
from chalicelib.observability import logger
from chalicelib.tokens import Principal, token_from_headers, verify_token

#: Cookie set by the Linkis login; it carries the same JWT as ``Authorization``.
SESSION_COOKIE = "linkis_user_session_ticket_id_v1"
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded"]
MAX_BODY = 1024 * 1024


@dataclass
class Call:
    """One request as a view sees it."""

    request: Request
    principal: Principal | None

    @property
    def user(self) -> Principal:
        """The authenticated caller (every non-public route has one)."""
        if self.principal is None:
            raise Unauthorized("authentication required")
        return self.principal

    def body(self, *, optional: bool = False) -> dict[str, Any]:
        """The JSON object body; 400 naming the problem for anything else."""
        raw = self.request.raw_body or b""
        if len(raw) > MAX_BODY:
            raise BadRequest(f"request body exceeds {MAX_BODY} bytes")
        if not raw.strip():
            if optional:
                return {}
            raise BadRequest("a JSON body is required")
        try:
            parsed = json.loads(raw)
            # a lone surrogate ("\ud800") parses but can be neither stored nor answered
            json.dumps(parsed, ensure_ascii=False).encode()
        except RecursionError as err:
            raise BadRequest("invalid JSON: nested too deeply") from err
        except ValueError as err:  # bad JSON or UTF-8, an integer of over 4,300 digits, a lone surrogate
            raise BadRequest(f"invalid JSON: {str(err)[:200]}") from err
        if not isinstance(parsed, dict):
            raise BadRequest("the request body must be a JSON object")
        return parsed

    @property
    def query(self) -> dict[str, str]:
        """Query string parameters (last value wins)."""
        return dict(self.request.query_params or {})

    @property
    def source_ip(self) -> str | None:
        """The caller's address as API Gateway saw it (never a client-supplied header)."""
        identity = (self.request.context or {}).get("identity") or {}
        value = identity.get("sourceIp") if isinstance(identity, dict) else None
        return str(value) if value else None

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        value: str | None = self.request.headers.get(name.lower())
        return value


def authenticate(headers: dict[str, str], *, linkis: bool = False, source_ip: str | None = None) -> Principal:
    """The principal behind the request's token. Every surface takes ``Authorization``; the Linkis
    surface (``linkis``) also takes its session cookie and Linkis service tokens (``Token-User`` +
    ``Token-Code``, see ``service_tokens``)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if linkis and lowered.get("token-code") and not lowered.get("authorization"):
        from chalicelib.service_tokens import authenticate_service

        return authenticate_service(lowered.get("token-user"), lowered["token-code"], source_ip)
    token = token_from_headers(lowered, SESSION_COOKIE if linkis else None)
    if not token:
        raise Unauthorized("missing credentials: send Authorization: Token <jwt>")
    return verify_token(token)


class Surface:
    """A blueprint plus the dialect its routes answer in."""

    def __init__(self, import_name: str, dialect: Dialect, *, linkis_auth: bool = False, cors: bool = False) -> None:
        self.blueprint = Blueprint(import_name)
        self.dialect = dialect
        #: the Linkis surface: its session cookie and service tokens authenticate too
        self.linkis_auth = linkis_auth
        #: every route also answers a CORS preflight (``OPTIONS``, see ``chalicelib.api.cors``)
        self.cors = cors
        self._preflight_paths: set[str] = set()

    def route(
        self, path: str, methods: Sequence[str] = ("GET",), *, public: bool = False
    ) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        """Register ``fn(call, **params)`` at ``path`` with authentication and error mapping."""

        def register(fn: Callable[..., Response]) -> Callable[..., Response]:
            @functools.wraps(fn)
            def view(**params: str) -> Response:
                request = self.blueprint.current_request
                try:
                    call = Call(request, None)
                    if not public:
                        call.principal = authenticate(
                            dict(request.headers), linkis=self.linkis_auth, source_ip=call.source_ip
                        )
                    return fn(call, **params)
                except SparkgateError as err:
                    logger.info("request refused", extra={"error": type(err).__name__, "reason": err.message})
                    return self.dialect.error(err, request.context.get("path", ""))
                except Exception:
                    logger.exception("unhandled error")
                    return self.dialect.error(InternalError("internal error"), request.context.get("path", ""))

            self.blueprint.route(path, methods=list(methods), content_types=CONTENT_TYPES)(view)
            if self.cors and path not in self._preflight_paths:
                self._preflight_paths.add(path)
                self._register_preflight(path, fn.__name__)
            return fn

        return register

    def _register_preflight(self, path: str, name: str) -> None:
        from chalicelib.api.cors import preflight

        def options(**params: str) -> Response:
            return preflight(self.blueprint.current_request)

        options.__name__ = f"{name}_preflight"
        self.blueprint.route(path, methods=["OPTIONS"], content_types=CONTENT_TYPES)(options)
