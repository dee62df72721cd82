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


def kernel_uid(user_id: str, base: int) -> int:
    """The numeric uid this user's kernels run under: ``base`` + a number taken once from an
    atomic counter and kept (put-if-absent) in ``KERNELUID#<user_id>``, so no two users share one."""
    from chalicelib.store.jobs import next_counter

    key = {"pk": f"KERNELUID#{user_id}", "sk": "KERNELUID"}
    for _ in range(3):
        item = table().get_item(Key=key, ConsistentRead=True).get("Item")
        if item:
            return int(item["uid"])
        put_new({**key, "user_id": user_id, "uid": base + next_counter("kernel_uid")})
    raise RuntimeError(f"no kernel uid for user {user_id}")
