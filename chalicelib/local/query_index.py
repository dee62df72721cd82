"""Key indexes for the embedded AWS's DynamoDB queries: a Query reads its key's items, not the table.

moto answers every Query, on a global secondary index and on the table itself alike, by sorting and
walking *all* the table's items (``Table.all_items``): a driver's queue poll took 9 ms on a table of
200 items and 36 ms on one of 1,000, and the local stack's table only grows (Jobs, log chunks,
sessions). Here each table keeps, per global secondary index, the keys of the items under each
index hash value. It is kept current from the requests themselves: after every write request (under
the one DynamoDB lock of :func:`chalicelib.local.aws.serialize_dynamodb`) the items at the keys that
request names are looked at again (PutItem, UpdateItem, DeleteItem, BatchWriteItem,
TransactWriteItems, whether they succeeded, failed a condition or rolled back); any other write
request (PartiQL, table changes) makes every index be rebuilt at its next use.

A Query then runs moto's own ``Table.query`` on those candidates only (a base-table Query on its
one partition): the same key and filter checks, sort, paging, projection and answer as before,
because the candidates are a superset of the items moto's walk would have kept. A Query this module
cannot narrow (no hash condition it recognises) walks the whole table, as moto does.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

#: (hash value, range value or None): where an item lives in ``Table.items``
Key = tuple[DynamoType, DynamoType | None]
#: write actions whose keys the request names (every other write rebuilds the indexes)
FOLLOWED_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_READS = frozenset(
    {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables", "DescribeLimits"}
)
_GENERATION = [0]  # bumped by a write this module cannot follow: every index is stale
_ATTRIBUTE = "_sparkgate_query_index"


class TableIndex:
    """Per global secondary index of one table: index hash value -> keys of the items holding it."""

    def __init__(self, table: Table) -> None:
        self.generation = _GENERATION[0]
        self.hash_attributes = {
            index.name: tuple(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
            for index in table.global_indexes or []
        }
        self.buckets: dict[str, dict[tuple[DynamoType, ...], dict[Key, None]]] = {n: {} for n in self.hash_attributes}
        self.placed: dict[Key, dict[str, tuple[DynamoType, ...]]] = {}
        for key, item in _stored(table):
            self.refresh(key, item)

    def refresh(self, key: Key, item: Item | None) -> None:
        """File the item now at ``key`` (None: gone) under its index hash values."""
        for name, value in self.placed.pop(key, {}).items():
            bucket = self.buckets[name][value]
            bucket.pop(key, None)
            if not bucket:
                del self.buckets[name][value]
        if item is None:
            return
        placed: dict[str, tuple[DynamoType, ...]] = {}
        for name, attributes in self.hash_attributes.items():
            value = tuple(item.attrs.get(a) for a in attributes)
            if attributes and all(v is not None for v in value):
                placed[name] = value  # type: ignore[assignment]
                self.buckets[name].setdefault(value, {})[key] = None  # type: ignore[arg-type]
        if placed:
            self.placed[key] = placed

    def keys(self, index_name: str, conditions: list[tuple[str, DynamoType]]) -> Iterable[Key] | None:
        """Keys of every item the hash ``conditions`` can match on ``index_name``; None: not narrowable."""
        attributes = self.hash_attributes.get(index_name)
        given = dict(conditions)
        if not attributes or len(given) != len(conditions) or set(given) != set(attributes):
            return None
        return list(self.buckets[index_name].get(tuple(given[a] for a in attributes), {}))


def _stored(table: Table) -> Iterable[tuple[Key, Item]]:
    for hash_value, stored in table.items.items():
        if table.range_key_attr is None:
            yield (hash_value, None), stored
        else:
            for range_value, item in stored.items():
                yield (hash_value, range_value), item


def _peek(table: Table, key: Key) -> Item | None:
    """The item at ``key``, without creating an empty partition (``Table.items`` is a defaultdict)."""
    stored = table.items.get(key[0])
    if stored is None or table.range_key_attr is None:
        return stored  # type: ignore[no-any-return]
    found: Item | None = stored.get(key[1])
    return found


def _index(table: Table, build: bool) -> TableIndex | None:
    index: TableIndex | None = getattr(table, _ATTRIBUTE, None)
    if index is not None and index.generation == _GENERATION[0]:
        return index
    if not build:
        return None
    index = TableIndex(table)
    setattr(table, _ATTRIBUTE, index)
    return index


def _candidates(table: Table, bound: inspect.BoundArguments) -> list[Item] | None:
    """The items a Query must look at (a superset of those it answers); None: all of them."""
    arguments = bound.arguments
    index_name = arguments.get("index_name")
    if not index_name:
        hash_key = arguments.get("hash_key")
        if not isinstance(hash_key, DynamoType):
            return None
        stored = table.items.get(hash_key)
        if stored is None:
            return []
        return [stored] if table.range_key_attr is None else list(stored.values())
    if not any(index.name == index_name for index in table.global_indexes or []):
        return None  # a local index (or an unknown name, which moto refuses itself)
    index = _index(table, build=True)
    assert index is not None
    keys = index.keys(index_name, list(arguments.get("hash_key_conditions") or []))
    if keys is None:
        return None
    return [item for item in (_peek(table, key) for key in keys) if item is not None]


def _key(table: Table, attributes: dict[str, Any]) -> Key:
    range_attr = table.range_key_attr
    hash_value = DynamoType(attributes[table.hash_key_attr])
    return hash_value, (DynamoType(attributes[range_attr]) if range_attr is not None else None)


def _written(body: dict[str, Any], action: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """(table name, key or whole item) of every item a write request names."""
    if action in ("PutItem", "UpdateItem", "DeleteItem"):
        yield body["TableName"], body["Item"] if action == "PutItem" else body["Key"]
    elif action == "BatchWriteItem":
        for name, requests in body["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    yield name, request["PutRequest"]["Item"]
                else:
                    yield name, request["DeleteRequest"]["Key"]
    else:  # TransactWriteItems
        for operation in body["TransactItems"]:
            for kind in ("Put", "Update", "Delete", "ConditionCheck"):
                if kind in operation:
                    op = operation[kind]
                    yield op["TableName"], op["Item"] if kind == "Put" else op["Key"]


def after_request(action: str, raw_body: Any, tables: Callable[[str], Table | None]) -> None:
    """Bring the indexes up to date after request ``action`` (``tables(name)``: the request's table)."""
    if action in _READS:
        return
    if action not in FOLLOWED_WRITES:
        _GENERATION[0] += 1
        return
    try:
        body = json.loads(raw_body) if isinstance(raw_body, str | bytes) else dict(raw_body)
        for name, attributes in _written(body, action):
            table = tables(name)
            index = _index(table, build=False) if table is not None else None
            if table is not None and index is not None:
                key = _key(table, attributes)
                index.refresh(key, _peek(table, key))
    except (KeyError, TypeError, ValueError, AttributeError):  # a request moto refused: trust nothing
        _GENERATION[0] += 1


def install() -> None:
    """Narrow moto's ``Table.query`` to the candidates (idempotent). The caller must also run
    :func:`after_request` after every DynamoDB request, under the lock every request holds."""
    original = Table.query
    if getattr(original, "_sparkgate_indexed", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        candidates = _candidates(self, signature.bind(self, *args, **kwargs))
        if candidates is None:
            return original(self, *args, **kwargs)
        self.all_items = lambda: candidates  # type: ignore[method-assign]
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    query._sparkgate_indexed = True  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]
