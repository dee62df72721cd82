"""Tasks: the runs of a work (spec 003 sections 6 and 7), each carried out as a batch Job.

A task item holds who/what/why (work, trigger, attempt, retry_of, slot) and its Job's ids; its
``status``, ``started_at``, ``ended_at``, ``run_time`` and ``error`` are derived from the Job at read
time, so they are never stale. Task status (int, as the spec's list answers it):

====  ==================  ==============
code  meaning             Job status
====  ==================  ==============
0     succeeded           Succeed
1     running             Running
2     queued              Scheduled
3     failed              Failed
4     cancelled           Cancelled
5     timed out           Timeout
6     waiting for retry   WaitForRetry
7     inited              Inited (or the Job is not created yet)
====  ==================  ==============

At most one task of a work is active at a time (BATCH and STREAMING alike): starting one sets the
work's ``active_task_id`` in the same transaction that stores the task, conditional on it being
unset, so of two concurrent starts exactly one wins (the other answers 409). The pointer is cleared
(conditional on the same task id) as soon as anyone sees the task's Job final: a read of the task,
a cancel, a later start, or the schedule tick's sweep.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from chalicelib import jobs, work_runs
from chalicelib.errors import BadRequest, NotFound, StateConflict
from chalicelib.observability import logger
from chalicelib.store import jobs as job_store
from chalicelib.store import tasks as task_store
from chalicelib.store import works as work_store
from chalicelib.timeutil import now, now_iso, parse_iso
from chalicelib.tokens import Principal
from chalicelib.works import Page, get_owned_work, paging

TASK_FIELDS = ("task_id", "work_id", "status", "started_at", "ended_at", "run_time")
DETAIL_FIELDS = (
    *TASK_FIELDS,
    "type",
    "trigger",
    "attempt",
    "retry_of",
    "slot",
    "error",
    "exec_id",
    "job_task_id",
    "progress",
    "created_at",
)
TRIGGERS = ("manual", "schedule", "retry")
STATUS_CODES = {
    jobs.SUCCEED: 0,
    jobs.RUNNING: 1,
    jobs.SCHEDULED: 2,
    jobs.FAILED: 3,
    jobs.CANCELLED: 4,
    jobs.TIMEOUT: 5,
    jobs.WAIT_FOR_RETRY: 6,
    jobs.INITED: 7,
}
RETRYABLE = (3, 4, 5)


def _seconds(start: str | None, end: str | None) -> int | None:
    if not start:
        return None
    finish = parse_iso(end) if end else now()
    return max(0, int((finish - parse_iso(start)).total_seconds()))


def _view(task: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    """The task with its Job-derived fields filled in."""
    out = dict(task)
    if job is None:
        out.update(status=3 if task.get("error") else 7, started_at=None, ended_at=None, run_time=None)
        return out
    started = job.get("started_at")
    ended = job.get("ended_at") if job["status"] in jobs.FINAL else None
    out.update(
        status=STATUS_CODES.get(job["status"], 7),
        started_at=started,
        ended_at=ended,
        run_time=_seconds(started, ended),
        error=job.get("error") or task.get("error"),
        progress=job.get("progress"),
    )
    return out


def _settle(task: dict[str, Any], job: dict[str, Any] | None) -> None:
    """Free the work's active pointer once the task's Job is final (idempotent, conditional)."""
    final = (job is not None and job["status"] in jobs.FINAL) or (job is None and task.get("error"))
    if final and task.get("active"):
        task_store.release_work(task["work_id"], task["task_id"])


def _load(task: dict[str, Any]) -> dict[str, Any]:
    job = job_store.get_job(task["exec_id"]) if task.get("exec_id") else None
    _settle(task, job)
    return _view(task, job)


def present_task(task: dict[str, Any]) -> dict[str, Any]:
    """A task as the spec's list shows it, empty fields as ``null``."""
    out = {field: task.get(field) for field in TASK_FIELDS}
    for field in ("status", "run_time"):
        value = out[field]
        if value is not None:
            out[field] = int(value)
    return out


def present_detail(task: dict[str, Any]) -> dict[str, Any]:
    """The task detail: the list fields plus trigger, attempt, retry_of, error and the Job's ids."""
    out = {field: task.get(field) for field in DETAIL_FIELDS}
    out.update(present_task(task))
    for field in ("attempt", "job_task_id"):
        value = out[field]
        if value is not None:
            out[field] = int(value)
    return out


def list_tasks(principal: Principal, work_id: str, params: dict[str, str]) -> Page:
    """A page of the work's tasks, newest first (deleted works keep their tasks)."""
    get_owned_work(principal, work_id, include_deleted=True)
    limit, offset = paging(params)
    found = task_store.list_work_tasks(work_id)
    start = offset * limit
    return Page([present_task(_load(t)) for t in found[start : start + limit]], len(found))


