"""Jobs, their logs and results, and Spark sessions: the records every surface shares.

Items (single table):

- job:      ``pk = JOB#<exec_id>``, ``sk = JOB``; while queued for a session also
            ``gsi1 = (SESSIONQ#<session_id>, <task_id:012d>)``; always ``gsi2 = (USERJOBS#<owner>, <task_id:012d>)``
- log:      ``pk = JOB#<exec_id>``, ``sk = LOG#<first_line:09d>``; ``lines = [{"l": level, "t": text}, ...]``
- task id:  ``pk = TASKID#<task_id>``, ``sk = TASKID``, ``exec_id``
- counter:  ``pk = COUNTER#<name>``, ``sk = COUNTER``, ``value``
- session:  ``pk = SESSION#<session_id>``, ``sk = SESSION``

Every status change is a conditional write on the current status, so two writers can never both
move a Job and a finished Job never moves again. Result sets live in S3 as JSON documents.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib import job_status
from chalicelib.config import settings
from chalicelib.store.aws import client, dynamo_value, put_new, query_all, table, update_if
from chalicelib.store.errors import is_condition_failure
from chalicelib.store.items import decode

FINAL_STATUSES: tuple[str, ...] = job_status.FINAL


def job_key(exec_id: str) -> dict[str, str]:
    """The primary key of a job item."""
    return {"pk": f"JOB#{exec_id}", "sk": "JOB"}


def next_counter(name: str) -> int:
    """Atomically increment and return counter ``name`` (starts at 1)."""
    got = table().update_item(
        Key={"pk": f"COUNTER#{name}", "sk": "COUNTER"},
        UpdateExpression="ADD #v :one",
        ExpressionAttributeNames={"#v": "value"},
        ExpressionAttributeValues={":one": 1},
        ReturnValues="UPDATED_NEW",
    )
    return int(got["Attributes"]["value"])


def insert_job(job: dict[str, Any]) -> None:
    """Store a new job: its task-id pointer first, then the job, each a put-if-absent.

    Two single-item writes instead of a transaction: the task id comes from the atomic
    counter, so neither put can collide in practice, and a crash between them leaves only
    a pointer to no job (answered as "no job with taskID"), never a job without its id.
    A transaction would cost twice the write units for no added safety.
    """
    item = {
        **job_key(job["exec_id"]),
        "gsi2pk": f"USERJOBS#{job['owner']}",
        "gsi2sk": f"{job['task_id']:012d}",
        **dynamo_value(job),
    }
    if job.get("session_id") and job["status"] not in FINAL_STATUSES:
        item["gsi1pk"] = f"SESSIONQ#{job['session_id']}"
        item["gsi1sk"] = f"{job['task_id']:012d}"
    pointer = {"pk": f"TASKID#{job['task_id']}", "sk": "TASKID", "exec_id": job["exec_id"]}
    if not put_new(pointer):
        raise RuntimeError(f"task id {job['task_id']} is already taken; the job counter was reset")
    if not put_new(item):
        raise RuntimeError(f"exec id {job['exec_id']} is already taken")


def get_job(exec_id: str) -> dict[str, Any] | None:
    """The job, or None."""
    item = table().get_item(Key=job_key(exec_id), ConsistentRead=True).get("Item")
    return decode(item) if item else None


def exec_id_for_task(task_id: int) -> str | None:
    """The exec id of numeric task id ``task_id``, or None."""
    item = table().get_item(Key={"pk": f"TASKID#{task_id}", "sk": "TASKID"}).get("Item")
    return str(item["exec_id"]) if item else None


def transition(
    exec_id: str,
    from_statuses: tuple[str, ...],
    to_status: str,
    fields: dict[str, Any] | None = None,
    *,
    dequeue: bool = False,
) -> dict[str, Any] | None:
    """Move a job to ``to_status`` only if its status is one of ``from_statuses``.

    ``fields`` are set in the same write; ``dequeue`` removes it from its session queue.
    Answers the job after the write, or None when the condition failed (someone else moved it).
    A move the life-cycle table (``chalicelib.job_status``) does not allow raises ValueError.
    """
    job_status.check(tuple(from_statuses), to_status)
    fields = {**(fields or {}), "status": str(to_status), "updated_at": _now_iso()}
    allowed = {f":from{i}": str(s) for i, s in enumerate(from_statuses)}
    got = update_if(
        job_key(exec_id),
        fields,
        f"attribute_exists(pk) AND #status IN ({', '.join(allowed)})",
        names={"#status": "status"},
        values=allowed,
        remove=("gsi1pk", "gsi1sk") if dequeue or to_status in FINAL_STATUSES else (),
        return_item=True,
    )
    return decode(got) if got is not None else None


def move(
    exec_id: str,
    to_status: str,
    fields: dict[str, Any] | None = None,
    *,
    only_from: tuple[str, ...] | None = None,
    dequeue: bool = False,
) -> dict[str, Any] | None:
    """:func:`transition` from every status the life-cycle table allows to move to ``to_status``
    (narrowed to ``only_from``): the write condition comes from the table, not from the caller."""
    return transition(exec_id, job_status.sources(to_status, only_from), to_status, fields, dequeue=dequeue)


def update_job_fields(exec_id: str, fields: dict[str, Any], *, unless_final: bool = True) -> bool:
    """Set ``fields`` (progress, handles, flags) without moving the status; False if the job is final."""
    if not unless_final:
        return update_if(job_key(exec_id), fields, "attribute_exists(pk)") is not None
    finals = {f":fin{i}": s for i, s in enumerate(FINAL_STATUSES)}
    condition = f"attribute_exists(pk) AND NOT #status IN ({', '.join(finals)})"
    return update_if(job_key(exec_id), fields, condition, names={"#status": "status"}, values=finals) is not None


def _index_page(index: str, partition: str, limit: int, *, oldest_first: bool) -> list[dict[str, Any]]:
    page = table().query(
        IndexName=index,
        KeyConditionExpression=Key(f"{index}pk").eq(partition),
        ScanIndexForward=oldest_first,
        Limit=limit,
    )
    return [decode(i) for i in page.get("Items", [])]


def queued_jobs(session_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """Jobs waiting in ``session_id``'s queue, oldest first."""
    return _index_page("gsi1", f"SESSIONQ#{session_id}", limit, oldest_first=True)


