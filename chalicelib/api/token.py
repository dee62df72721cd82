"""``POST /token``: login shared by every surface (geo envelope, spec 004)."""

from __future__ import annotations

from chalice import Response

from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import GeoDialect
from chalicelib.errors import BadRequest
from chalicelib.users import login

surface = Surface(__name__, GeoDialect())
blueprint = surface.blueprint


def credentials(body: dict[str, object], user_field: str, password_field: str) -> tuple[str, str]:
    """Username and password from a login body; 400 naming a missing or non-string field."""
    values = []
    for field in (user_field, password_field):
        value = body.get(field)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"{field} is required", field=field)
        values.append(value)
    return values[0], values[1]


@surface.route("/token", methods=["POST"], public=True)
def token(call: Call) -> Response:
    """Exchange username and password for a JWT (throttled: 429 with ``Retry-After``)."""
    _, jwt_token, ttl = login(*credentials(call.body(), "username", "password"), address=call.source_ip)
    return GeoDialect.ok(data={"expired": ttl, "token": jwt_token})
