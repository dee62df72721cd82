"""Job records: insert, read, status moves and field updates, and the queue and owner indexes.

Items (single table; the key layout is :mod:`chalicelib.store.item_keys`):

- job:      ``pk = JOB#<exec_id>``, ``sk = JOB``; while queued for a session also
            ``gsi1 = (SESSIONQ#<session_id>, <task_id:012d>)``; always ``gsi2 = (USERJOBS#<owner>, <task_id:012d>)``
- task id:  ``pk = TASKID#<task_id>``, ``sk = TASKID``, ``exec_id``

Every status change is a conditional write on the current status, so two writers can never both
move a Job and a finished Job never moves again. A Job's log is :mod:`chalicelib.store.logs`, its
results :mod:`chalicelib.store.results`, its session :mod:`chalicelib.store.sessions`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from boto3.dynamodb.conditions import Key

from chalicelib import job_status
from chalicelib.job_status import JobStatus
from chalicelib.records import JobFields, JobRecord
from chalicelib.store.aws import dynamo_value, put_new, table, update_all_if, update_if, update_request
from chalicelib.store.item_keys import job_key, order_sk, session_key, session_queue_pk, task_id_key, user_jobs_pk
from chalicelib.store.items import decode

FINAL_STATUSES: tuple[str, ...] = job_status.FINAL


def from_item(item: Mapping[str, Any]) -> JobRecord:
    """A stored Job item as its record: keys and index attributes dropped, Decimals decoded."""
    return cast(JobRecord, decode(item))


def to_item(job: JobRecord) -> dict[str, Any]:
    """A Job record as its item: its key, the owner index, and the session queue while it waits in one."""
    item: dict[str, Any] = {
        **job_key(job["exec_id"]),
        "gsi2pk": user_jobs_pk(job["owner"]),
        "gsi2sk": order_sk(job["task_id"]),
        **dynamo_value(job),
    }
    session_id = job.get("session_id")
    if session_id and job["status"] not in FINAL_STATUSES:
        item["gsi1pk"] = session_queue_pk(session_id)
        item["gsi1sk"] = order_sk(job["task_id"])
    return item


def insert_job(job: JobRecord) -> None:
    """Store a new job: its task-id pointer first, then the job, each a put-if-absent.

    Two single-item writes instead of a transaction: the task id comes from the atomic
    counter, so neither put can collide in practice, and a crash between them leaves only
    a pointer to no job (answered as "no job with taskID"), never a job without its id.
    A transaction would cost twice the write units for no added safety.
    """
    item = to_item(job)
    pointer = {**task_id_key(job["task_id"]), "exec_id": job["exec_id"]}
    if not put_new(pointer):
        raise RuntimeError(f"task id {job['task_id']} is already taken; the job counter was reset")
    if not put_new(item):
        raise RuntimeError(f"exec id {job['exec_id']} is already taken")


def get_job(exec_id: str) -> JobRecord | None:
    """The job, or None."""
    item = table().get_item(Key=job_key(exec_id), ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def exec_id_for_task(task_id: int) -> str | None:
    """The exec id of numeric task id ``task_id``, or None."""
    item = table().get_item(Key=task_id_key(task_id)).get("Item")
    return str(item["exec_id"]) if item else None


def transition(
    exec_id: str,
    from_statuses: tuple[str, ...],
    to_status: str,
    fields: JobFields | None = None,
    *,
    dequeue: bool = False,
) -> JobRecord | None:
    """Move a job to ``to_status`` only if its status is one of ``from_statuses``.

    ``fields`` are set in the same write; ``dequeue`` removes it from its session queue.
    Answers the job after the write, or None when the condition failed (someone else moved it).
    A move the life-cycle table (``chalicelib.job_status``) does not allow raises ValueError.
    """
    job_status.check(tuple(from_statuses), to_status)
    values: dict[str, Any] = {**(fields or {}), "status": str(to_status), "updated_at": _now_iso()}
    allowed = {f":from{i}": str(s) for i, s in enumerate(from_statuses)}
    got = update_if(
        job_key(exec_id),
        values,
        f"attribute_exists(pk) AND #status IN ({', '.join(allowed)})",
        names={"#status": "status"},
        values=allowed,
        remove=("gsi1pk", "gsi1sk") if dequeue or to_status in FINAL_STATUSES else (),
        return_item=True,
    )
    return from_item(got) if got is not None else None


class Superseded(Exception):
    """The session's driver generation moved on: this driver may no longer claim its Jobs."""


