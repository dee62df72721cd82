"""Linkis service tokens (``Token-User`` / ``Token-Code``), managed as Linkis's basedata-manager does.

An admin adds a token ``{tokenName, legalUsers, legalHosts, elapseDay, businessOwner}``; ``tokenName``
is the secret code a service sends as ``Token-Code``. A request with a known code, a ``Token-User``
named in ``legalUsers`` (or ``*``), from an address in ``legalHosts`` (or ``*``), within ``elapseDay``
days of the token's creation (``-1``: no expiry) acts as that user, who must exist and be enabled.
Only a SHA-256 of the code is stored (codes must be 16-128 characters, so the hash cannot be guessed
back); each request reads the token afresh (one consistent GetItem), so a deletion, a change or an
expiry applies to the very next request.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any

from chalicelib.errors import BadRequest, NotFound, Unauthorized
from chalicelib.store import service_tokens as token_store
from chalicelib.store import users as user_store
from chalicelib.tokens import Principal
from chalicelib.users import USERNAME_RE, require_admin

MIN_CODE, MAX_CODE = 16, 128
MAX_ELAPSE_DAYS = 3650
_CODE_RE = re.compile(r"^[\x21-\x7e]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,253}$")
FIELDS = ("id", "tokenName", "legalUsers", "legalHosts", "elapseDay", "businessOwner")


def code_hash(code: str) -> str:
    """The stored form of a code."""
    return hashlib.sha256(code.encode()).hexdigest()


def _check_code(value: Any) -> str:
    if not isinstance(value, str) or not MIN_CODE <= len(value) <= MAX_CODE or not _CODE_RE.match(value):
        raise BadRequest(
            f"tokenName must be {MIN_CODE}-{MAX_CODE} printable characters without spaces (it is the secret code)",
            field="tokenName",
        )
    return value


def _names(value: Any, field: str, pattern: re.Pattern[str]) -> list[str]:
    """``"*"``, ``"a,b"`` or ``["a", "b"]`` -> a list of names; 400 naming ``field`` otherwise."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise BadRequest(f"{field} must be a comma-separated string or a list of strings", field=field)
    if not items or len(items) > 100 or any(v != "*" and not pattern.match(v) for v in items):
        raise BadRequest(f"{field} must name 1-100 entries (or *)", field=field)
    return ["*"] if "*" in items else sorted(set(items))


