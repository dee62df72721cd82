"""Atomic counters (``pk = COUNTER#<name>``, ``sk = COUNTER``, ``value``): task ids, token ids, kernel uids."""

from __future__ import annotations

from chalicelib.store.aws import table
from chalicelib.store.item_keys import counter_key


def next_counter(name: str) -> int:
    """Atomically increment and return counter ``name`` (starts at 1)."""
    got = table().update_item(
        Key=counter_key(name),
        UpdateExpression="ADD #v :one",
        ExpressionAttributeNames={"#v": "value"},
        ExpressionAttributeValues={":one": 1},
        ReturnValues="UPDATED_NEW",
    )
    return int(got["Attributes"]["value"])
