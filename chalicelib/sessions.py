"""Warm sessions: one engine driver per session, started on demand, watched by heartbeats.

A session item (``store.sessions`` ``SESSION#<id>``) carries a ``generation``; starting a driver is a
conditional write of generation ``g+1`` over ``g``, so two submitters never start two drivers.
While starting or running, the item is in the live index (``gsi1pk = LIVESESSIONS``) the
schedule tick scans; a driver whose heartbeat is stale (or whose runner says it is gone) is
retired as ``dead``, its Running job Failed with the reason, and a new driver started when jobs
are still queued. Batch jobs get a driver record too (``batch-<exec_id>``), so one monitor watches all.

Domain code: no boto3, no pyspark.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from chalicelib import jobs, quotas, runners
from chalicelib.config import settings
from chalicelib.engine.config import ERR_DRIVER_DIED, batch_driver_id, session_config
from chalicelib.errors import Forbidden, QuotaExceeded
from chalicelib.records import JobFields, JobRecord, SessionFields, SessionRecord
from chalicelib.runners import Runner
from chalicelib.store import jobs as job_store
from chalicelib.store import sessions as session_store
from chalicelib.timeutil import now_iso

LIVE_STATES = ("starting", "running", "stopping")

#: Tests and the bench choose the runner here; the choice is ``chalicelib.runners``' (one for every caller).
use_runner = runners.use_runner


def _runner(handle: dict[str, Any] | None = None) -> Runner:
    return runners.runner(handle)


def entrance_session_id(user_id: str, engine_type: str = "spark") -> str:
    """The warm session entrance jobs of ``user_id`` and ``engine_type`` share (Linkis engine reuse)."""
    return f"entrance-{user_id}-{engine_type}"


def stale_after(session: SessionRecord) -> float:
    """Seconds without a heartbeat after which ``session``'s driver is dead: ``heartbeat_stale_seconds``
    (``SPARKGATE_HEARTBEAT_STALE_SECONDS``), or three of the driver's own heartbeat intervals when it beats
    slower (an idle driver, see the engine)."""
    return max(settings().heartbeat_stale_seconds, 3 * float(session.get("heartbeat_every") or 0))


def _alive(session: SessionRecord, now: float) -> bool:
    state = session.get("state")
    if state == "starting":
        fresh = now - float(session.get("started_epoch") or 0) < settings().driver_start_timeout_seconds
    elif state in ("running", "stopping"):
        fresh = now - float(session.get("heartbeat_at") or 0) < stale_after(session)
    else:
        return False
    return fresh and not _local_driver_gone(session)


def _local_driver_gone(session: SessionRecord) -> bool:
    """A local driver's process has exited (a cheap check): no need to wait for its heartbeat to go stale."""
    handle = session.get("runner_handle")
    if not isinstance(handle, dict) or handle.get("runner") != "local":
        return False
    try:
        return _runner(handle).probe(handle) in ("finished", "failed")
    except Exception:
        return False


def ensure_session_driver(
    session_id: str, owner_user_id: str, config: dict[str, Any] | None = None, *, _known: SessionRecord | None = None
) -> SessionRecord:
    """The session with a live driver: the current one, or a new generation started through the runner.

    ``config`` (master, app_name, configs, envs, idle_timeout_seconds, max_result_rows) applies to a
    newly started driver; None keeps the stored one. Raises Forbidden for another owner's session,
    QuotaExceeded when a new driver would pass the owner's live-session cap (``quotas``).
    """
    known = _known
    for _ in range(8):
        current, known = (known if known is not None else session_store.get_session(session_id)), None
        if current and current.get("owner") not in (None, owner_user_id):
            raise Forbidden(f"session {session_id} belongs to another user")
        now = time.time()
        if current and current.get("state") in LIVE_STATES:
            if _alive(current, now):
                return current
            _reap(current, "no heartbeat from the driver", restart=False)
            continue
        quotas.reserve_session(owner_user_id, session_id)  # renewing this session's own slot is free
        generation = int(current["generation"]) + 1 if current else 1
        stored = current.get("config") if current else None
        record: SessionRecord = {
            "session_id": session_id,
            "owner": owner_user_id,
            "kind": "session",
            "generation": generation,
            "state": "starting",
            "config": session_config(config if config is not None else stored),
            "created_at": (current.get("created_at") if current else None) or now_iso(),
            "started_at": now_iso(),
            "started_epoch": now,
            "heartbeat_at": None,
            "runner_handle": None,
            "current_exec_id": None,
            "stop_requested": False,
        }
        if not session_store.put_session(
            record, expected_generation=int(current["generation"]) if current else None, live=True
        ):
            continue  # another submitter started it first: re-read and use theirs
        return _start(record)
    raise RuntimeError(f"could not settle a driver for session {session_id}")


