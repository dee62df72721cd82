"""The web console (``/console``): static files from ``chalicelib/console`` and the page's configuration.

The console lives in ``chalicelib/`` because that is what ``chalice package`` deploys with the app: the
same Lambda serves it in the cloud, so the page and the API share one origin (no CORS, no second
deployment). Every file is text (HTML, ES modules, CSS), so the REST API needs no binary media type.
The page talks only to the public HTTP and WebSocket APIs; ``config.js`` tells it where they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chalice import Response

from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import GeoDialect

surface = Surface(__name__, GeoDialect())
blueprint = surface.blueprint

ROOT = Path(__file__).resolve().parent.parent / "console"
#: the WebSocket URL the page connects to (the local stack sets it; the CDK app sets the stage's wss:// URL)
WS_URL_ENV = "SPARKGATE_CONSOLE_WS_URL"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def _files(folder: Path) -> dict[str, Path]:
    """The servable files of ``folder`` by name: a fixed list taken at import, never a path from a request."""
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in TYPES}


ASSETS = _files(ROOT)
VENDOR = _files(ROOT / "vendor")


def _stage_prefix(call: Call) -> str:
    """``/<stage>`` behind API Gateway's own host name, empty locally or behind a custom domain."""
    stage = (call.request.context or {}).get("stage")
    host = call.header("host") or ""
    return f"/{stage}" if stage and "execute-api" in host else ""


def ws_url() -> str:
    """The WebSocket URL for the page, or empty (the page then follows Jobs over HTTP only)."""
    value = os.environ.get(WS_URL_ENV, "").strip()
    return value if value.startswith(("ws://", "wss://")) else ""


def _headers(kind: str, ws: str = "") -> dict[str, str]:
    connect = "'self'" + (f" {ws}" if ws else "")
    return {
        "Content-Type": kind,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": (
            f"default-src 'self'; connect-src {connect}; img-src 'self' data: blob:; "
            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ),
    }


def _not_found(name: str) -> Response:
    return Response({"status": "error", "code": 404, "message": "not found"}, status_code=404)


@surface.route("/console", methods=["GET"], public=True)
def console_page(call: Call) -> Response:
    """The console's page (``/console`` and ``/console/``)."""
    html = (ROOT / "index.html").read_text().replace("{base}", _stage_prefix(call))
    return Response(html, headers=_headers("text/html; charset=utf-8", ws_url()))


@surface.route("/console/{asset}", methods=["GET"], public=True)
def console_asset(call: Call, asset: str) -> Response:
    """One of the console's modules or style sheets, or ``config.js`` (the API base and WebSocket URL)."""
    if asset == "config.js":
        config = {"api": _stage_prefix(call), "ws": ws_url()}
        return Response(f"export const config = {json.dumps(config)};\n", headers=_headers(TYPES[".js"]))
    path = ASSETS.get(asset)
    if path is None:
        return _not_found(asset)
    return Response(path.read_text(), headers=_headers(TYPES[path.suffix]))


@surface.route("/console/vendor/{asset}", methods=["GET"], public=True)
def console_vendor(call: Call, asset: str) -> Response:
    """The vendored editor (CodeMirror 5.65.21, ``chalicelib/console/vendor``)."""
    path = VENDOR.get(asset)
    if path is None:
        return _not_found(asset)
    headers = {**_headers(TYPES[path.suffix]), "Cache-Control": "max-age=86400"}
    return Response(path.read_text(), headers=headers)
