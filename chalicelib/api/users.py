"""User admin (works envelope): ``/api/v1/users`` and ``/api/v1/users/{username}``."""

from __future__ import annotations

from chalice import Response

from chalicelib import users
from chalicelib.api.routing import Call, Surface
from chalicelib.api.token import credentials
from chalicelib.dialects import WorksDialect
from chalicelib.errors import BadRequest
from chalicelib.works import paging

surface = Surface(__name__, WorksDialect())
blueprint = surface.blueprint


@surface.route("/api/v1/users", methods=["POST"])
def add_user(call: Call) -> Response:
    """Create a user (admins only); ``is_admin: true`` makes an admin."""
    users.require_admin(call.user)
    body = call.body()
    admin = body.get("is_admin", False)
    if not isinstance(admin, bool):
        raise BadRequest("is_admin must be true or false", field="is_admin")
    unknown = sorted(set(body) - {"username", "password", "is_admin"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]}", field=unknown[0])
    return WorksDialect.ok(users.create_user(*credentials(body, "username", "password"), admin=admin), status=201)


@surface.route("/api/v1/users", methods=["GET"])
def list_users(call: Call) -> Response:
    """Page through every user in username order (admins only); the total in ``X-Total-Count``."""
    unknown = sorted(set(call.query) - {"limit", "offset"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]}", field=unknown[0])
    limit, offset = paging(call.query)
    rows, total = users.list_users(call.user, limit, offset)
    return WorksDialect.ok(rows, headers={"X-Total-Count": str(total)})


@surface.route("/api/v1/users/{username}", methods=["GET"])
def get_user(call: Call, username: str) -> Response:
    """One user (admins; a user may read their own record)."""
    return WorksDialect.ok(users.get_user(call.user, username))


@surface.route("/api/v1/users/{username}", methods=["PATCH"])
def update_user(call: Call, username: str) -> Response:
    """``{disabled?, is_admin?, password?}`` (admins); a user's own ``{password, current_password}``."""
    return WorksDialect.ok(users.update_user(call.user, username, call.body()))


@surface.route("/api/v1/users/{username}", methods=["DELETE"])
def delete_user(call: Call, username: str) -> Response:
    """Delete a user (admins only); the last admin cannot be deleted."""
    users.delete_user(call.user, username)
    return WorksDialect.ok()