def user_jobs(owner: str, limit: int = 50) -> list[dict[str, Any]]:
    """The owner's most recent jobs, newest first."""
    return _index_page("gsi2", f"USERJOBS#{owner}", limit, oldest_first=False)


# ---- logs ---------------------------------------------------------------------------------------


def append_log(exec_id: str, first_line: int, lines: list[tuple[str, str]]) -> bool:
    """Store log lines ``first_line ..`` as one chunk; False if that chunk already exists."""
    return put_new(
        {
            "pk": f"JOB#{exec_id}",
            "sk": f"LOG#{first_line:09d}",
            "exec_id": exec_id,
            "first": first_line,
            "lines": [{"l": level, "t": text} for level, text in lines],
        }
    )


def read_log(exec_id: str, from_line: int = 0, size: int | None = None) -> list[tuple[str, str]]:
    """Log lines from line ``from_line`` (0-based), at most ``size`` of them, in order."""
    out: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": Key("pk").eq(f"JOB#{exec_id}") & Key("sk").begins_with("LOG#"),
        "ConsistentRead": True,
    }
    while True:
        page = table().query(**kwargs)
        for chunk in page.get("Items", []):
            first = int(chunk["first"])
            for offset, line in enumerate(chunk["lines"]):
                if first + offset >= from_line:
                    out.append((str(line["l"]), str(line["t"])))
        if "LastEvaluatedKey" not in page or (size is not None and len(out) >= size):
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return out if size is None else out[:size]


# ---- sessions -----------------------------------------------------------------------------------


def session_key(session_id: str) -> dict[str, str]:
    """The primary key of a session item."""
    return {"pk": f"SESSION#{session_id}", "sk": "SESSION"}


def get_session(session_id: str) -> dict[str, Any] | None:
    """The session record, or None."""
    item = table().get_item(Key=session_key(session_id), ConsistentRead=True).get("Item")
    return decode(item) if item else None


def put_session(session: dict[str, Any], *, expected_generation: int | None) -> bool:
    """Write a session record if its ``generation`` is still ``expected_generation`` (None: must not exist)."""
    item = {**session_key(session["session_id"]), **dynamo_value(session)}
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


def update_session_fields(session_id: str, generation: int, fields: dict[str, Any]) -> bool:
    """Set ``fields`` on the session while it is still at ``generation`` (heartbeats, state)."""
    return update_if(session_key(session_id), fields, "generation = :g", values={":g": generation}) is not None


