"""JWT issue and verification (HS512, ``kid`` header for key rotation) and revocation.

Every token carries ``sub`` (user id), ``name`` (username), ``iat``, ``exp``, ``jti`` (a random id of
this token) and ``ver`` (the user's ``token_version`` when it was issued). :func:`verify_token`
checks the signature, then that the user still exists with that id, is not disabled, still has
that token version and that the ``jti`` is not revoked. The two facts are read with one consistent
BatchGetItem and kept per process (one Lambda container) for ``SPARKGATE_AUTH_CACHE_SECONDS``
(default 10 s): a revocation made in another container takes effect there within that window; one
made in this container (logout, a user change) drops the local entries at once.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from chalicelib.config import settings
from chalicelib.errors import Unauthorized
from chalicelib.store.keys import load_signing_keys

ALGORITHM = "HS512"
DEFAULT_CACHE_SECONDS = 10.0
_CACHE_MAX = 4096


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    username: str


def _secret(value: str) -> bytes:
    return bytes.fromhex(value) if all(c in "0123456789abcdef" for c in value.lower()) else value.encode()


def cache_seconds() -> float:
    """How long a container trusts what it read about a user and a token id (``SPARKGATE_AUTH_CACHE_SECONDS``)."""
    raw = os.environ.get("SPARKGATE_AUTH_CACHE_SECONDS", "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_CACHE_SECONDS
    except ValueError:
        return DEFAULT_CACHE_SECONDS


def issue_token(principal: Principal, token_version: int = 0) -> tuple[str, int]:
    """A signed token for ``principal`` (at the user's current ``token_version``) and its lifetime in seconds."""
    cfg = settings()
    doc = load_signing_keys(cfg)
    kid = doc["current"]
    now = int(time.time())
    claims = {
        "sub": principal.user_id,
        "name": principal.username,
        "iat": now,
        "exp": now + cfg.token_ttl_seconds,
        "jti": secrets.token_hex(16),
        "ver": int(token_version),
    }
    token = jwt.encode(claims, _secret(doc["keys"][kid]), algorithm=ALGORITHM, headers={"kid": kid})
    return token, cfg.token_ttl_seconds


def decode_token(token: str) -> dict[str, Any]:
    """The claims of a token whose signature, algorithm, key id and lifetime are valid (no revocation
    check: see :func:`verify_token`); :class:`Unauthorized` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
        keys = load_signing_keys(settings())["keys"]
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or kid not in keys:
            raise Unauthorized("invalid token")
        claims: dict[str, Any] = jwt.decode(
            token,
            _secret(keys[kid]),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise Unauthorized("token expired") from err
    except jwt.PyJWTError as err:
        raise Unauthorized("invalid token") from err
    return claims


# ---- revocation state, cached per container ---------------------------------------------------

_LOCK = threading.Lock()
#: (username, jti) -> (monotonic time read, user record or None, jti revoked)
_STATE: dict[tuple[str, str], tuple[float, dict[str, Any] | None, bool]] = {}


def _state(username: str, jti: str) -> tuple[dict[str, Any] | None, bool]:
    from chalicelib.store.users import identity_state

    key = (username, jti)
    now = time.monotonic()
    window = cache_seconds()
    with _LOCK:
        hit = _STATE.get(key)
    if hit is not None and now - hit[0] < window:
        return hit[1], hit[2]
    record, revoked = identity_state(username, jti or None)
    if window > 0:
        with _LOCK:
            if len(_STATE) >= _CACHE_MAX:
                _STATE.clear()
            _STATE[key] = (now, record, revoked)
    return record, revoked


def forget_user(username: str) -> None:
    """Drop this container's cached state of ``username`` (after a change to the user)."""
    with _LOCK:
        for key in [k for k in _STATE if k[0] == username]:
            del _STATE[key]


def forget_cached_state() -> None:
    """Drop every cached identity fact (tests)."""
    with _LOCK:
        _STATE.clear()


def verify_token(token: str) -> Principal:
    """The principal of a valid, unrevoked token of an existing, enabled user; :class:`Unauthorized` else."""
    return principal_of(decode_token(token))


def principal_of(claims: dict[str, Any]) -> Principal:
    """The principal of a token's verified ``claims`` while the token is not revoked (a WebSocket checks the
    claims it connected with on every frame); :class:`Unauthorized` else."""
    username, user_id = str(claims.get("name", "")), str(claims["sub"])
    jti = str(claims.get("jti") or "")
    record, revoked = _state(username, jti)
    if (
        record is None
        or record.get("user_id") != user_id
        or record.get("disabled")
        or int(record.get("token_version", 0)) != int(claims.get("ver", 0))
        or revoked
    ):
        raise Unauthorized("token revoked: log in again")
    return Principal(user_id=user_id, username=username)


def revoke_token(token: str) -> bool:
    """Revoke one token (logout): its ``jti`` is denied until its own ``exp``. False when the token
    was not valid anyway (nothing to revoke)."""
    from chalicelib.store.users import revoke_token_id

    try:
        claims = decode_token(token)
    except Unauthorized:
        return False
    jti = str(claims.get("jti") or "")
    if not jti:
        return False
    revoke_token_id(jti, int(claims["exp"]))
    with _LOCK:
        for key in [k for k in _STATE if k[1] == jti]:
            del _STATE[key]
    return True


def token_from_headers(headers: dict[str, str], cookie_name: str | None = None) -> str | None:
    """The raw token from ``Authorization: Token|Bearer <jwt>`` or, failing that, a cookie."""
    auth = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    if cookie_name:
        for part in (headers.get("cookie") or headers.get("Cookie") or "").split(";"):
            name, _, val = part.strip().partition("=")
            if name == cookie_name and val:
                return val
    return None


#: The WebSocket subprotocol a browser offers with its token (``Sec-WebSocket-Protocol: sparkgate, token.<jwt>``).
WS_SUBPROTOCOL = "sparkgate"
_WS_TOKEN_PREFIX = "token."


def subprotocol_token(header: str | None) -> tuple[str | None, str | None]:
    """``(token, protocol to select)`` from a ``Sec-WebSocket-Protocol`` offer: the JWT of a
    ``token.<jwt>`` entry, and ``sparkgate`` when it was offered (never the token itself)."""
    offered = [part.strip() for part in (header or "").split(",") if part.strip()]
    token = next((p[len(_WS_TOKEN_PREFIX) :] for p in offered if p.startswith(_WS_TOKEN_PREFIX)), None)
    return token or None, (WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