def claim_for_session(job: JobRecord, session_id: str, generation: int, fields: JobFields) -> JobRecord | None:
    """Move a queued session Job Scheduled -> Running (out of the queue, ``fields`` set) and name it the
    session's ``current_exec_id``, in one transaction, while the session is still at ``generation``.

    One request instead of a session write and then a job write: nobody sees a session naming a Job its
    driver did not claim, and the claim costs one round trip. Answers the Job as claimed (``job`` with
    the move applied); None when someone else moved it first. Raises :class:`Superseded` when the
    session is at another generation (then nothing was written).
    """
    job_status.check((JobStatus.SCHEDULED,), JobStatus.RUNNING)
    exec_id = str(job["exec_id"])
    values: dict[str, Any] = {**fields, "status": str(JobStatus.RUNNING), "updated_at": _now_iso()}
    failed = update_all_if(
        [
            update_request(
                session_key(session_id), {"current_exec_id": exec_id}, "generation = :g", values={":g": generation}
            ),
            update_request(
                job_key(exec_id),
                values,
                "attribute_exists(pk) AND #status = :from",
                names={"#status": "status"},
                values={":from": str(JobStatus.SCHEDULED)},
                remove=("gsi1pk", "gsi1sk"),
            ),
        ]
    )
    if failed and failed[0] == "ConditionalCheckFailed":
        raise Superseded(f"session {session_id} is no longer at generation {generation}")
    if failed:  # the Job moved first, or a conflicting write: the next poll looks again
        return None
    return cast(JobRecord, {**job, **values})


def move(
    exec_id: str,
    to_status: str,
    fields: JobFields | None = None,
    *,
    only_from: tuple[str, ...] | None = None,
    dequeue: bool = False,
) -> JobRecord | None:
    """:func:`transition` from every status the life-cycle table allows to move to ``to_status``
    (narrowed to ``only_from``): the write condition comes from the table, not from the caller."""
    return transition(exec_id, job_status.sources(to_status, only_from), to_status, fields, dequeue=dequeue)


def update_job_fields(exec_id: str, fields: JobFields, *, unless_final: bool = True) -> bool:
    """Set ``fields`` (progress, handles, flags) without moving the status; False if the job is final."""
    values: dict[str, Any] = {**fields}
    if not unless_final:
        return update_if(job_key(exec_id), values, "attribute_exists(pk)") is not None
    finals = {f":fin{i}": s for i, s in enumerate(FINAL_STATUSES)}
    condition = f"attribute_exists(pk) AND NOT #status IN ({', '.join(finals)})"
    return update_if(job_key(exec_id), values, condition, names={"#status": "status"}, values=finals) is not None


def _index_page(index: str, partition: str, limit: int, *, oldest_first: bool) -> list[JobRecord]:
    page = table().query(
        IndexName=index,
        KeyConditionExpression=Key(f"{index}pk").eq(partition),
        ScanIndexForward=oldest_first,
        Limit=limit,
    )
    return [from_item(i) for i in page.get("Items", [])]


def queued_jobs(session_id: str, limit: int = 10) -> list[JobRecord]:
    """Jobs waiting in ``session_id``'s queue, oldest first."""
    return _index_page("gsi1", session_queue_pk(session_id), limit, oldest_first=True)


def user_jobs(owner: str, limit: int = 50) -> list[JobRecord]:
    """The owner's most recent jobs, newest first."""
    return _index_page("gsi2", user_jobs_pk(owner), limit, oldest_first=False)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
