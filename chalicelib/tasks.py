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

At most one task of a work is active at a time, BATCH and STREAMING alike (runs of a work never
overlap: a scheduled slot that finds its work busy is skipped, and a work with an active task cannot
be deleted). Starting one sets the work's ``active_task_id`` in the same transaction that stores the
task, conditional on it being unset, so of two concurrent starts exactly one wins (the other answers
409). The pointer is cleared (conditional on the same task id) as soon as anyone sees the task ended:
a read of the task, a cancel, a later start, or the schedule tick's sweep.

A start is three writes: the task (claiming the work), its Job, then the Job's ids on the task
(``store.tasks.attach_job``). When the starting process dies in between, the task would hold its
work for ever; so whoever looks at an active task finds out, after ``settings().task_start_grace_seconds``:

- no Job attached: the task is ended with an error (``store.tasks.end_without_job``). That write and
  ``attach_job`` are both conditional on the task having neither a Job nor an error, so a starter
  that was only slow loses cleanly: it cancels the Job it made and never dispatches it;
- its Job still queued with no driver ever started for it: the Job is failed (a conditional
  transition), which ends the task. Drivers that were started are watched by the heartbeat check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, cast

from chalicelib import jobs, submit, work_runs
from chalicelib.config import settings
from chalicelib.engine.config import batch_driver_id
from chalicelib.errors import BadRequest, NotFound, StateConflict
from chalicelib.observability import logger
from chalicelib.records import JobFields, JobRecord, TaskFields, TaskRecord, TaskView, WorkRecord
from chalicelib.store import jobs as job_store
from chalicelib.store import sessions as session_store
from chalicelib.store import tasks as task_store
from chalicelib.store import works as work_store
from chalicelib.timeutil import now, now_iso, parse_iso
from chalicelib.tokens import Principal
from chalicelib.works import Page, get_owned_work, paging

