"""``POST /token``: login shared by every surface (geo envelope, spec 004)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from chalice import Response

from chalicelib import openapi
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import GeoDialect
from chalicelib.models import parse
from chalicelib.models.identity import LinkisLogin, TokenRequest
from chalicelib.users import login

surface = Surface(__name__, GeoDialect())
blueprint = surface.blueprint


def credentials(
    body: dict[str, object], user_field: str = "username", password_field: str = "password"
) -> tuple[str, str]:
    """Username and password from a login body; 400 naming a missing or non-string field.

    ``/token`` sends ``username``, the Linkis login ``userName`` (:class:`LinkisLogin`)."""
    model = LinkisLogin if user_field == "userName" else TokenRequest
    login_body = parse(model, body, order=(user_field, password_field))
    values = login_body.model_dump()
    return str(values[user_field]), str(values[password_field])


@surface.route("/token", methods=["POST"], public=True)
def token(call: Call) -> Response:
    """Exchange username and password for a JWT (throttled: 429 with ``Retry-After``)."""
    _, jwt_token, ttl = login(*credentials(call.body(), "username", "password"), address=call.source_ip)
    return GeoDialect.ok(data={"expired": ttl, "token": jwt_token})


# The API's description (chalicelib.openapi): public, served from the route table of the running app.
_UI = Path(__file__).resolve().parent.parent / "openapi_ui"
_UI_ASSETS = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css"}
_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sparkgate API</title>
<link rel="stylesheet" href="{base}/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="{base}/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "{base}/openapi.json", dom_id: "#ui"}});</script>
</body></html>
"""


@functools.cache
def _document_text(app: Any) -> str:
    return openapi.render(openapi.build(app.routes))


def _stage_prefix(call: Call) -> str:
    stage = (call.request.context or {}).get("stage")
    host = call.header("host") or ""
    return f"/{stage}" if stage and "execute-api" in host else ""


@surface.route("/openapi.json", methods=["GET"], public=True)
def openapi_document(call: Call) -> Response:
    """The OpenAPI 3.1 document (the same as docs/openapi.json)."""
    return Response(_document_text(blueprint.current_app), headers={"Content-Type": "application/json"})


@surface.route("/docs", methods=["GET"], public=True)
def docs(call: Call) -> Response:
    """The document rendered by the vendored Swagger UI."""
    return Response(_DOCS_HTML.format(base=_stage_prefix(call)), headers={"Content-Type": "text/html; charset=utf-8"})


@surface.route("/docs/{asset}", methods=["GET"], public=True)
def docs_asset(call: Call, asset: str) -> Response:
    """Swagger UI's script and style sheet (swagger-ui-dist 5.35.0, chalicelib/openapi_ui)."""
    kind = _UI_ASSETS.get(asset)
    if kind is None:  # a plain 404 (the geo envelope would say 400)
        return Response({"status": "error", "code": 404, "message": f"{asset} not found"}, status_code=404)
    return Response((_UI / asset).read_text(), headers={"Content-Type": kind, "Cache-Control": "max-age=86400"})
