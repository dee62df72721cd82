"""Task records (runs of a work) and the schedule's slot claims.

- task:  ``pk = TASK#<task_id>``, ``sk = TASK``; ``gsi1`` = (``WORKTASKS#<work_id>``, start order);
         while the task holds its work's ``active_task_id`` also ``gsi2`` = (``ACTIVETASKS``, ``<task_id>``)
- slot:  ``pk = SLOT#<work_id>#<slot iso>``, ``sk = SLOT`` (one per scheduled run; expires after 35 days)

Starting a task and claiming the work's ``active_task_id`` is one transaction whose condition is
``attribute_not_exists(active_task_id)`` on a live work: two concurrent starts cannot both win.
The task then gets its Job's ids with :func:`attach_job`; a task whose start never got that far is
ended with :func:`end_without_job`. Both are conditional on the task having neither a Job nor an
error, so exactly one of them wins (see ``chalicelib.tasks``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.records import TaskFields, TaskRecord, WorkRecord
from chalicelib.store import works as work_store
from chalicelib.store.aws import client, put_new, query_all, table, to_dynamo, update_if
from chalicelib.store.errors import cancelled_indexes, is_condition_failure
from chalicelib.store.item_keys import ACTIVE_TASKS_PK, scheduled_pk, slot_key, task_key, work_key, work_tasks_pk
from chalicelib.store.items import decode

ACTIVE_PK = ACTIVE_TASKS_PK
SLOT_TTL_SECONDS = 35 * 24 * 3600


class WorkBusy(Exception):
    """The work already has an active task (or was deleted meanwhile)."""


def from_item(item: Mapping[str, Any]) -> TaskRecord:
    """A stored task item as its record; it also says whether the task still holds its work
    (is in the active index)."""
    return cast(TaskRecord, {"active": item.get("gsi2pk") == ACTIVE_PK, **decode(item)})


def to_item(task: TaskRecord, order_key: str) -> dict[str, Any]:
    """A new task's item: its key, its place among its work's tasks (``order_key``), the active index."""
    return {
        **task_key(task["task_id"]),
        "gsi1pk": work_tasks_pk(task["work_id"]),
        "gsi1sk": order_key,
        "gsi2pk": ACTIVE_PK,
        "gsi2sk": task["task_id"],
        **task,
    }


def insert_task_claiming_work(task: TaskRecord, order_key: str) -> None:
    """Store ``task`` and set its work's ``active_task_id`` in one transaction.

    The work must exist, not be deleted and have no active task; otherwise :class:`WorkBusy`.
    """
    tname = table().name
    item = to_item(task, order_key)
    ops = [
        {
            "Update": {
                "TableName": tname,
                "Key": to_dynamo(work_key(task["work_id"])),
                "UpdateExpression": "SET active_task_id = :t",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(active_task_id)"
                " AND NOT attribute_type(deleted_at, :str)",
                "ExpressionAttributeValues": to_dynamo({":t": task["task_id"], ":str": "S"}),
            }
        },
        {"Put": {"TableName": tname, "Item": to_dynamo(item), "ConditionExpression": "attribute_not_exists(pk)"}},
    ]
    try:
        client("dynamodb").transact_write_items(TransactItems=ops)
    except ClientError as err:
        if is_condition_failure(err) and 0 in cancelled_indexes(err):
            raise WorkBusy(task["work_id"]) from err
        raise


def release_work(work_id: str, task_id: str) -> bool:
    """Clear the work's ``active_task_id`` if it is still ``task_id``, and drop the task from the active index.

    Answers True when this call cleared the work's pointer.
    """
    cleared = update_if(
        work_key(work_id), {}, "active_task_id = :t", values={":t": task_id}, remove=("active_task_id",)
    )
    update_if(task_key(task_id), {}, "attribute_exists(pk)", remove=("gsi2pk", "gsi2sk"))
    return cleared is not None


def get_task(task_id: str) -> TaskRecord | None:
    """The task, or None."""
    item = table().get_item(Key=task_key(task_id), ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def update_task_fields(task_id: str, fields: TaskFields) -> bool:
    """Set ``fields`` on an existing task; False when there is no such task."""
    return update_if(task_key(task_id), {**fields}, "attribute_exists(pk)") is not None


_NO_JOB = (
    "attribute_exists(pk) AND (attribute_not_exists(exec_id) OR attribute_type(exec_id, :null))"
    " AND (attribute_not_exists(#err) OR attribute_type(#err, :null))"
)


def attach_job(task_id: str, exec_id: str, job_task_id: int) -> bool:
    """Record the task's Job ids, only while it has none and was not ended without one; False otherwise.

    The starter's half of the start protocol: it loses when :func:`end_without_job` got there first
    (the task was cancelled, or judged stale after a crash), and must then not run the Job.
    """
    fields = {"exec_id": exec_id, "job_task_id": job_task_id}
    return update_if(task_key(task_id), fields, _NO_JOB, names={"#err": "error"}, values={":null": "NULL"}) is not None


def end_without_job(task_id: str, fields: TaskFields) -> bool:
    """Set ``fields`` (``error``, ``final_status``, ``ended_at``) on a task that has no Job yet.

    Conditional on the task still having neither a Job nor an error, so it cannot overwrite a start
    that attached its Job meanwhile (:func:`attach_job`); answers whether this call ended it.
    """
    if not fields.get("error"):
        raise ValueError("a task ended without a Job needs an error")
    return (
        update_if(task_key(task_id), {**fields}, _NO_JOB, names={"#err": "error"}, values={":null": "NULL"}) is not None
    )


def active_tasks() -> list[TaskRecord]:
    """Every task that still holds its work's ``active_task_id`` (for the reconciling sweep)."""
    return _query({"IndexName": "gsi2", "KeyConditionExpression": Key("gsi2pk").eq(ACTIVE_PK)})


def list_work_tasks(work_id: str) -> list[TaskRecord]:
    """Every task of ``work_id``, newest first."""
    return _query(
        {
            "IndexName": "gsi1",
            "KeyConditionExpression": Key("gsi1pk").eq(work_tasks_pk(work_id)),
            "ScanIndexForward": False,
        }
    )


def _query(kwargs: dict[str, Any]) -> list[TaskRecord]:
    return [from_item(i) for i in query_all(**kwargs)]


def claim_slot(work_id: str, slot: str) -> bool:
    """Claim scheduled run ``slot`` of ``work_id``; False when another tick already claimed it."""
    return put_new(
        {
            **slot_key(work_id, slot),
            "work_id": work_id,
            "slot": slot,
            "expiration": int(time.time()) + SLOT_TTL_SECONDS,
        }
    )


def scheduled_works(frequency: str) -> list[WorkRecord]:
    """Live works whose ``run_frequency`` is ``frequency`` (from the works' ``gsi2`` projection)."""
    found = query_all(IndexName="gsi2", KeyConditionExpression=Key("gsi2pk").eq(scheduled_pk(frequency)))
    return [work_store.from_item(i) for i in found]
