"""Linkis gateway auth tokens (service tokens), stored hashed.

- token: ``pk = GWTOKEN#<sha256 of the code>``, ``sk = GWTOKEN``; ``gsi1 = (GWTOKENS, <id, zero-padded>)``
  for the admin list. The code itself is never stored: a request's ``Token-Code`` is hashed and
  looked up with one consistent GetItem, so a deletion or an expiry takes effect on the next request.
- id pointer: ``pk = GWTOKENID#<id>``, ``sk = GWTOKENID`` -> the hash (Linkis addresses tokens by a
  numeric id); written and removed in the same transaction as the token.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.errors import Conflict, NotFound
from chalicelib.store.aws import dynamo_value, query_all, table
from chalicelib.store.errors import is_condition_failure
from chalicelib.store.items import decode

LIST_INDEX = "GWTOKENS"


def _key(code_hash: str) -> dict[str, str]:
    return {"pk": f"GWTOKEN#{code_hash}", "sk": "GWTOKEN"}


def _id_key(token_id: int) -> dict[str, str]:
    return {"pk": f"GWTOKENID#{token_id}", "sk": "GWTOKENID"}


def next_id() -> int:
    """A fresh numeric token id (atomic counter)."""
    from chalicelib.store.counters import next_counter

    return next_counter("gateway_auth_token")


def _transact(items: list[dict[str, Any]]) -> bool:
    try:
        table().meta.client.transact_write_items(TransactItems=items)
    except ClientError as err:
        if is_condition_failure(err):
            return False
        raise
    return True


def _put_items(record: dict[str, Any]) -> list[dict[str, Any]]:
    name = table().name
    item = {
        **_key(record["code_hash"]),
        "gsi1pk": LIST_INDEX,
        "gsi1sk": f"{int(record['id']):012d}",
        **dynamo_value(record),
    }
    pointer = {**_id_key(int(record["id"])), "code_hash": record["code_hash"]}
    return [
        {"Put": {"TableName": name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": name, "Item": pointer}},
    ]


def put_new(record: dict[str, Any]) -> None:
    """Store a new token; :class:`Conflict` when a token with the same code exists."""
    if not _transact(_put_items(record)):
        raise Conflict("a token with this tokenName already exists", field="tokenName")


def by_code_hash(code_hash: str) -> dict[str, Any] | None:
    """The token whose code hashes to ``code_hash`` (consistent read), or None."""
    item = table().get_item(Key=_key(code_hash), ConsistentRead=True).get("Item")
    return decode(item) if item else None


def by_id(token_id: int) -> dict[str, Any] | None:
    """The token with numeric id ``token_id``, or None."""
    pointer = table().get_item(Key=_id_key(token_id), ConsistentRead=True).get("Item")
    return by_code_hash(str(pointer["code_hash"])) if pointer else None


def list_all() -> list[dict[str, Any]]:
    """Every token, by id."""
    items = query_all(IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq(LIST_INDEX))
    return [decode(item) for item in items if item.get("sk") == "GWTOKEN"]


def replace(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Replace token ``old`` by ``new`` (same id; the code may change) in one transaction."""
    name = table().name
    delete = {
        "Delete": {
            "TableName": name,
            "Key": _key(old["code_hash"]),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    if new["code_hash"] == old["code_hash"]:
        item = {
            **_key(new["code_hash"]),
            "gsi1pk": LIST_INDEX,
            "gsi1sk": f"{int(new['id']):012d}",
            **dynamo_value(new),
        }
        items = [{"Put": {"TableName": name, "Item": item, "ConditionExpression": "attribute_exists(pk)"}}]
    else:
        items = [delete, *_put_items(new)]
    if not _transact(items):
        if by_id(int(old["id"])) is None:
            raise NotFound(f"no token with id {old['id']}")
        raise Conflict("a token with this tokenName already exists", field="tokenName")


def delete(record: dict[str, Any]) -> bool:
    """Delete a token and its id pointer; False when it was gone already."""
    name = table().name
    return _transact(
        [
            {
                "Delete": {
                    "TableName": name,
                    "Key": _key(record["code_hash"]),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {"Delete": {"TableName": name, "Key": _id_key(int(record["id"]))}},
        ]
    )
