"""Submitting a Job: the one path from a surface's :class:`~chalicelib.jobs.JobRequest` to a Job on a driver.

Every surface calls :func:`submit`: the entrance (``entrance._start``), geo (``geo._queue``) and a
work's run (``tasks.start_task``). It stores the Job (``jobs.new_job``: Scheduled, holding one of the
owner's active-Job slots) and hands it to its driver (:func:`dispatch`):

- a session Job: the session's driver (``sessions.ensure_session_driver``: the live one, or a new
  generation), then its doorbell (``sessions.wake``: a running driver looks at its queue now);
- a task Job: its own compute, chosen by run type: an artefact run (SPARK_JAR, FLINK_*) through the
  runner's ``start_artefact`` (``runners.jar.start_artefact_run``), any other run a batch driver of its
  own (``sessions.dispatch``). The runner is always ``chalicelib.runners.runner``'s choice.

The order is the caller's explicit ``order``, one of two:

- :data:`STORE_FIRST` (the default; a work's runs): store the Job, then start its driver. A crash in
  between leaves a Scheduled Job without a driver, which the task sweep fails after its grace period
  (``tasks.sweep_active``); never a driver without a Job. Once the Job is stored, ``submit`` answers it:
  a driver that cannot start ends it Failed (``could not start: <reason>``) instead of raising.
- :data:`DRIVER_FIRST` (session Jobs of the entrance and geo): check the request, make sure the session's
  driver is there, then store the Job, then ring. A session driver is shared and outlives its Jobs, so
  a crash in between leaves at most an idle driver that its idle timeout ends. In exchange, a request
  that cannot run or is over the session cap (QuotaExceeded) stores no Job and takes no slot, and a
  cold start is the Job's first log line (``jobs.opening_log``), written before any driver can claim it.
  Batch Jobs cannot go driver first (their driver runs exactly that Job).

Domain code: no boto3, no pyspark.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from chalicelib import jobs
from chalicelib.observability import logger
from chalicelib.records import JobRecord, SessionRecord
from chalicelib.store import jobs as job_store
from chalicelib.timeutil import now_iso

Order = Literal["store_first", "driver_first"]
STORE_FIRST: Order = "store_first"
DRIVER_FIRST: Order = "driver_first"
#: A Job's run types whose compute is an artefact run (``runners.jar``), not an engine driver.
ARTEFACT_RUN_TYPES = ("jar", "flink")


def submit(
    request: jobs.JobRequest,
    *,
    order: Order = STORE_FIRST,
    driver_config: dict[str, Any] | None = None,
    before_dispatch: Callable[[JobRecord], bool] | None = None,
) -> JobRecord:
    """Store the Job ``request`` asks for and start it on its driver, in ``order`` (see the module docstring).

    ``driver_config`` (``sessions.ensure_session_driver``'s ``config``) applies to a session driver that
    starts now (DRIVER_FIRST only; STORE_FIRST keeps the session's stored one). ``before_dispatch`` runs
    between storing and dispatching (STORE_FIRST only): answering False leaves the Job undispatched (the
    caller has ended it). Raises what storing raises (BadRequest, QuotaExceeded at the Job cap) and, when
    the driver comes first, what starting it raises (Forbidden, QuotaExceeded at the session cap).
    """
    if order == DRIVER_FIRST:
        return _driver_first(request, driver_config)
    job = jobs.new_job(request)
    if before_dispatch is not None and not before_dispatch(job):
        return job
    try:
        dispatch(job)
    except Exception as err:
        logger.exception("job dispatch failed", extra={"exec_id": job["exec_id"]})
        failed = job_store.transition(
            job["exec_id"], jobs.ACTIVE, jobs.FAILED, {"error": f"could not start: {err}", "ended_at": now_iso()}
        )
        return failed or job_store.get_job(job["exec_id"]) or job
    return job


def _driver_first(request: jobs.JobRequest, config: dict[str, Any] | None) -> JobRecord:
    from chalicelib import sessions

    if not request.session_id:
        raise ValueError("only a session Job can start its driver first (a batch driver runs its Job)")
    jobs.check_request(request)  # a request that cannot run starts no driver
    driver = sessions.ensure_session_driver(request.session_id, request.owner.user_id, config)
    request.opening_log = jobs.opening_log(driver)  # a cold start says so in the Job's log
    job = jobs.new_job(request)  # QuotaExceeded at the Job cap
    sessions.wake(driver)
    return job


def dispatch(job: JobRecord) -> SessionRecord | None:
    """Start the compute for ``job`` (just stored by ``jobs.new_job``); answers its driver record, if any.

    Artefact runs go to the runner (``runners.jar.start_artefact_run``); a session Job to its session's
    driver, which is then rung; any other Job to a batch driver of its own (``sessions.dispatch``, which
    fails the Job when that driver cannot start).
    """
    if job.get("run_type") in ARTEFACT_RUN_TYPES:
        from chalicelib.runners.jar import start_artefact_run

        start_artefact_run(job)
        return None
    from chalicelib import sessions

    driver = sessions.dispatch(job)
    if job.get("session_id"):
        sessions.wake(driver)  # a batch driver is never rung: it runs its one Job
    return driver