def _start(record: SessionRecord) -> SessionRecord:
    """A driver for the new generation ``record``: a warm one from the pool when one fits, else a cold start.

    The owner's warm spare is topped up once this driver's first Job has ended (``pool.refill_after``,
    from the table's stream), so the owner's next new session starts warm too."""
    from chalicelib import pool

    session_id, generation = record["session_id"], int(record["generation"])
    handle = pool.claim(record["owner"], record)
    if handle is None:
        try:
            handle = _runner().start_session(record)
        except Exception as err:
            session_store.retire_session(
                session_id, generation, {"state": "dead", "stop_reason": f"driver could not start: {err}"}
            )
            raise
    warm = handle.get("pool_id") is not None
    session_store.update_session_fields(session_id, generation, {"runner_handle": handle, "warm_start": warm})
    return {**record, "runner_handle": handle, "warm_start": warm}


def wake(driver: SessionRecord | None) -> None:
    """Ring a running session driver's doorbell after queuing a Job for it (it would see the Job at its
    next poll anyway; an idle driver polls slowly). A driver still starting is not rung."""
    handle = driver.get("runner_handle") if driver else None
    if not isinstance(handle, dict) or driver is None or driver.get("state") != "running":
        return
    with contextlib.suppress(Exception):
        _runner(handle).wake(handle)


def dispatch(job: JobRecord) -> SessionRecord:
    """Get ``job`` (just made by ``jobs.new_job``) running: its session's driver, or a batch driver of its own
    (``submit.dispatch`` calls it for every Job but artefact runs, and rings a session's driver after).

    Answers the driver record (a session item). A batch driver that cannot start fails the job.
    """
    session_id = job.get("session_id")
    if session_id:
        existing = session_store.get_session(session_id)
        config = existing.get("config") if existing else job.get("session_config")
        return ensure_session_driver(session_id, job["owner"], config, _known=existing)
    exec_id = job["exec_id"]
    record: SessionRecord = {
        "session_id": batch_driver_id(exec_id),
        "owner": job["owner"],
        "kind": "batch",
        "generation": 1,
        "state": "starting",
        "config": session_config(job.get("session_config")),
        "created_at": now_iso(),
        "started_at": now_iso(),
        "started_epoch": time.time(),
        "heartbeat_at": None,
        "runner_handle": None,
        "current_exec_id": exec_id,
        "stop_requested": False,
    }
    if not session_store.put_session(record, expected_generation=None, live=True):
        return session_store.get_session(record["session_id"]) or record
    try:
        handle = _runner().start_batch(job)
    except Exception as err:
        reason = f"driver could not start: {err}"
        session_store.retire_session(record["session_id"], 1, {"state": "dead", "stop_reason": reason})
        job_store.transition(
            exec_id, jobs.QUEUED, jobs.FAILED, {"error": reason, "error_code": ERR_DRIVER_DIED, "ended_at": now_iso()}
        )
        raise
    session_store.update_session_fields(record["session_id"], 1, {"runner_handle": handle})
    job_store.update_job_fields(exec_id, {"runner_handle": handle})
    return {**record, "runner_handle": handle}


