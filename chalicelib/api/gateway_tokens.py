"""Linkis ``basedata-manager/gateway-auth-token`` routes (Linkis envelope, admins only but ``check``).

Paths and shapes follow Linkis's ``GatewayAuthTokenRestfulApi``: ``GET`` (page), ``GET /{id}``,
``POST``, ``PUT``, ``DELETE /{id}``, ``GET /check``.
"""

from __future__ import annotations

from chalice import Response

from chalicelib import service_tokens
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import LinkisDialect

BASE = "/api/rest_j/v1/basedata-manager/gateway-auth-token"
linkis = LinkisDialect()
surface = Surface(__name__, linkis, linkis_auth=True)
blueprint = surface.blueprint


def _ok(call: Call, data: object, message: str = "OK") -> Response:
    return linkis.ok(call.request.context.get("path", ""), data, message)


@surface.route(BASE, methods=["GET"])
def list_tokens(call: Call) -> Response:
    """``data.list``: ``{list, total, pageNum, pageSize, pages}``."""
    return _ok(call, {"list": service_tokens.list_page(call.user, call.query)})


@surface.route(BASE, methods=["POST"])
def add_token(call: Call) -> Response:
    """``data.result`` (true) and ``data.item`` (the new token with its id)."""
    item = service_tokens.add(call.user, call.body())
    return _ok(call, {"result": True, "item": item}, "token added")


@surface.route(BASE, methods=["PUT"])
def update_token(call: Call) -> Response:
    """``data.result``; the body names the token by ``id``."""
    item = service_tokens.update(call.user, call.body())
    return _ok(call, {"result": True, "item": item}, "token updated")


@surface.route(BASE + "/check", methods=["GET"])
def check_token(call: Call) -> Response:
    """``data.result``: whether ``checkName`` may use ``token``."""
    result, message = service_tokens.check(call.user, call.query.get("token"), call.query.get("checkName"))
    return _ok(call, {"result": result}, message)


@surface.route(BASE + "/{token_id}", methods=["GET"])
def get_token(call: Call, token_id: str) -> Response:
    """``data.item``."""
    return _ok(call, {"item": service_tokens.get(call.user, token_id)})


@surface.route(BASE + "/{token_id}", methods=["DELETE"])
def remove_token(call: Call, token_id: str) -> Response:
    """``data.result``; the token stops working at once."""
    return _ok(call, {"result": service_tokens.remove(call.user, token_id)}, "token removed")
