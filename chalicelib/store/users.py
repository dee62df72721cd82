"""User records: ``pk = USER#<username>``, ``sk = USER``."""

from __future__ import annotations

from typing import Any

from chalicelib.errors import Conflict
from chalicelib.store.aws import put_new, table


def _key(username: str) -> dict[str, str]:
    return {"pk": f"USER#{username}", "sk": "USER"}


def get_user(username: str) -> dict[str, Any] | None:
    """The stored user record, or None."""
    item: dict[str, Any] | None = table().get_item(Key=_key(username), ConsistentRead=True).get("Item")
    return item


def put_new_user(record: dict[str, Any]) -> None:
    """Store a new user; :class:`Conflict` when the username is taken."""
    if not put_new({**_key(record["username"]), **record}):
        raise Conflict(f"user {record['username']!r} already exists", field="username")