def stop_session(session_id: str) -> SessionRecord | None:
    """Stop a session: its queued jobs end Cancelled, its running job is killed, its driver exits.

    Answers the session item after the request (None when unknown). Idempotent.
    """
    session = session_store.get_session(session_id)
    if session is None:
        return None
    if session.get("owner"):
        quotas.release_session(str(session["owner"]), session_id)  # a stopping driver no longer counts
    for queued in job_store.queued_jobs(session_id, limit=100):
        jobs.request_cancel(queued)
    if session.get("state") in LIVE_STATES:
        generation = int(session["generation"])
        session_store.update_session_fields(session_id, generation, {"stop_requested": True})
        wake(session)  # an idle driver beats slowly: the doorbell makes it read the request now
        current = session.get("current_exec_id")
        running = job_store.get_job(current) if current else None
        if running and running["status"] == jobs.RUNNING:
            jobs.request_cancel(running)
        handle = session.get("runner_handle")
        gone = session.get("state") == "starting" or (
            handle and _runner(handle).probe(handle) in ("finished", "failed")
        )
        # no driver to hear the request: retire the record and make sure no process lingers
        retired = bool(gone) and session_store.retire_session(
            session_id, generation, {"state": "stopped", "stop_reason": "stopped"}
        )
        if retired and handle:
            _runner(handle).cancel(handle)
    return session_store.get_session(session_id)


def _death_reason(session: SessionRecord, now: float) -> str | None:
    handle = session.get("runner_handle")
    probe = _runner(handle).probe(handle) if handle else "unknown"
    if probe in ("finished", "failed"):
        return f"driver process {'exited' if probe == 'finished' else 'failed'} without finishing its work"
    state = session.get("state")
    if state == "starting":
        started = float(session.get("started_epoch") or 0)
        if now - started > settings().driver_start_timeout_seconds:
            return f"driver did not start within {settings().driver_start_timeout_seconds:.0f} s"
        return None
    beat = float(session.get("heartbeat_at") or 0)
    if now - beat > stale_after(session):
        return f"no heartbeat from the driver for {now - beat:.0f} s"
    return None


def _reap(session: SessionRecord, reason: str, *, restart: bool) -> dict[str, Any] | None:
    """Retire a dead driver: session dead, its job Failed, the process stopped, a successor if work waits."""
    session_id, generation = session["session_id"], int(session["generation"])
    fresh = session_store.get_session(session_id)
    if not fresh or int(fresh["generation"]) != generation or fresh.get("state") not in LIVE_STATES:
        return None
    fields: SessionFields = {"state": "dead", "stop_reason": reason, "stopped_at": now_iso(), "current_exec_id": None}
    if not session_store.retire_session(session_id, generation, fields):
        return None
    failed: str | None = None
    current = fresh.get("current_exec_id")
    if current:
        from_statuses = (jobs.RUNNING, *jobs.QUEUED) if fresh.get("kind") == "batch" else (jobs.RUNNING,)
        moved = job_store.transition(
            current,
            from_statuses,
            jobs.FAILED,
            {"error": f"driver died: {reason}", "error_code": ERR_DRIVER_DIED, "ended_at": now_iso()},
        )
        failed = current if moved else None
    handle = fresh.get("runner_handle")
    if handle:
        with contextlib.suppress(Exception):  # a gone driver cannot be cancelled; the record is retired anyway
            _runner(handle).cancel(handle)
    restarted: int | None = None
    waiting = fresh.get("kind") == "session" and job_store.queued_jobs(session_id, limit=1)
    if restart and waiting and not fresh.get("stop_requested"):
        try:
            restarted = int(ensure_session_driver(session_id, fresh["owner"], fresh.get("config"))["generation"])
        except QuotaExceeded as err:  # the owner started other sessions meanwhile: the waiting Jobs end
            for queued in job_store.queued_jobs(session_id, limit=100):
                ended: JobFields = {"error": err.message, "error_code": ERR_DRIVER_DIED, "ended_at": now_iso()}
                job_store.transition(queued["exec_id"], jobs.QUEUED, jobs.FAILED, ended, dequeue=True)
    return {
        "session_id": session_id,
        "generation": generation,
        "reason": reason,
        "failed_exec_id": failed,
        "restarted_generation": restarted,
    }


def check_heartbeats(now: float | None = None) -> list[dict[str, Any]]:
    """The schedule handler's sweep: retire dead drivers (see the module docstring); answers what it did."""
    now = time.time() if now is None else now
    done: list[dict[str, Any]] = []
    for session in session_store.live_sessions():
        try:
            reason = _death_reason(session, now)
            outcome = _reap(session, reason, restart=True) if reason else None
        except Exception as err:  # one bad record must not stop the sweep
            done.append({"session_id": session.get("session_id"), "error": str(err)})
            continue
        if outcome:
            done.append(outcome)
    return done