def owned_task(principal: Principal, task_id: str) -> dict[str, Any]:
    """The caller's task with derived fields; :class:`NotFound` for unknown or other users' tasks."""
    task = task_store.get_task(task_id) if 0 < len(task_id) <= 64 else None
    if task is None or task.get("owner") != principal.user_id:
        raise NotFound(f"task {task_id} not found")
    return _load(task)


def _free_if_stale(work: dict[str, Any]) -> None:
    """When the work's active task has in fact ended, clear its pointer so a new task can start."""
    active_id = work.get("active_task_id")
    if not active_id:
        return
    task = task_store.get_task(str(active_id))
    if task is None:
        task_store.release_work(work["work_id"], str(active_id))
        return
    _load(task)


def start_task(
    principal: Principal,
    work: dict[str, Any],
    *,
    trigger: str = "manual",
    retry_of: dict[str, Any] | None = None,
    slot: str | None = None,
) -> dict[str, Any]:
    """Start one run of ``work`` now; 409 when the work already has an active task."""
    if work.get("deleted_at"):
        raise NotFound(f"work {work['work_id']} not found")
    stamp = now_iso()
    task: dict[str, Any] = {
        "task_id": uuid.uuid4().hex,
        "work_id": work["work_id"],
        "owner": work["user_id"],
        "type": work.get("type"),
        "trigger": trigger,
        "attempt": int(retry_of.get("attempt") or 1) + 1 if retry_of else 1,
        "retry_of": retry_of["task_id"] if retry_of else None,
        "slot": slot,
        "error": None,
        "exec_id": None,
        "job_task_id": None,
        "created_at": stamp,
    }
    order = f"{time.time_ns():020d}#{task['task_id']}"
    for attempt in range(2):
        try:
            task_store.insert_task_claiming_work(task, order)
            break
        except task_store.WorkBusy:
            latest = work_store.get_work(work["work_id"]) or {}
            if latest.get("deleted_at") or not latest:
                raise NotFound(f"work {work['work_id']} not found") from None
            if attempt == 0 and latest.get("active_task_id"):
                _free_if_stale(latest)
                continue
            raise StateConflict(
                f"work {work['work_id']} already has an active task ({latest.get('active_task_id')}); "
                "cancel it or wait for it to end"
            ) from None
    try:
        request = work_runs.build_request(work, principal, task)
        job = jobs.new_job(request)
    except (work_runs.RunError, BadRequest) as err:
        job = work_runs.failed_job(principal, task, work, str(getattr(err, "message", err)))
    task_store.update_task_fields(task["task_id"], {"exec_id": job["exec_id"], "job_task_id": job["task_id"]})
    task.update(exec_id=job["exec_id"], job_task_id=job["task_id"], active=True)
    if job["status"] not in jobs.FINAL:
        try:
            work_runs.dispatch(job)
        except Exception as err:
            logger.exception("task dispatch failed", extra={"task_id": task["task_id"]})
            job_store.transition(
                job["exec_id"], jobs.ACTIVE, jobs.FAILED, {"error": f"could not start: {err}", "ended_at": now_iso()}
            )
    return _load(task)


def start_for_owner(principal: Principal, work_id: str) -> dict[str, Any]:
    """``POST /works/{id}/tasks``: start a manual run of the caller's work."""
    return present_detail(start_task(principal, get_owned_work(principal, work_id)))


def cancel_task(principal: Principal, task_id: str) -> dict[str, Any]:
    """Cancel a task (idempotent): the Job is cancelled, its driver stopped, the work freed."""
    task = owned_task(principal, task_id)
    if task["status"] in (0, 3, 4, 5) or not task.get("exec_id"):
        return present_detail(task)
    job = job_store.get_job(task["exec_id"])
    if job is not None:
        job = jobs.request_cancel(job)
        if job["status"] not in jobs.FINAL:
            work_runs.cancel_compute(job)
            # the driver is gone; if it could not record its own end, record it for it
            job_store.transition(
                job["exec_id"], (jobs.RUNNING,), jobs.CANCELLED, {"ended_at": now_iso(), "error": "cancelled by user"}
            )
    return present_detail(owned_task(principal, task_id))


def retry_task(principal: Principal, task_id: str) -> dict[str, Any]:
    """A new task of the same work, linked to a failed, cancelled or timed-out one (409 otherwise)."""
    task = owned_task(principal, task_id)
    if task["status"] not in RETRYABLE:
        raise StateConflict(f"task {task_id} is not failed, cancelled or timed out; only those can be retried")
    work = get_owned_work(principal, task["work_id"])
    return present_detail(start_task(principal, work, trigger="retry", retry_of=task))


def sweep_active() -> int:
    """Free the works whose active task has ended (called by the schedule tick); answers how many."""
    freed = 0
    for task in task_store.active_tasks():
        job = job_store.get_job(task["exec_id"]) if task.get("exec_id") else None
        if (job is not None and job["status"] in jobs.FINAL) or (job is None and task.get("error")):
            freed += int(task_store.release_work(task["work_id"], task["task_id"]))
    return freed