def _elapse(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not (value == -1 or 1 <= value <= MAX_ELAPSE_DAYS):
        raise BadRequest(f"elapseDay must be -1 (no expiry) or 1-{MAX_ELAPSE_DAYS} days", field="elapseDay")
    return value


def _owner(value: Any) -> str:
    if value is None:
        return "BDP"
    if not isinstance(value, str) or len(value) > 128:
        raise BadRequest("businessOwner must be a string of at most 128 characters", field="businessOwner")
    return value


def _millis() -> int:
    return int(time.time() * 1000)


def view(record: dict[str, Any]) -> dict[str, Any]:
    """A token as Linkis's ``GatewayAuthTokenEntity`` (the code is shown by its first 4 characters)."""
    return {
        "id": int(record["id"]),
        "tokenName": f"{record.get('code_hint', '')}****",
        "legalUsers": ",".join(record["legal_users"]),
        "legalHosts": ",".join(record["legal_hosts"]),
        "businessOwner": record.get("business_owner"),
        "createTime": int(record["create_time"]),
        "updateTime": int(record["update_time"]),
        "elapseDay": int(record["elapse_day"]),
        "updateBy": record.get("update_by"),
    }


def _unknown(body: dict[str, Any]) -> None:
    extra = sorted(set(body) - set(FIELDS) - {"createTime", "updateTime", "updateBy", "tokenSign"})
    if extra:
        raise BadRequest(f"unknown field {extra[0]}", field=extra[0])


def add(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """``POST``: a new token (admins only)."""
    require_admin(principal)
    _unknown(body)
    code = _check_code(body.get("tokenName"))
    now = _millis()
    record = {
        "id": token_store.next_id(),
        "code_hash": code_hash(code),
        "code_hint": code[:4],
        "legal_users": _names(body.get("legalUsers"), "legalUsers", USERNAME_RE),
        "legal_hosts": _names(body.get("legalHosts", "*"), "legalHosts", _HOST_RE),
        "elapse_day": _elapse(body.get("elapseDay", -1)),
        "business_owner": _owner(body.get("businessOwner")),
        "create_time": now,
        "update_time": now,
        "update_by": principal.username,
    }
    token_store.put_new(record)
    return view(record)


def _token_id(raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError) as err:
        raise BadRequest("id must be a number", field="id") from err
    if value < 1:
        raise BadRequest("id must be a positive number", field="id")
    return value


def _existing(token_id: Any) -> dict[str, Any]:
    number = _token_id(token_id)
    record = token_store.by_id(number)
    if record is None:
        raise NotFound(f"no token with id {number}")
    return record


def get(principal: Principal, token_id: Any) -> dict[str, Any]:
    """``GET /{id}`` (admins only)."""
    require_admin(principal)
    return view(_existing(token_id))


def update(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """``PUT`` with ``id`` and the fields to change (admins only); a new ``tokenName`` replaces the code."""
    require_admin(principal)
    _unknown(body)
    old = _existing(body.get("id"))
    new = {**old, "update_time": _millis(), "update_by": principal.username}
    if body.get("tokenName") is not None and not str(body["tokenName"]).endswith("****"):
        code = _check_code(body["tokenName"])
        new.update(code_hash=code_hash(code), code_hint=code[:4])
    if "legalUsers" in body:
        new["legal_users"] = _names(body["legalUsers"], "legalUsers", USERNAME_RE)
    if "legalHosts" in body:
        new["legal_hosts"] = _names(body["legalHosts"], "legalHosts", _HOST_RE)
    if "elapseDay" in body:
        new["elapse_day"] = _elapse(body["elapseDay"])
    if "businessOwner" in body:
        new["business_owner"] = _owner(body["businessOwner"])
    token_store.replace(old, new)
    return view(new)


def remove(principal: Principal, token_id: Any) -> bool:
    """``DELETE /{id}`` (admins only): the token stops working at once."""
    require_admin(principal)
    return token_store.delete(_existing(token_id))


def list_page(principal: Principal, query: dict[str, str]) -> dict[str, Any]:
    """``GET ?searchName&currentPage&pageSize`` (admins only): Linkis's PageInfo shape.

    ``searchName`` matches (case-insensitively) the code's hint, the business owner or a legal user.
    """
    require_admin(principal)
    search = (query.get("searchName") or "").lower()
    try:
        page = max(1, int(query.get("currentPage") or 1))
        size = min(100, max(1, int(query.get("pageSize") or 10)))
    except ValueError as err:
        raise BadRequest("currentPage and pageSize must be numbers", field="currentPage") from err
    rows = [view(r) for r in sorted(token_store.list_all(), key=lambda r: int(r["id"]))]
    if search:
        rows = [
            r
            for r in rows
            if search in r["tokenName"].lower()
            or search in str(r["businessOwner"] or "").lower()
            or search in r["legalUsers"].lower()
        ]
    start = (page - 1) * size
    return {
        "list": rows[start : start + size],
        "total": len(rows),
        "pageNum": page,
        "pageSize": size,
        "pages": math.ceil(len(rows) / size) if rows else 0,
    }


def _usable(record: dict[str, Any] | None, token_user: str | None, source_ip: str | None) -> str:
    """Why a token may not be used by ``token_user`` from ``source_ip`` now (empty when it may)."""
    if record is None:
        return "invalid Token-Code"
    days = int(record["elapse_day"])
    if days != -1 and time.time() * 1000 > int(record["create_time"]) + days * 86_400_000:
        return "Token-Code expired"
    if not token_user or ("*" not in record["legal_users"] and token_user not in record["legal_users"]):
        return "Token-User is not allowed for this Token-Code"
    if "*" not in record["legal_hosts"] and (source_ip or "") not in record["legal_hosts"]:
        return "this address is not allowed for this Token-Code"
    return ""


def authenticate_service(token_user: str | None, code: str, source_ip: str | None) -> Principal:
    """The user a valid service token acts as; :class:`Unauthorized` for anything else."""
    record = token_store.by_code_hash(code_hash(code)) if 0 < len(code) <= MAX_CODE else None
    reason = _usable(record, token_user, source_ip)
    if reason:
        raise Unauthorized(reason)
    user = user_store.get_user(str(token_user)) if USERNAME_RE.match(str(token_user)) else None
    if user is None or user.get("disabled"):
        raise Unauthorized("Token-User is not an enabled user")
    return Principal(user_id=str(user["user_id"]), username=str(user["username"]))


def check(principal: Principal, token: str | None, check_name: str | None) -> tuple[bool, str]:
    """``GET /check?token&checkName``: whether ``check_name`` may use ``token`` (any logged-in caller,
    as in Linkis) and why not."""
    if not check_name:
        raise BadRequest("checkName is required", field="checkName")
    if not token:
        raise BadRequest("token is required", field="token")
    record = token_store.by_code_hash(code_hash(token)) if len(token) <= MAX_CODE else None
    reason = _usable(record, check_name, None)
    if reason == "this address is not allowed for this Token-Code":
        reason = ""  # the host is the caller's, not the checked user's
    return not reason, reason or "OK"
