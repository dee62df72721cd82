"""Warm-pool entries: pre-started drivers waiting to be claimed by a new session.

Item: ``pk = POOL#<pool_id>``, ``sk = POOL``; while starting or ready also in the index
``gsi1 = (POOL, <pool_id>)`` so the refill can count them. Every move is a conditional write on
``state`` (``starting -> ready -> claimed``, any of them ``-> retired``), so one entry is claimed
by at most one session, and never after it was retired.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.store.aws import put_new, query_all, table, update_if
from chalicelib.store.items import decode

POOL_PK = "POOL"


def _key(pool_id: str) -> dict[str, str]:
    return {"pk": f"POOL#{pool_id}", "sk": "POOL"}


def insert(entry: dict[str, Any]) -> bool:
    """Store a new entry (put-if-absent), listed in the pool index."""
    return put_new({**_key(entry["pool_id"]), **entry, "gsi1pk": POOL_PK, "gsi1sk": entry["pool_id"]})


def get(pool_id: str) -> dict[str, Any] | None:
    """The entry, or None."""
    item = table().get_item(Key=_key(pool_id), ConsistentRead=True).get("Item")
    return decode(item) if item else None


def listed() -> list[dict[str, Any]]:
    """Every entry still starting or ready (the index holds only those)."""
    return [decode(i) for i in query_all(IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq(POOL_PK))]


def move(pool_id: str, from_states: tuple[str, ...], fields: dict[str, Any]) -> dict[str, Any] | None:
    """Set ``fields`` while the entry's state is one of ``from_states``; the entry after, or None.

    A move to ``claimed`` or ``retired`` also drops the entry from the pool index.
    """
    values = {f":s{i}": s for i, s in enumerate(from_states)}
    condition = f"#state IN ({', '.join(values)})"
    remove = ("gsi1pk", "gsi1sk") if fields.get("state") in ("claimed", "retired") else ()
    got = update_if(
        _key(pool_id), fields, condition, names={"#state": "state"}, values=values, remove=remove, return_item=True
    )
    return decode(got) if got is not None else None
