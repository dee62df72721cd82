"""Small, tested patches that make moto's DynamoDB keep the properties the product relies on.

- :func:`transact_write_items`: moto 5 backs a transaction up by deep-copying every table it
  touches and undoes a cancelled one by *replacing* the table object with that copy. That costs
  time and memory in proportion to the whole table (and its stream history) on every transaction,
  and after a cancelled one the table's stream is a different object: a reader holding a shard
  iterator (the stream pump) reads the old, dead stream forever. This version saves only the items
  the transaction touches and the stream's length, and undoes a cancellation in place: the table
  object, and its stream, never change.
- :func:`trim_stream`: DynamoDB keeps 24 hours of stream records; moto keeps them forever. It
  drops records older than a sequence number (those a reader consumed) or than 24 hours, keeping
  sequence numbers as they were. A shard iterator pointing before the trimmed range reads from the
  oldest record left (DynamoDB would answer ``TrimmedDataAccessException``).
- :func:`_serialize_type_structure`: moto's JSON response serializer walks every member of the
  ``AttributeValue`` shape (ten of them, each looked up under several spellings) for every
  attribute of every item it answers; that was more than half of a ``GetItem``'s time in the
  embedded AWS. An attribute moto already holds in DynamoDB's wire form (``{"S": ...}``,
  ``{"N": ...}``, ``BOOL``, ``NULL``, string sets, and ``M``/``L`` of those) is written as it
  is, a copy; anything else (binary, which the serializer base64-encodes) takes moto's own path.
  The answer's bytes are the same (``tests/functional/test_moto_fixes.py`` compares them).
- :func:`_method_names`: moto looks up the action's method by listing every function of the
  handler class (``inspect.getmembers``) on every request, about a tenth of an in-process
  ``GetItem``; a class's functions do not change while the server runs, so the list is kept per class.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from typing import Any

import moto.core.responses as moto_responses
from moto.core.serialize import BaseJSONSerializer
from moto.core.utils import method_names_from_class
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import StreamShard, Table

#: DynamoDB Streams' retention
STREAM_RETENTION = dt.timedelta(hours=24)

_Slot = tuple[str, DynamoType, DynamoType | None]


def _key_of(table: Table, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type == "Put":
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
        return key
    given: dict[str, Any] = op["Key"]
    return given


def _peek(table: Table, hash_value: DynamoType, range_value: DynamoType | None) -> Item | None:
    """The stored item at a key, without creating an empty partition on the way."""
    if range_value is None:
        found: Item | None = table.items.get(hash_value)
        return found
    partition = table.items.get(hash_value)
    return partition.get(range_value) if partition else None


def _restore(table: Table, hash_value: DynamoType, range_value: DynamoType | None, item: Item | None) -> None:
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
        return
    partition = table.items.get(hash_value)
    if item is None:
        if partition is not None:
            partition.pop(range_value, None)
            if not partition:
                table.items.pop(hash_value, None)
        return
    if partition is None:
        partition = table.items[hash_value] = {}
    partition[range_value] = item


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``transact_write_items`` with a rollback that saves only the touched items."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    saved: dict[_Slot, Item | None] = {}
    stream_lengths: dict[str, int] = {}
    target_items: set[tuple[str, str]] = set()

    def rollback() -> None:
        for (table_name, hash_value, range_value), item in saved.items():
            _restore(self.tables[table_name], hash_value, range_value, item)
        for table_name, length in stream_lengths.items():
            shard = self.tables[table_name].stream_shard
            if shard is not None:
                del shard.items[length:]

    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            rollback()
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            table = self.get_table(table_name)
            if table_name not in stream_lengths:
                stream_lengths[table_name] = len(table.stream_shard.items) if table.stream_shard else 0
            key = _key_of(table, op_type, op)
            unique = (str(table_name), str(dict(sorted(key.items()))))
            if unique in target_items:
                raise MultipleTransactionsException()
            target_items.add(unique)
            hash_value, range_value = self.get_keys_value(table, key)
            slot: _Slot = (table_name, hash_value, range_value)
            current = _peek(table, hash_value, range_value)
            if slot not in saved:
                saved[slot] = copy.deepcopy(current)  # one item, not the table

            condition_expression = op.get("ConditionExpression")
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if condition_expression is not None:
                condition_op = get_filter_expression(condition_expression, names, values)
                if not condition_op.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=names,  # type: ignore[arg-type]
                    expression_attribute_values=values,  # type: ignore[arg-type]
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as err:
            errors.append(("ConditionalCheckFailed", str(err.message), original_item))
        except Exception as err:  # moto's own behaviour: report the cause per item
            errors.append((type(err).__name__, str(err), original_item))
    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)


def _shard_get(self: StreamShard, start: int, quantity: int) -> list[dict[str, Any]]:
    """``StreamShard.get`` reading from the oldest record kept when ``start`` was trimmed away."""
    offset = max(0, start - self.starting_sequence_number)
    return [record.to_json() for record in self.items[offset : offset + quantity]]


def wire_attribute(value: Any) -> dict[str, Any] | None:
    """A copy of ``value`` when it is an ``AttributeValue`` in DynamoDB's JSON form without binary, else None."""
    if type(value) is not dict or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return {kind: inner} if type(inner) is str else None
    if kind in ("BOOL", "NULL"):
        return {kind: inner} if type(inner) is bool else None
    if kind in ("SS", "NS"):
        return {kind: list(inner)} if type(inner) is list and all(type(x) is str for x in inner) else None
    if kind == "M" and type(inner) is dict:
        members: dict[str, Any] = {}
        for name, member in inner.items():
            wired = wire_attribute(member)
            if wired is None or type(name) is not str:
                return None
            members[name] = wired
        return {"M": members}
    if kind == "L" and type(inner) is list:
        elements = []
        for element in inner:
            wired = wire_attribute(element)
            if wired is None:
                return None
            elements.append(wired)
        return {"L": elements}
    return None


