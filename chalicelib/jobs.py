"""The Job: one life cycle for every piece of Spark work (entrance, geo, scheduled task).

``Inited -> Scheduled -> Running -> Succeed | Failed | Cancelled | Timeout``
(``Scheduled -> WaitForRetry -> Scheduled`` when a driver has to be replaced).

This module decides; ``store.jobs`` persists with conditional writes; runners and the engine
carry the work out. No boto3, no pyspark here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from chalicelib import job_status, quotas
from chalicelib.errors import BadRequest, NotFound
from chalicelib.job_status import JobStatus as S
from chalicelib.logformat import linkis_line
from chalicelib.records import JobExtra, JobRecord, SessionRecord
from chalicelib.store import counters as counter_store
from chalicelib.store import jobs as job_store
from chalicelib.store import logs as log_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal

#: The life cycle's names and groups (one vocabulary: ``chalicelib.job_status``).
INITED, WAIT_FOR_RETRY, SCHEDULED, RUNNING = S.INITED, S.WAIT_FOR_RETRY, S.SCHEDULED, S.RUNNING
SUCCEED, FAILED, CANCELLED, TIMEOUT = S.SUCCEED, S.FAILED, S.CANCELLED, S.TIMEOUT
FINAL, ACTIVE, QUEUED = job_status.FINAL, job_status.ACTIVE, job_status.QUEUED

#: Run types the engine executes; aliases map to the canonical name.
RUN_TYPES = {"sql": "sql", "spark_sql": "sql", "python": "python", "py": "python", "pyspark": "python"}
#: Internal run types, accepted only for the Job kind named here (never from a user's runType):
#: geo ops, and a work's SPARK_JAR / FLINK_* runs (``work_runs``).
INTERNAL_RUN_TYPES = {"geo": "geo", "jar": "task", "flink": "task"}
MAX_CODE_BYTES = 256 * 1024
DEFAULT_RUNTIME_SECONDS = 3600
MAX_RUNTIME_SECONDS = 7 * 24 * 3600
#: The first log line of a Job that waits for a session driver to start (a cold start is silent otherwise).
DRIVER_STARTING_LOG = "starting a Spark driver for your session; this usually takes 10-30 s"
#: ... when the session claimed a pre-started driver from the warm pool (``chalicelib.pool``).
WARM_DRIVER_LOG = "your session got a pre-started Spark driver from the warm pool"
#: The first log line of a batch Job (a work's run): it always gets a driver of its own.
BATCH_DRIVER_LOG = "starting a Spark driver for this run; this usually takes 10-30 s"


def driver_starting(session: SessionRecord | None) -> bool:
    """Whether a session's driver is still starting (no heartbeat yet), so its next Job waits for it."""
    return session is not None and session.get("state") == "starting"


def opening_log(session: SessionRecord | None) -> tuple[tuple[str, str], ...]:
    """The lines a new Job of that session opens its log with: the driver start, if one is under way."""
    if session is None or not driver_starting(session):
        return ()
    return (("INFO", WARM_DRIVER_LOG if session.get("warm_start") else DRIVER_STARTING_LOG),)


@dataclass
class JobRequest:
    """What a surface asks to run."""

    owner: Principal
    code: str
    run_type: str
    kind: str = "entrance"  # entrance | geo | task
    session_id: str | None = None  # None: batch mode (a driver of its own)
    params: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    runtime_seconds: int | None = None
    submitter_connection: str | None = None
    #: Fields a surface adds (a work's ids, a geo op); the fields :func:`new_job` sets always win over them.
    extra: JobExtra = field(default_factory=lambda: JobExtra())
    #: A batch Job's driver settings (``engine.config`` keys; see docs/engine.md), stored as ``session_config``.
    session_config: dict[str, Any] | None = None
    exec_id: str | None = None  # None: a random one; a caller that must find the Job later derives its own
    #: Reserve one of the owner's active-Job slots (``quotas.reserve_job``). False: the caller reserved
    #: it already (a work's run), or the Job is born final (a run that could not start).
    quota: bool = True
    #: Log lines the Job starts with, written before any driver can claim it (level, text); the
    #: supervisor's lines follow them (it continues from the Job's ``log_lines``).
    opening_log: tuple[tuple[str, str], ...] = ()


def normalise_run_type(run_type: Any) -> str:
    """The canonical run type, or a clear 400 for anything the engine cannot run."""
    if not isinstance(run_type, str) or run_type.lower() not in RUN_TYPES:
        raise BadRequest(
            f"runType {run_type!r} is not supported; use one of: sql, python (py, pyspark)", field="runType"
        )
    return RUN_TYPES[run_type.lower()]


def runtime_limit(params: dict[str, Any], default: int = DEFAULT_RUNTIME_SECONDS) -> int:
    """Run-time limit in seconds from ``params.configuration.runtime`` (documented key)."""
    configuration = params.get("configuration") if isinstance(params, dict) else None
    runtime = configuration.get("runtime") if isinstance(configuration, dict) else None
    raw = runtime.get("sparkgate.job.timeout") if isinstance(runtime, dict) else None
    if raw is None:
        return default
    try:
        value = int(str(raw).rstrip("s"))
    except ValueError as err:
        raise BadRequest("params.configuration.runtime['sparkgate.job.timeout'] must be seconds") from err
    if not 1 <= value <= MAX_RUNTIME_SECONDS:
        raise BadRequest(f"job timeout must be 1..{MAX_RUNTIME_SECONDS} seconds")
    return value


