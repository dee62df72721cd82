"""Work records and the per-user name claims that keep names unique.

- work:  ``pk = WORK#<work_id>``, ``sk = WORK``; ``gsi1`` = (``USERWORKS#<user_id>``, creation order)
- claim: ``pk = WORKNAME#<user_id>#<name>``, ``sk = WORKNAME`` (exists while a live work has that name)
- a live work with a ``run_frequency`` also carries ``gsi2`` = (``SCHEDULED#<run_frequency>``, ``<work_id>``),
  so the schedule tick queries due works per frequency instead of scanning (see ``work_schedule``)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.errors import Conflict, NotFound, StateConflict, VersionConflict
from chalicelib.records import WorkRecord
from chalicelib.store.aws import client, query_all, table, to_dynamo
from chalicelib.store.errors import cancelled_indexes, is_condition_failure
from chalicelib.store.item_keys import scheduled_pk, user_works_pk, work_key, work_name_key
from chalicelib.store.items import decode


def _schedule_index(item: Mapping[str, Any]) -> dict[str, Any]:
    """``item`` with its ``gsi2`` schedule projection set (live, has a frequency) or removed."""
    out = {k: v for k, v in item.items() if k not in ("gsi2pk", "gsi2sk")}
    if out.get("run_frequency") and not out.get("deleted_at"):
        out["gsi2pk"] = scheduled_pk(out["run_frequency"])
        out["gsi2sk"] = str(out["work_id"])
    return out


def from_item(item: Mapping[str, Any]) -> WorkRecord:
    """A stored work item as its record: keys and index attributes dropped, Decimals decoded."""
    return cast(WorkRecord, decode(item))


def to_item(work: WorkRecord, order_key: str) -> dict[str, Any]:
    """A new work's item: its key, its place among its user's works (``order_key``), the schedule index."""
    return _schedule_index(
        {**work_key(work["work_id"]), "gsi1pk": user_works_pk(work["user_id"]), "gsi1sk": order_key, **work}
    )


def _claim_key(user_id: str, name: str | None) -> dict[str, str]:
    return work_name_key(user_id, str(name))


def _transact(items: list[dict[str, Any]], name: str, version_index: int | None) -> None:
    try:
        client("dynamodb").transact_write_items(TransactItems=items)
    except ClientError as err:
        if not is_condition_failure(err):
            raise
        failed = cancelled_indexes(err)
        if version_index is not None and version_index in failed:
            raise VersionConflict("the work was changed by someone else; reload it and retry") from err
        raise Conflict(f"a work named {name!r} already exists", field="name") from err


def insert_work(work: WorkRecord, order_key: str) -> None:
    """Store a new work and claim its name; :class:`Conflict` when the name is taken."""
    tname = table().name
    item = to_item(work, order_key)
    claim = {**_claim_key(work["user_id"], work["name"]), "work_id": work["work_id"]}
    _transact(
        [
            {"Put": {"TableName": tname, "Item": to_dynamo(claim), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": tname, "Item": to_dynamo(item), "ConditionExpression": "attribute_not_exists(pk)"}},
        ],
        work["name"],
        None,
    )


def get_work(work_id: str) -> WorkRecord | None:
    """The stored work (deleted ones included), or None."""
    item = table().get_item(Key=work_key(work_id), ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def replace_work(
    work: WorkRecord,
    expected_version: int,
    old_name: str,
    *,
    release_name: bool = False,
    forbid_active: bool = False,
) -> None:
    """Write ``work`` over the stored one only if the stored version is ``expected_version``.

    A renamed work moves its name claim in the same transaction; ``release_name`` frees the
    name (soft delete); ``forbid_active`` refuses the write while a task of the work is active.
    """
    tname = table().name
    current = table().get_item(Key=work_key(work["work_id"]), ConsistentRead=True).get("Item")
    if current is None:
        raise NotFound("work not found")
    item = _schedule_index({**current, **work})
    # active_task_id is owned by the task writers (store.tasks): keep the stored value and make the
    # Put conditional on it, so a task claimed or released meanwhile is never overwritten.
    item.pop("active_task_id", None)
    values: dict[str, Any] = {":v": expected_version}
    if current.get("active_task_id"):
        item["active_task_id"] = current["active_task_id"]
        active_cond = " AND attribute_not_exists(active_task_id)" if forbid_active else " AND active_task_id = :a"
        values[":a"] = current["active_task_id"]
        if forbid_active:
            values.pop(":a")
    else:
        active_cond = " AND attribute_not_exists(active_task_id)"
    ops: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": tname,
                "Item": to_dynamo(item),
                "ConditionExpression": "#v = :v" + active_cond,
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": to_dynamo(values),
            }
        }
    ]
    renamed = work["name"] != old_name
    if renamed or release_name:
        ops.append({"Delete": {"TableName": tname, "Key": to_dynamo(_claim_key(work["user_id"], old_name))}})
    if renamed and not release_name:
        claim = {**_claim_key(work["user_id"], work["name"]), "work_id": work["work_id"]}
        ops.append(
            {"Put": {"TableName": tname, "Item": to_dynamo(claim), "ConditionExpression": "attribute_not_exists(pk)"}}
        )
    try:
        _transact(ops, work["name"], 0)
    except VersionConflict:
        latest = get_work(work["work_id"])
        if forbid_active and latest and latest.get("active_task_id") and latest.get("version") == expected_version:
            raise StateConflict("the work has an active task; cancel it first") from None
        raise


def list_user_works(user_id: str) -> list[WorkRecord]:
    """Every work of ``user_id`` (deleted ones included), newest first."""
    kwargs: dict[str, Any] = {
        "IndexName": "gsi1",
        "KeyConditionExpression": Key("gsi1pk").eq(user_works_pk(user_id)),
        "ScanIndexForward": False,
    }
    return [from_item(i) for i in query_all(**kwargs)]
