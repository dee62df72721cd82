"""Users: login and admin-managed creation."""

from __future__ import annotations

import re
import uuid
from typing import Any

from chalicelib.errors import BadRequest, Forbidden, Unauthorized
from chalicelib.passwords import hash_password, verify_password
from chalicelib.store import users as user_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


def login(username: str, password: str) -> Principal:
    """The principal for valid credentials; :class:`Unauthorized` otherwise."""
    record = user_store.get_user(username) if USERNAME_RE.match(username) else None
    if not verify_password(password, record["password_hash"] if record else None) or record is None:
        raise Unauthorized("invalid username or password")
    return Principal(user_id=record["user_id"], username=record["username"])


def create_user(username: str, password: str, *, admin: bool = False) -> dict[str, Any]:
    """Create a user; answers ``{user_id, username}``."""
    if not USERNAME_RE.match(username):
        raise BadRequest("username must be 1-64 letters, digits or _.@-", field="username")
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        raise BadRequest(f"password must be {MIN_PASSWORD}-1024 characters", field="password")
    record = {
        "user_id": uuid.uuid4().hex,
        "username": username,
        "password_hash": hash_password(password),
        "is_admin": admin,
        "created_at": now_iso(),
    }
    user_store.put_new_user(record)
    return {"user_id": record["user_id"], "username": username}


def require_admin(principal: Principal) -> None:
    """:class:`Forbidden` unless the caller is an admin."""
    record = user_store.get_user(principal.username)
    if not record or record["user_id"] != principal.user_id or not record.get("is_admin"):
        raise Forbidden("only administrators may do this")


def ensure_user(username: str, password: str, *, admin: bool) -> bool:
    """Create the user unless it exists (used to seed the local stage). True when created."""
    if user_store.get_user(username):
        return False
    create_user(username, password, admin=admin)
    return True
