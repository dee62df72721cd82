"""``POST /token``: login shared by every surface (geo envelope, spec 004)."""

from __future__ import annotations

from chalice import Response

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