def check_request(request: JobRequest) -> tuple[str, int]:
    """The request's canonical run type and run-time limit; BadRequest for code or params that cannot run."""
    if not isinstance(request.code, str) or not request.code.strip():
        raise BadRequest("executionCode must be non-empty code", field="executionCode")
    if len(request.code.encode()) > MAX_CODE_BYTES:
        raise BadRequest(f"code exceeds {MAX_CODE_BYTES} bytes", field="executionCode")
    run_type = (
        request.run_type
        if INTERNAL_RUN_TYPES.get(str(request.run_type)) == request.kind
        else normalise_run_type(request.run_type)
    )
    return run_type, request.runtime_seconds or runtime_limit(request.params)


def new_job(request: JobRequest) -> JobRecord:
    """Build and store a Job in status Scheduled (queued for its session, or for its own driver).

    The Job takes one of its owner's active-Job slots first (``request.quota``): QuotaExceeded at the cap.
    Surfaces do not call this directly: ``submit.submit`` stores the Job and starts its driver, in one order.
    """
    run_type, runtime_seconds = check_request(request)
    exec_id = request.exec_id or uuid.uuid4().hex
    if request.quota:
        quotas.reserve_job(request.owner.user_id, exec_id)
    stamp = now_iso()
    job: JobRecord = {
        "exec_id": exec_id,
        "task_id": counter_store.next_counter("job"),
        "owner": request.owner.user_id,
        "username": request.owner.username,
        "kind": request.kind,
        "code": request.code,
        "run_type": run_type,
        "params": request.params,
        "source": request.source,
        "session_id": request.session_id,
        "mode": "session" if request.session_id else "batch",
        "status": SCHEDULED,
        "progress": 0,
        "progress_info": [],
        "log_lines": 0,
        "result_sets": 0,
        "result_location": None,
        "error_code": None,
        "error": None,
        "runtime_seconds": runtime_seconds,
        "cancel_requested": False,
        "submitter_connection": request.submitter_connection,
        "runner_handle": None,
        "created_at": stamp,
        "updated_at": stamp,
        "started_at": None,
        "ended_at": None,
    }
    if request.session_config is not None:
        job["session_config"] = request.session_config
    # the caller's extra goes under the fields set here: run_type, status, owner, ... always win over it
    job = cast(JobRecord, {**request.extra, **job})
    if request.opening_log:
        job["log_lines"] = len(request.opening_log)
    job_store.insert_job(job)
    if request.opening_log:
        # after the Job (so the stream's push finds it); no driver writes before line log_lines
        log_store.append_log(exec_id, 0, [(lvl, linkis_line(lvl, text)) for lvl, text in request.opening_log])
    return job


def owned_job(principal: Principal, exec_id: str) -> JobRecord:
    """The caller's job by exec id; :class:`NotFound` alike for an unknown one and another user's
    (same status, same message: answers tell nothing about other users' Jobs)."""
    job = job_store.get_job(exec_id) if 0 < len(exec_id) <= 64 else None
    if job is None or job["owner"] != principal.user_id:
        raise NotFound(f"no job with execID {exec_id}")
    return job


def owned_job_by_task(principal: Principal, task_id: Any) -> JobRecord:
    """The job by numeric task id (same rules as :func:`owned_job`)."""
    try:
        number = int(task_id)
    except (TypeError, ValueError) as err:
        raise BadRequest(f"taskID must be a number, got {task_id!r}", field="taskID") from err
    exec_id = job_store.exec_id_for_task(number)
    job = job_store.get_job(exec_id) if exec_id else None
    if job is None or job["owner"] != principal.user_id:
        raise NotFound(f"no job with taskID {number}")
    return job


def request_cancel(job: JobRecord) -> JobRecord:
    """Cancel a job: a queued one ends Cancelled at once; a running one is flagged for its driver.

    Answers the job after the change; finished jobs are answered unchanged (kill is idempotent).
    """
    exec_id = job["exec_id"]
    for _ in range(3):
        if job["status"] in FINAL:
            return job
        if job["status"] in QUEUED:
            moved = job_store.transition(
                exec_id, QUEUED, CANCELLED, {"ended_at": now_iso(), "error": "cancelled by user"}, dequeue=True
            )
            if moved:
                return moved
        else:
            job_store.update_job_fields(exec_id, {"cancel_requested": True})
            fresh = job_store.get_job(exec_id)
            return fresh or job
        job = job_store.get_job(exec_id) or job
    return job


def log_view(job: JobRecord, from_line: int, size: int | None) -> tuple[list[tuple[str, str]], int]:
    """Log lines from ``from_line`` and the cursor to resume from."""
    lines = log_store.read_log(job["exec_id"], from_line, size)
    return lines, from_line + len(lines)
