"""JWT issue and verification (HS512, ``kid`` header for key rotation)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from chalicelib.config import settings
from chalicelib.errors import Unauthorized
from chalicelib.store.keys import load_signing_keys

ALGORITHM = "HS512"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    username: str


def _secret(value: str) -> bytes:
    return bytes.fromhex(value) if all(c in "0123456789abcdef" for c in value.lower()) else value.encode()


def issue_token(principal: Principal) -> tuple[str, int]:
    """A signed token for ``principal`` and its lifetime in seconds."""
    cfg = settings()
    doc = load_signing_keys(cfg)
    kid = doc["current"]
    now = int(time.time())
    claims = {
        "sub": principal.user_id,
        "name": principal.username,
        "iat": now,
        "exp": now + cfg.token_ttl_seconds,
    }
    token = jwt.encode(claims, _secret(doc["keys"][kid]), algorithm=ALGORITHM, headers={"kid": kid})
    return token, cfg.token_ttl_seconds


def verify_token(token: str) -> Principal:
    """The principal of a valid token; :class:`Unauthorized` for anything else."""
    try:
        header = jwt.get_unverified_header(token)
        keys = load_signing_keys(settings())["keys"]
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or kid not in keys:
            raise Unauthorized("invalid token")
        claims = jwt.decode(
            token,
            _secret(keys[kid]),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise Unauthorized("token expired") from err
    except jwt.PyJWTError as err:
        raise Unauthorized("invalid token") from err
    return Principal(user_id=str(claims["sub"]), username=str(claims.get("name", "")))


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
