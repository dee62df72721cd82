"""Failed-login throttling, per username and per source address.

Each failure ``ADD``s 1 to an expiring counter item (see ``store.users``); a window starts at the
first failure and lasts ``SPARKGATE_LOGIN_WINDOW_SECONDS`` (default 900). While a username has
``SPARKGATE_LOGIN_MAX_FAILURES_PER_USER`` (default 5) failures in its window, or an address has
``SPARKGATE_LOGIN_MAX_FAILURES_PER_ADDRESS`` (default 20), every login for it is refused with
:class:`TooManyRequests` (429, ``Retry-After`` = seconds left in the window) **before** the password
is hashed, so a throttled caller costs two reads and no scrypt. A successful login clears the
username's counter (not the address's: an attacker must not reset their address by logging into an
account of their own between guesses). ``0`` for a limit switches that counter off.
"""

from __future__ import annotations

import os
import time

from chalicelib.errors import TooManyRequests
from chalicelib.store import users as user_store

DEFAULT_WINDOW = 900
DEFAULT_PER_USER = 5
DEFAULT_PER_ADDRESS = 20


def _setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def limits() -> tuple[int, int, int]:
    """``(per user, per address, window seconds)`` from the environment."""
    return (
        _setting("SPARKGATE_LOGIN_MAX_FAILURES_PER_USER", DEFAULT_PER_USER),
        _setting("SPARKGATE_LOGIN_MAX_FAILURES_PER_ADDRESS", DEFAULT_PER_ADDRESS),
        max(1, _setting("SPARKGATE_LOGIN_WINDOW_SECONDS", DEFAULT_WINDOW)),
    )


def _subjects(username: str, address: str | None) -> list[tuple[str, str, int]]:
    per_user, per_address, _ = limits()
    out = []
    if per_user:
        out.append(("user", username.lower()[:128], per_user))
    if per_address and address:
        out.append(("addr", address[:64], per_address))
    return out


def check(username: str, address: str | None) -> None:
    """:class:`TooManyRequests` when the username or the address is past its limit."""
    subjects = _subjects(username, address)
    if not subjects:
        return
    counts = user_store.failure_counts([(kind, value) for kind, value, _ in subjects])
    now = int(time.time())
    for (kind, _, limit), (fails, expiration) in zip(subjects, counts, strict=True):
        if fails >= limit:
            what = "this username" if kind == "user" else "your address"
            raise TooManyRequests(
                f"too many failed logins for {what}; retry in {expiration - now} s", retry_after=expiration - now
            )


def failed(username: str, address: str | None) -> None:
    """Count one failed login for the username and the address."""
    _, _, window = limits()
    for kind, value, _ in _subjects(username, address):
        user_store.add_failure(kind, value, window)


def succeeded(username: str) -> None:
    """A successful login resets the username's counter."""
    if limits()[0]:
        user_store.clear_failures("user", username.lower()[:128])