_moto_serialize_structure = BaseJSONSerializer._serialize_type_structure


def _serialize_type_structure(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
    if key and shape.name == "AttributeValue":
        wired = wire_attribute(value)
        if wired is not None:
            self._default_serialize(serialized, wired, shape, key)
            return
    _moto_serialize_structure(self, serialized, value, shape, key)


@functools.cache
def _method_names(clazz: type) -> list[str]:
    names: list[str] = method_names_from_class(clazz)
    return names


def install() -> None:
    """Patch moto (idempotent)."""
    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]
    moto_responses.method_names_from_class = _method_names  # type: ignore[assignment]
    if getattr(DynamoDBBackend.transact_write_items, "_sparkgate", False):
        return
    transact_write_items._sparkgate = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    StreamShard.get = _shard_get  # type: ignore[method-assign]


def uninstall_serializer() -> None:
    """moto's own ``AttributeValue`` serialization again (tests compare the two)."""
    BaseJSONSerializer._serialize_type_structure = _moto_serialize_structure  # type: ignore[method-assign]


def tables(table_name: str) -> list[Table]:
    """Every in-process moto table named ``table_name`` (one per account and region)."""
    found = []
    for account in dynamodb_backends.values():
        for backend in account.values():
            table = backend.tables.get(table_name)
            if table is not None:
                found.append(table)
    return found


def trim_stream(table: Table, before_sequence: int | None = None, *, now: dt.datetime | None = None) -> int:
    """Drop ``table``'s stream records numbered below ``before_sequence`` or older than 24 h; answers how many.

    Sequence numbers of the records kept do not change (the shard's starting number moves up).
    Call it under the DynamoDB lock.
    """
    shard = table.stream_shard
    if shard is None or not shard.items:
        return 0
    cut = 0
    if before_sequence is not None:
        cut = max(0, min(len(shard.items), before_sequence - shard.starting_sequence_number))
    oldest = (now or dt.datetime.now(dt.UTC)) - STREAM_RETENTION
    while cut < len(shard.items) and _created(shard.items[cut]) < oldest:
        cut += 1
    if cut:
        del shard.items[:cut]
        shard.starting_sequence_number += cut
    return cut


def _created(record: Any) -> dt.datetime:
    created = record.record["dynamodb"].get("ApproximateCreationDateTime")
    if not isinstance(created, dt.datetime):
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    return created if created.tzinfo else created.replace(tzinfo=dt.UTC)
