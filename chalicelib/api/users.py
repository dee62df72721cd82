"""``POST /api/v1/users``: admins create users (works envelope)."""

from __future__ import annotations

from chalice import Response

from chalicelib.api.routing import Call, Surface
from chalicelib.api.token import credentials
from chalicelib.dialects import WorksDialect
from chalicelib.users import create_user, require_admin

surface = Surface(__name__, WorksDialect())
blueprint = surface.blueprint


@surface.route("/api/v1/users", methods=["POST"])
def add_user(call: Call) -> Response:
    """Create a user (admins only)."""
    require_admin(call.user)
    return WorksDialect.ok(create_user(*credentials(call.body(), "username", "password")), status=201)