def beat_session(session_id: str, generation: int, fields: dict[str, Any]) -> dict[str, Any] | None:
    """A heartbeat: set ``fields`` while the session is at ``generation``; the item after (one request,
    so the driver also learns ``stop_requested``), or None when the session moved on."""
    got = update_if(session_key(session_id), fields, "generation = :g", values={":g": generation}, return_item=True)
    return decode(got) if got is not None else None


def delete_session(session_id: str) -> None:
    """Forget a session record."""
    table().delete_item(Key=session_key(session_id))


def live_sessions() -> list[dict[str, Any]]:
    """Every session whose driver is starting or running (for the heartbeat monitor)."""
    kwargs: dict[str, Any] = {
        "IndexName": "gsi1",
        "KeyConditionExpression": Key("gsi1pk").eq("LIVESESSIONS"),
    }
    return [decode(i) for i in query_all(**kwargs)]


# ---- results ------------------------------------------------------------------------------------


#: The file name of a result set under :func:`result_prefix`; group 1 is its index.
RESULT_FILE = re.compile(r"_(\d{1,6})\.json")


def result_prefix(owner: str, exec_id: str) -> str:
    """The S3 key prefix of a job's result sets."""
    return f"results/{owner}/{exec_id}/"


def result_file(index: int) -> str:
    """The file name of result set ``index`` (what :data:`RESULT_FILE` matches)."""
    return f"_{index}.json"


def put_result_set(owner: str, exec_id: str, index: int, document: dict[str, Any]) -> str:
    """Store result set ``index`` (``{"metadata": [...], "rows": [[...]]}``); answers its key."""
    key = result_prefix(owner, exec_id) + result_file(index)
    client("s3").put_object(
        Bucket=settings().bucket_name,
        Key=key,
        Body=json.dumps(document, default=str).encode(),
        ContentType="application/json",
    )
    return key


def result_page_key(owner: str, exec_id: str, index: int, page: int) -> str:
    """The S3 key of page ``page`` (>= 1) of result set ``index``; page 0 is in the result file itself."""
    return f"{result_prefix(owner, exec_id)}pages/{index}/{page}.json"


def put_result_page(owner: str, exec_id: str, index: int, page: int, rows: list[list[Any]]) -> None:
    """Store one further page of rows of result set ``index``."""
    client("s3").put_object(
        Bucket=settings().bucket_name,
        Key=result_page_key(owner, exec_id, index, page),
        Body=json.dumps(rows, default=str).encode(),
        ContentType="application/json",
    )


def get_result_page(owner: str, exec_id: str, index: int, page: int) -> list[list[Any]]:
    """Rows of page ``page`` (>= 1) of result set ``index``."""
    rows: list[list[Any]] = json.loads(get_object(result_page_key(owner, exec_id, index, page)))
    return rows


def get_result_set(owner: str, exec_id: str, index: int) -> dict[str, Any]:
    """Result set ``index`` as :func:`put_result_set` stored it."""
    document: dict[str, Any] = json.loads(get_object(result_prefix(owner, exec_id) + result_file(index)))
    return document


def put_result_blob(owner: str, exec_id: str, name: str, data: bytes, content_type: str) -> str:
    """Store a binary result (a rendered PNG) next to the result sets; answers its key."""
    key = f"{result_prefix(owner, exec_id)}{name}"
    client("s3").put_object(Bucket=settings().bucket_name, Key=key, Body=data, ContentType=content_type)
    return key


def get_object(key: str) -> bytes:
    """An object's bytes from the bucket."""
    body: bytes = client("s3").get_object(Bucket=settings().bucket_name, Key=key)["Body"].read()
    return body


def list_result_keys(owner: str, exec_id: str) -> list[str]:
    """A job's result-set keys, in result order."""
    prefix = result_prefix(owner, exec_id)
    got = client("s3").list_objects_v2(Bucket=settings().bucket_name, Prefix=prefix, Delimiter="/")
    indexed = []
    for obj in got.get("Contents", []):
        match = RESULT_FILE.fullmatch(obj["Key"][len(prefix) :])
        if match:
            indexed.append((int(match.group(1)), obj["Key"]))
    return [key for _, key in sorted(indexed)]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- session drivers (appended by the engine/runners work) -----------------------------------------


LIVE_SESSIONS_PK = "LIVESESSIONS"


def retire_session(session_id: str, generation: int, fields: dict[str, Any]) -> bool:
    """Set ``fields`` and drop the session from the live index, while it is still at ``generation``."""
    got = update_if(
        session_key(session_id), fields, "generation = :g", values={":g": generation}, remove=("gsi1pk", "gsi1sk")
    )
    return got is not None
