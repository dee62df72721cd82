"""User admin (works envelope): ``/api/v1/users`` and ``/api/v1/users/{username}``."""

from __future__ import annotations

from chalice import Response

from chalicelib import users
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import WorksDialect
from chalicelib.models import parse
from chalicelib.models.identity import USER_CREATE_ORDER, UserCreate
from chalicelib.models.works import PageQuery

surface = Surface(__name__, WorksDialect())
blueprint = surface.blueprint


@surface.route("/api/v1/users", methods=["POST"])
def add_user(call: Call) -> Response:
    """Create a user (admins only); ``is_admin: true`` makes an admin."""
    users.require_admin(call.user)
    body = parse(UserCreate, call.body(), order=USER_CREATE_ORDER, sort_unknown=True)
    return WorksDialect.ok(users.create_user(body.username, body.password, admin=body.is_admin), status=201)


@surface.route("/api/v1/users", methods=["GET"])
def list_users(call: Call) -> Response:
    """Page through every user in username order (admins only); the total in ``X-Total-Count``."""
    page = parse(PageQuery, call.query, order=("*", "limit", "offset"), sort_unknown=True)
    rows, total = users.list_users(call.user, page.limit, page.offset)
    return WorksDialect.ok(rows, headers={"X-Total-Count": str(total)})


@surface.route("/api/v1/users/{username}", methods=["GET"])
def get_user(call: Call, username: str) -> Response:
    """One user (admins; a user may read their own record)."""
    return WorksDialect.ok(users.get_user(call.user, username))


@surface.route("/api/v1/users/{username}", methods=["PATCH"])
def update_user(call: Call, username: str) -> Response:
    """``{disabled?, is_admin?, password?}`` (admins); a user's own ``{password, current_password}``.

    The body is :class:`~chalicelib.models.identity.UserUpdate`; who may change what decides which
    error comes first, so ``users.update_user`` checks it."""
    return WorksDialect.ok(users.update_user(call.user, username, call.body()))


@surface.route("/api/v1/users/{username}", methods=["DELETE"])
def delete_user(call: Call, username: str) -> Response:
    """Delete a user (admins only); the last admin cannot be deleted."""
    users.delete_user(call.user, username)
    return WorksDialect.ok()
