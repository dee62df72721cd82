"""Geo scopes, their Spark sessions and their table catalog (spec 004), in the single table.

Items, all under one partition per scope so a scope is read and deleted with one query:

- scope:    ``pk = SCOPE#<user_id>#<scope>``, ``sk = SCOPE``  (``catalog_seq`` counts catalog entries)
- session:  ``pk = SCOPE#<user_id>#<scope>``, ``sk = SESSION#<session>``  (name, engine ``session_id``, config)
- catalog:  ``pk = SCOPE#<user_id>#<scope>``, ``sk = TABLE#<seq:09d>``  (one /loadfile or /createtable
  definition, in the order they were made, so a new driver can replay them)

Scope and session creation are conditional puts: a scope name exists once per user, a session name
once per scope.
"""

from __future__ import annotations

import json
from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.store.aws import put_new, query_all, table
from chalicelib.store.items import decode


def scope_pk(user_id: str, scope: str) -> str:
    """The partition key holding one user's scope."""
    return f"SCOPE#{user_id}#{scope}"


def create_scope(user_id: str, scope: str, created_at: str) -> bool:
    """Store a new scope; False when the user already has one by that name."""
    item = {"pk": scope_pk(user_id, scope), "sk": "SCOPE", "user_id": user_id, "scope": scope}
    return put_new({**item, "created_at": created_at, "catalog_seq": 0})


def get_scope(user_id: str, scope: str) -> dict[str, Any] | None:
    """The scope record, or None."""
    item = table().get_item(Key={"pk": scope_pk(user_id, scope), "sk": "SCOPE"}, ConsistentRead=True).get("Item")
    return decode(item) if item else None


def create_session(user_id: str, scope: str, record: dict[str, Any]) -> bool:
    """Store a session record (``record["session"]`` is its name); False when the name is taken."""
    item = {"pk": scope_pk(user_id, scope), "sk": f"SESSION#{record['session']}", **record}
    return put_new(item)


def get_session(user_id: str, scope: str, session: str) -> dict[str, Any] | None:
    """One session record of a scope, or None."""
    key = {"pk": scope_pk(user_id, scope), "sk": f"SESSION#{session}"}
    item = table().get_item(Key=key, ConsistentRead=True).get("Item")
    return decode(item) if item else None


def _items(user_id: str, scope: str, prefix: str | None = None) -> list[dict[str, Any]]:
    condition: Any = Key("pk").eq(scope_pk(user_id, scope))
    if prefix:
        condition = condition & Key("sk").begins_with(prefix)
    kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
    return query_all(**kwargs)


def list_sessions(user_id: str, scope: str) -> list[dict[str, Any]]:
    """Every session record of a scope."""
    return [decode(i) for i in _items(user_id, scope, "SESSION#")]


def append_catalog(user_id: str, scope: str, session: str, definition: dict[str, Any]) -> int:
    """Record one table definition at the end of the scope's catalog; answers its sequence number."""
    got = table().update_item(
        Key={"pk": scope_pk(user_id, scope), "sk": "SCOPE"},
        UpdateExpression="ADD catalog_seq :one",
        ConditionExpression="attribute_exists(pk)",
        ExpressionAttributeValues={":one": 1},
        ReturnValues="UPDATED_NEW",
    )
    seq = int(got["Attributes"]["catalog_seq"])
    table().put_item(
        Item={
            "pk": scope_pk(user_id, scope),
            "sk": f"TABLE#{seq:09d}",
            "session": session,
            "seq": seq,
            "definition": json.dumps(definition),  # kept verbatim (floats, nested options)
        }
    )
    return seq


def catalog(user_id: str, scope: str, session: str) -> list[dict[str, Any]]:
    """The session's table definitions, oldest first."""
    items = _items(user_id, scope, "TABLE#")
    return [json.loads(str(i["definition"])) for i in items if i.get("session") == session]


def delete_scope(user_id: str, scope: str) -> int:
    """Delete the scope with its sessions and catalog; answers how many items went."""
    items = _items(user_id, scope)
    with table().batch_writer() as batch:
        for item in items:
            batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
    return len(items)
