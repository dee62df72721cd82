"""Spark session records (``pk = SESSION#<session_id>``, ``sk = SESSION``) and their drivers' writes.

Every write is conditional on the record's ``generation``, so a driver that was replaced can no
longer touch its successor's record. While a driver is starting or running the record is in the
live index (``gsi1pk = LIVESESSIONS``) the heartbeat monitor reads; :func:`retire_session` takes it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.records import SessionFields, SessionRecord
from chalicelib.store.aws import dynamo_value, query_all, table, update_if
from chalicelib.store.errors import is_condition_failure
from chalicelib.store.item_keys import LIVE_SESSIONS_PK, session_key
from chalicelib.store.items import decode


def from_item(item: Mapping[str, Any]) -> SessionRecord:
    """A stored session item as its record: keys and index attributes dropped, Decimals decoded."""
    return cast(SessionRecord, decode(item))


def to_item(session: SessionRecord, *, live: bool = False) -> dict[str, Any]:
    """A session record as its item: its key, and with ``live`` the live index the heartbeat monitor reads."""
    item: dict[str, Any] = {**session_key(session["session_id"]), **dynamo_value(session)}
    if live:
        item.update({"gsi1pk": LIVE_SESSIONS_PK, "gsi1sk": session["session_id"]})
    return item


def get_session(session_id: str) -> SessionRecord | None:
    """The session record, or None."""
    item = table().get_item(Key=session_key(session_id), ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def put_session(session: SessionRecord, *, expected_generation: int | None, live: bool = False) -> bool:
    """Write a session record if its ``generation`` is still ``expected_generation`` (None: must not exist);
    ``live``: in the live index (a driver starting)."""
    item = to_item(session, live=live)
    kwargs: dict[str, Any] = {"Item": item}
    if expected_generation is None:
        kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        kwargs["ConditionExpression"] = "generation = :g"
        kwargs["ExpressionAttributeValues"] = {":g": expected_generation}
    try:
        table().put_item(**kwargs)
    except ClientError as err:
        if is_condition_failure(err):
            return False
        raise
    return True


def update_session_fields(session_id: str, generation: int, fields: SessionFields) -> bool:
    """Set ``fields`` on the session while it is still at ``generation`` (heartbeats, state)."""
    return update_if(session_key(session_id), {**fields}, "generation = :g", values={":g": generation}) is not None


def beat_session(session_id: str, generation: int, fields: SessionFields) -> SessionRecord | None:
    """A heartbeat: set ``fields`` while the session is at ``generation``; the item after (one request,
    so the driver also learns ``stop_requested``), or None when the session moved on."""
    got = update_if(session_key(session_id), {**fields}, "generation = :g", values={":g": generation}, return_item=True)
    return from_item(got) if got is not None else None


def retire_session(session_id: str, generation: int, fields: SessionFields) -> bool:
    """Set ``fields`` and drop the session from the live index, while it is still at ``generation``."""
    got = update_if(
        session_key(session_id), {**fields}, "generation = :g", values={":g": generation}, remove=("gsi1pk", "gsi1sk")
    )
    return got is not None


def delete_session(session_id: str) -> None:
    """Forget a session record."""
    table().delete_item(Key=session_key(session_id))


def live_sessions() -> list[SessionRecord]:
    """Every session whose driver is starting or running (for the heartbeat monitor)."""
    kwargs: dict[str, Any] = {
        "IndexName": "gsi1",
        "KeyConditionExpression": Key("gsi1pk").eq(LIVE_SESSIONS_PK),
    }
    return [from_item(i) for i in query_all(**kwargs)]
