"""Users: login (throttled), admin-managed creation, listing, changes and deletion.

The ``manage_*`` functions are the operator's (the CLI, trusted); the others authorise the caller
first and then call them. Every change that must end a user's sessions (disable, password change)
bumps the user's ``token_version``, which :func:`chalicelib.tokens.verify_token` compares; a deleted
user's tokens fail because the record is gone (and a user re-created under the name has a new id).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from chalicelib import throttle
from chalicelib.errors import BadRequest, Forbidden, NotFound, Unauthorized
from chalicelib.passwords import hash_password, verify_password
from chalicelib.store import users as user_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal, forget_user, issue_token

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
PATCH_FIELDS = ("disabled", "is_admin", "password", "current_password")
BAD_CREDENTIALS = "invalid username or password"


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The public shape of a user (never the hash)."""
    return {
        "user_id": record["user_id"],
        "username": record["username"],
        "is_admin": bool(record.get("is_admin")),
        "disabled": bool(record.get("disabled")),
        "created_at": record.get("created_at"),
        "updated_at": record.get("updated_at") or record.get("created_at"),
        "password_changed_at": record.get("password_changed_at") or record.get("created_at"),
    }


def login(username: str, password: str, *, address: str | None = None) -> tuple[Principal, str, int]:
    """``(principal, token, lifetime)`` for valid credentials of an enabled user.

    Throttled before anything is hashed (:class:`TooManyRequests`); :class:`Unauthorized` with one
    message for an unknown user, a wrong password and a disabled account, each spending one hash.
    """
    throttle.check(username, address)
    record = user_store.get_user(username) if USERNAME_RE.match(username) else None
    good = verify_password(password, record["password_hash"] if record else None)
    if not good or record is None or record.get("disabled"):
        throttle.failed(username, address)
        raise Unauthorized(BAD_CREDENTIALS)
    throttle.succeeded(username)
    principal = Principal(user_id=record["user_id"], username=record["username"])
    token, ttl = issue_token(principal, int(record.get("token_version", 0)))
    return principal, token, ttl


def _check_password(password: Any, field: str = "password") -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"{field} must be a string of {MIN_PASSWORD}-{MAX_PASSWORD} characters", field=field)
    return password


def create_user(username: str, password: str, *, admin: bool = False) -> dict[str, Any]:
    """Create a user; answers ``{user_id, username}``."""
    if not USERNAME_RE.match(username):
        raise BadRequest("username must be 1-64 letters, digits or _.@-", field="username")
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters", field="password")
    stamp = now_iso()
    record = {
        "user_id": uuid.uuid4().hex,
        "username": username,
        "password_hash": hash_password(password),
        "is_admin": admin,
        "disabled": False,
        "created_at": stamp,
        "updated_at": stamp,
        "password_changed_at": stamp,
    }
    user_store.put_new_user(record)
    forget_user(username)
    return {"user_id": record["user_id"], "username": username}


def _admin_record(principal: Principal) -> dict[str, Any] | None:
    record = user_store.get_user(principal.username)
    if not record or record["user_id"] != principal.user_id or record.get("disabled"):
        return None
    return record


def is_admin(principal: Principal) -> bool:
    """True when the caller is an enabled admin."""
    record = _admin_record(principal)
    return bool(record and record.get("is_admin"))


def require_admin(principal: Principal) -> None:
    """:class:`Forbidden` unless the caller is an admin."""
    if not is_admin(principal):
        raise Forbidden("only administrators may do this")


def ensure_user(username: str, password: str, *, admin: bool) -> bool:
    """Create the user unless it exists (used to seed the local stage). True when created."""
    if user_store.get_user(username):
        return False
    create_user(username, password, admin=admin)
    return True


# ---- the operator's functions (no authorisation: the CLI, or after the API checked) -----------


def _existing(username: str) -> dict[str, Any]:
    record = user_store.get_user(username) if USERNAME_RE.match(username) else None
    if record is None:
        raise NotFound(f"user {username} not found")
    return record


def manage_list(limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Page ``offset`` (a page number) of ``limit`` users in username order, and the total."""
    rows = [view(r) for r in sorted(user_store.list_users(), key=lambda r: str(r["username"]))]
    return rows[offset * limit : offset * limit + limit], len(rows)


def manage_get(username: str) -> dict[str, Any]:
    """One user's public record."""
    return view(_existing(username))


def manage_update(username: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``{disabled?, is_admin?, password?}``; disabling or a new password revokes every token
    of the user. Answers the user's public record."""
    unknown = sorted(set(changes) - {"disabled", "is_admin", "password"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]}; use disabled, is_admin or password", field=unknown[0])
    if not changes:
        raise BadRequest("nothing to change: send disabled, is_admin or password")
    fields: dict[str, Any] = {}
    for flag in ("disabled", "is_admin"):
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise BadRequest(f"{flag} must be true or false", field=flag)
            fields[flag] = changes[flag]
    stamp = now_iso()
    if "password" in changes:
        fields["password_hash"] = hash_password(_check_password(changes["password"]))
        fields["password_changed_at"] = stamp
    current = _existing(username)
    revoke = "password_hash" in fields or (fields.get("disabled") is True and not current.get("disabled"))
    fields["updated_at"] = stamp
    try:
        updated = user_store.update_user(current, fields, revoke=revoke)
    finally:
        forget_user(username)
    return view(updated)


def manage_delete(username: str) -> None:
    """Delete a user: every token of theirs stops working (their works and Jobs stay, unreachable)."""
    current = _existing(username)
    try:
        user_store.delete_user(current)
    finally:
        forget_user(username)


# ---- the API's functions ------------------------------------------------------------------------


def list_users(principal: Principal, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Admins only."""
    require_admin(principal)
    return manage_list(limit, offset)


def get_user(principal: Principal, username: str) -> dict[str, Any]:
    """Admins see anyone; a user sees themselves; anyone else is 403 whether the name exists or not."""
    if username != principal.username:
        require_admin(principal)
    return manage_get(username)


def update_user(principal: Principal, username: str, body: dict[str, Any]) -> dict[str, Any]:
    """``PATCH``: admins change anyone; a user changes only their own password, proving the current
    one (``current_password``). A caller who changed their own password gets a fresh ``token``."""
    unknown = sorted(set(body) - set(PATCH_FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]}; use disabled, is_admin, password (and current_password)", field=unknown[0]
        )
    changes = {k: v for k, v in body.items() if k != "current_password"}
    self_service = username == principal.username
    if not is_admin(principal):
        if not self_service:
            raise Forbidden("only administrators may do this")
        if set(changes) != {"password"}:
            raise Forbidden("you may change only your own password; the other fields are for administrators")
        current = body.get("current_password")
        record = _existing(username)
        if not isinstance(current, str) or not verify_password(current, record["password_hash"]):
            raise BadRequest("current_password is not your current password", field="current_password")
    result = manage_update(username, changes)
    if self_service and "password" in changes and not result["disabled"]:
        token, ttl = issue_token(Principal(result["user_id"], result["username"]), _version(username))
        result = {**result, "token": token, "expired": ttl}
    return result


def _version(username: str) -> int:
    record = user_store.get_user(username)
    return int(record.get("token_version", 0)) if record else 0


def delete_user(principal: Principal, username: str) -> None:
    """Admins only; the last admin cannot be deleted."""
    require_admin(principal)
    manage_delete(username)