#: The spec's task fields, then sparkgate's: why a run failed and the Job to read its log and result by.
TASK_FIELDS = ("task_id", "work_id", "status", "started_at", "ended_at", "run_time", "error", "exec_id", "job_task_id")
DETAIL_FIELDS = (
    *TASK_FIELDS,
    "type",
    "trigger",
    "attempt",
    "retry_of",
    "slot",
    "progress",
    "created_at",
)
TRIGGERS = ("manual", "schedule", "retry")
STATUS_CODES: dict[str, int] = {
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
#: A task (or its Job) still not started this long after it was written is judged abandoned by a crash.
#: How long a cancel waits for a running driver to stop the job itself before the driver is killed.
CANCEL_WAIT_SECONDS = 8.0
#: How long a driver whose job was cancelled gets to exit by itself before it is killed.
DRIVER_EXIT_SECONDS = 4.0
STALE_START_ERROR = (
    "the run did not start: its task was written but the process starting it stopped before {what}; retry the task"
)


def _seconds(start: str | None, end: str | None) -> int | None:
    if not start:
        return None
    finish = parse_iso(end) if end else now()
    return max(0, int((finish - parse_iso(start)).total_seconds()))


def _view(task: TaskRecord, job: JobRecord | None) -> TaskView:
    """The task with its Job-derived fields filled in."""
    out = cast(TaskView, dict(task))
    if job is None:
        status = int(task["final_status"]) if task.get("final_status") is not None else 3 if task.get("error") else 7
        out.update({"status": status, "started_at": None, "ended_at": task.get("ended_at"), "run_time": None})
        return out
    started = job.get("started_at")
    ended = job.get("ended_at") if job["status"] in jobs.FINAL else None
    out.update(
        {
            "status": STATUS_CODES.get(job["status"], 7),
            "started_at": started,
            "ended_at": ended,
            "run_time": _seconds(started, ended),
            "error": job.get("error") or task.get("error"),
            "progress": job.get("progress"),
        }
    )
    return out


def _age_seconds(stamp: Any) -> float:
    """Seconds (wall clock) since ``stamp``; 0 when unknown."""
    try:
        return (now() - parse_iso(str(stamp))).total_seconds()
    except (TypeError, ValueError):
        return 0.0


def _end_unstarted(task: TaskRecord) -> TaskRecord:
    """A task with no Job after the grace period: ended with an error (conditional; see the module doc)."""
    if _age_seconds(task.get("created_at")) < settings().task_start_grace_seconds:
        return task
    fields: TaskFields = {
        "error": STALE_START_ERROR.format(what="creating its Job"),
        "final_status": 3,
        "ended_at": now_iso(),
    }
    if task_store.end_without_job(task["task_id"], fields):
        logger.warning("task abandoned before its Job was attached", extra={"task_id": task["task_id"]})
        # a Job may exist that the crashed starter never recorded: it must not run (or stay queued)
        orphan: JobFields = {"error": "its task ended before the Job started", "ended_at": now_iso()}
        job_store.transition(work_runs.task_exec_id(task["task_id"]), jobs.ACTIVE, jobs.CANCELLED, orphan)
        return cast(TaskRecord, {**task, **fields})
    return task_store.get_task(task["task_id"]) or task


def _fail_undispatched(job: JobRecord) -> JobRecord:
    """A batch Job still queued after the grace period with no driver ever started for it: Failed."""
    if (
        job.get("mode") != "batch"
        or job.get("runner_handle")
        or _age_seconds(job.get("created_at")) < settings().task_start_grace_seconds
        or session_store.get_session(batch_driver_id(job["exec_id"])) is not None
    ):
        return job
    fields: JobFields = {"error": STALE_START_ERROR.format(what="starting its driver"), "ended_at": now_iso()}
    moved = job_store.transition(job["exec_id"], jobs.QUEUED, jobs.FAILED, fields)
    if moved is not None:
        logger.warning("task's Job was never dispatched", extra={"exec_id": job["exec_id"]})
        return moved
    return job_store.get_job(job["exec_id"]) or job


def _settle(task: TaskRecord, job: JobRecord | None) -> tuple[TaskRecord, JobRecord | None]:
    """End an interrupted start, then free the work's active pointer once the task has ended.

    Idempotent and conditional throughout; answers the task and its Job as they are now.
    """
    if not task.get("active"):
        return task, job
    if job is None and not task.get("exec_id") and not task.get("error"):
        task = _end_unstarted(task)
        if task.get("exec_id"):  # the starter attached its Job after all
            job = job_store.get_job(str(task["exec_id"]))
    elif job is not None and job["status"] in jobs.QUEUED:
        job = _fail_undispatched(job)
    ended = (job is not None and job["status"] in jobs.FINAL) or (job is None and bool(task.get("error")))
    if ended:
        task_store.release_work(task["work_id"], task["task_id"])
        task = {**task, "active": False}
    return task, job


def _load(task: TaskRecord) -> TaskView:
    exec_id = task.get("exec_id")
    job = job_store.get_job(exec_id) if exec_id else None
    task, job = _settle(task, job)
    return _view(task, job)


def present_task(task: TaskView) -> dict[str, Any]:
    """A task as the spec's list shows it, empty fields as ``null``."""
    view: Mapping[str, Any] = task
    out = {field: view.get(field) for field in TASK_FIELDS}
    for field in ("status", "run_time", "job_task_id"):
        value = out[field]
        if value is not None:
            out[field] = int(value)
    return out


def present_detail(task: TaskView) -> dict[str, Any]:
    """The task detail: the list fields plus trigger, attempt, retry_of, error and the Job's ids."""
    view: Mapping[str, Any] = task
    out = {field: view.get(field) for field in DETAIL_FIELDS}
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


def owned_task(principal: Principal, task_id: str) -> TaskView:
    """The caller's task with derived fields; :class:`NotFound` for unknown or other users' tasks."""
    task = task_store.get_task(task_id) if 0 < len(task_id) <= 64 else None
    if task is None or task.get("owner") != principal.user_id:
        raise NotFound(f"task {task_id} not found")
    return _load(task)


def _free_if_stale(work: WorkRecord) -> None:
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
    work: WorkRecord,
    *,
    trigger: str = "manual",
    retry_of: TaskRecord | None = None,
    slot: str | None = None,
) -> TaskView:
    """Start one run of ``work`` now; 409 when the work already has an active task."""
    if work.get("deleted_at"):
        raise NotFound(f"work {work['work_id']} not found")
    stamp = now_iso()
    task: TaskRecord = {
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
            latest = work_store.get_work(work["work_id"])
            if latest is None or latest.get("deleted_at"):
                raise NotFound(f"work {work['work_id']} not found") from None
            if attempt == 0 and latest.get("active_task_id"):
                _free_if_stale(latest)
                continue
            raise StateConflict(
                f"work {work['work_id']} already has an active task ({latest.get('active_task_id')}); "
                "cancel it or wait for it to end"
            ) from None
    attached = True

    def attach(job: JobRecord) -> bool:
        # the task was ended meanwhile (cancelled, or judged abandoned): its Job must not run
        nonlocal attached
        attached = task_store.attach_job(task["task_id"], job["exec_id"], int(job["task_id"]))
        if not attached:
            ended: JobFields = {"error": "its task ended before the Job started", "ended_at": now_iso()}
            job_store.transition(job["exec_id"], jobs.ACTIVE, jobs.CANCELLED, ended)
        return attached

    try:
        request = work_runs.build_request(work, principal, task)
        # stored first, attached to the task, then started: a crash leaves a queued Job the sweep fails
        job = submit.submit(request, order=submit.STORE_FIRST, before_dispatch=attach)
    except (work_runs.RunError, BadRequest) as err:
        job = work_runs.failed_job(principal, task, work, str(getattr(err, "message", err)))
        attach(job)
    if not attached:
        return _load(task_store.get_task(task["task_id"]) or task)
    task.update({"exec_id": job["exec_id"], "job_task_id": job["task_id"], "active": True})
    return _load(task)


def start_for_owner(principal: Principal, work_id: str) -> dict[str, Any]:
    """``POST /works/{id}/tasks``: start a manual run of the caller's work."""
    return present_detail(start_task(principal, get_owned_work(principal, work_id)))


def _await_end(exec_id: str, seconds: float) -> JobRecord | None:
    """The Job once it is final, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    job = job_store.get_job(exec_id)
    while job is not None and job["status"] not in jobs.FINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        job = job_store.get_job(exec_id)
    return job


def cancel_task(principal: Principal, task_id: str) -> dict[str, Any]:
    """Cancel a task (idempotent): its Job ends Cancelled, its driver is stopped, the work is freed.

    A queued Job is cancelled at once and any driver already started for it is killed. A running
    one is flagged; its driver stops the code and records Cancelled itself (within
    ``CANCEL_WAIT_SECONDS``), else Cancelled is recorded for it and it is killed. Either way the
    driver process is given ``DRIVER_EXIT_SECONDS`` to exit, then killed. A task whose Job does not
    exist yet is ended at once (its starter then cancels the Job it makes).
    """
    task = owned_task(principal, task_id)
    if not task.get("exec_id"):
        if task["status"] == 7:
            fields: TaskFields = {
                "error": "cancelled by user before its Job was created",
                "final_status": 4,
                "ended_at": now_iso(),
            }
            task_store.end_without_job(task_id, fields)
        return present_detail(owned_task(principal, task_id))
    job = job_store.get_job(str(task["exec_id"]))
    if job is None:
        return present_detail(task)
    if job["status"] not in jobs.FINAL:
        was_queued = job["status"] in jobs.QUEUED
        job = jobs.request_cancel(job)
        if job["status"] not in jobs.FINAL and work_runs.driver_alive(job):
            job = _await_end(job["exec_id"], CANCEL_WAIT_SECONDS) or job
        if job["status"] not in jobs.FINAL:
            # the driver did not stop the job in time: record the end first (so the kill cannot be
            # recorded as a failure of the job), then kill the driver
            reason = "cancelled by user (the driver did not stop in time and was killed)"
            job = (
                job_store.transition(
                    job["exec_id"], (jobs.RUNNING,), jobs.CANCELLED, {"ended_at": now_iso(), "error": reason}
                )
                or job_store.get_job(job["exec_id"])
                or job
            )
            work_runs.cancel_compute(job)
        work_runs.stop_driver(job, 0.0 if was_queued else DRIVER_EXIT_SECONDS)
    elif job["status"] == jobs.CANCELLED:
        work_runs.stop_driver(job, 0.0)  # a cancel retried: make sure nothing of the run is left
    return present_detail(owned_task(principal, task_id))


def retry_task(principal: Principal, task_id: str) -> dict[str, Any]:
    """A new task of the same work, linked to a failed, cancelled or timed-out one (409 otherwise)."""
    task = owned_task(principal, task_id)
    if task["status"] not in RETRYABLE:
        raise StateConflict(f"task {task_id} is not failed, cancelled or timed out; only those can be retried")
    work = get_owned_work(principal, task["work_id"])
    return present_detail(start_task(principal, work, trigger="retry", retry_of=task))


def sweep_active() -> int:
    """Settle every active task (called by the schedule tick): end interrupted starts, follow artefact
    runs (an EMR step's state moves its Job), free ended works.

    Answers how many active tasks were found ended (their works are free again).
    """
    freed = 0
    for task in task_store.active_tasks():
        try:
            exec_id = task.get("exec_id")
            job = job_store.get_job(exec_id) if exec_id else None
            if job is not None and job.get("artefact_run"):
                job = work_runs.reconcile_artefact_run(job)
            freed += int(not _settle(task, job)[0].get("active"))
        except Exception:  # one bad record must not stop the sweep
            logger.exception("could not settle task", extra={"task_id": task.get("task_id")})
    return freed
