"""The warm-session manager: one driver per generation under races, dispatch, stop, and the heartbeat monitor."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.config import settings
from chalicelib.runners.base import Probe, Runner
from chalicelib.tokens import Principal

OWNER = Principal("u-1", "alice")


class FakeRunner(Runner):
    """Records starts; probes answer what the test says."""

    name = "fake"

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.cancelled: list[dict[str, Any]] = []
        self.state: Probe = "running"
        self.fail_start = False
        self._lock = threading.Lock()

    def _start(self, what: dict[str, Any]) -> dict[str, Any]:
        if self.fail_start:
            raise RuntimeError("no capacity")
        time.sleep(0.05)  # widen the race window
        with self._lock:
            self.started.append(what)
            return {"runner": self.name, "n": len(self.started)}

    def start_session(self, session: dict[str, Any]) -> dict[str, Any]:
        return self._start(session)

    def start_batch(self, job: dict[str, Any]) -> dict[str, Any]:
        return self._start(job)

    def probe(self, handle: dict[str, Any]) -> Probe:
        return self.state

    def cancel(self, handle: dict[str, Any]) -> None:
        self.cancelled.append(handle)


@pytest.fixture
def runner(aws: None) -> Iterator[FakeRunner]:
    from chalicelib import sessions

    fake = FakeRunner()
    sessions.use_runner(fake)
    yield fake
    sessions.use_runner(None)


def new_job(session_id: str | None, code: str = "select 1") -> dict[str, Any]:
    from chalicelib import jobs

    return jobs.new_job(jobs.JobRequest(owner=OWNER, code=code, run_type="sql", session_id=session_id))


def driver_running(session_id: str, exec_id: str | None = None, beat: float | None = None) -> dict[str, Any]:
    """Play the driver: session running with a heartbeat, ``exec_id`` claimed."""
    from chalicelib.store import jobs as job_store
    from chalicelib.store import sessions as session_store

    session = session_store.get_session(session_id)
    assert session is not None
    gen = int(session["generation"])
    session_store.update_session_fields(
        session_id, gen, {"state": "running", "heartbeat_at": beat or time.time(), "current_exec_id": exec_id}
    )
    if exec_id:
        assert job_store.transition(exec_id, ("Scheduled",), "Running", {"driver_generation": gen}, dequeue=True)
    return session_store.get_session(session_id) or {}


def test_concurrent_submitters_start_one_driver(runner: FakeRunner) -> None:
    from chalicelib import sessions

    barrier = threading.Barrier(6)
    got: list[dict[str, Any]] = []

    def submit() -> None:
        barrier.wait()
        got.append(sessions.ensure_session_driver("s-race", OWNER.user_id, None))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runner.started) == 1
    assert {int(s["generation"]) for s in got} == {1}
    from chalicelib.store import sessions as session_store

    [live] = [s for s in session_store.live_sessions() if s["session_id"] == "s-race"]
    assert live["state"] == "starting" and live["runner_handle"] == {"runner": "fake", "n": 1}


def test_live_driver_is_reused_and_a_stale_one_replaced(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import jobs as job_store
    from chalicelib.store import sessions as session_store

    first = new_job("s-1")
    sessions.dispatch(first)
    driver_running("s-1", first["exec_id"])
    sessions.dispatch(new_job("s-1"))
    assert len(runner.started) == 1
    with pytest.raises(Exception, match="another user"):
        sessions.ensure_session_driver("s-1", "u-other", None)
    # the driver stops heartbeating: the next dispatch replaces it and fails the job it held
    session_store.update_session_fields("s-1", 1, {"heartbeat_at": time.time() - 120})
    after = sessions.dispatch(new_job("s-1"))
    assert int(after["generation"]) == 2 and len(runner.started) == 2
    failed = job_store.get_job(first["exec_id"])
    assert failed is not None and failed["status"] == "Failed" and "no heartbeat" in failed["error"]


def test_heartbeat_monitor_fails_the_dead_drivers_job_and_restarts_for_queued_work(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import jobs as job_store
    from chalicelib.store import sessions as session_store

    running, queued = new_job("s-dead"), new_job("s-dead")
    sessions.dispatch(running)
    driver_running("s-dead", running["exec_id"])
    assert sessions.check_heartbeats() == []  # alive: nothing to do
    runner.state = "failed"  # the process is gone (SIGKILL, out of memory)
    [action] = sessions.check_heartbeats()
    assert action["failed_exec_id"] == running["exec_id"] and action["restarted_generation"] == 2
    job = job_store.get_job(running["exec_id"])
    assert job is not None and job["status"] == "Failed" and job["error"].startswith("driver died")
    waiting = job_store.get_job(queued["exec_id"])
    assert waiting is not None and waiting["status"] == "Scheduled"
    assert [q["exec_id"] for q in job_store.queued_jobs("s-dead")] == [queued["exec_id"]]
    session = session_store.get_session("s-dead")
    assert session is not None and int(session["generation"]) == 2 and session["state"] == "starting"
    assert runner.cancelled  # the old process is made sure of


def test_stale_heartbeat_and_slow_start_are_judged_by_time(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import sessions as session_store

    runner.state = "unknown"
    sessions.ensure_session_driver("s-beat", OWNER.user_id, None)
    beat = time.time()
    driver_running("s-beat", beat=beat)
    assert sessions.check_heartbeats(beat + 10) == []
    [action] = sessions.check_heartbeats(beat + settings().heartbeat_stale_seconds + 1)
    assert "no heartbeat" in action["reason"] and action["restarted_generation"] is None  # nothing queued
    assert all(s["session_id"] != "s-beat" for s in session_store.live_sessions())
    gone = session_store.get_session("s-beat")
    assert gone is not None and gone["state"] == "dead"
    sessions.ensure_session_driver("s-slow", OWNER.user_id, None)
    assert sessions.check_heartbeats(time.time() + 5) == []
    [late] = sessions.check_heartbeats(time.time() + settings().driver_start_timeout_seconds + 1)
    assert late["session_id"] == "s-slow" and "did not start" in late["reason"]


def test_schedule_monitor_thread_runs_the_tick(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.local.monitor import ScheduleMonitor
    from chalicelib.store import jobs as job_store

    job = new_job("s-mon")
    sessions.dispatch(job)
    driver_running("s-mon", job["exec_id"])
    runner.state = "finished"
    monitor = ScheduleMonitor(every=0.05)
    monitor.start()
    try:
        deadline = time.monotonic() + 10
        while (job_store.get_job(job["exec_id"]) or {}).get("status") != "Failed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        monitor.stop()
    assert monitor.ticks >= 1


def test_schedule_handler_is_a_thin_tick(runner: FakeRunner) -> None:
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        result = client.lambda_.invoke(
            "on_schedule", client.events.generate_cw_event("Scheduled Event", "aws.events", {}, [])
        )
    assert result.payload["heartbeats"] == []


def test_stop_session_cancels_queued_and_flags_running(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import jobs as job_store

    running, queued = new_job("s-stop"), new_job("s-stop")
    sessions.dispatch(running)
    driver_running("s-stop", running["exec_id"])
    session = sessions.stop_session("s-stop")
    assert session is not None and session["stop_requested"] is True
    q = job_store.get_job(queued["exec_id"])
    r = job_store.get_job(running["exec_id"])
    assert q is not None and q["status"] == "Cancelled"
    assert r is not None and r["status"] == "Running" and r["cancel_requested"] is True
    # a session whose driver never came up is retired at once
    sessions.ensure_session_driver("s-never", OWNER.user_id, None)
    stopped = sessions.stop_session("s-never")
    assert stopped is not None and stopped["state"] == "stopped"
    assert sessions.stop_session("s-unknown") is None


def test_batch_dispatch_records_its_driver_and_fails_when_it_cannot_start(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import jobs as job_store

    job = new_job(None)
    record = sessions.dispatch(job)
    assert record["kind"] == "batch" and record["current_exec_id"] == job["exec_id"]
    stored = job_store.get_job(job["exec_id"])
    assert stored is not None and stored["runner_handle"] == {"runner": "fake", "n": 1}
    runner.state = "failed"  # died before claiming: the batch job fails (no one else would run it)
    [action] = [a for a in sessions.check_heartbeats() if a["session_id"] == record["session_id"]]
    assert action["failed_exec_id"] == job["exec_id"]
    runner.fail_start = True
    doomed = new_job(None)
    with pytest.raises(RuntimeError):
        sessions.dispatch(doomed)
    after = job_store.get_job(doomed["exec_id"])
    assert after is not None and after["status"] == "Failed" and "no capacity" in after["error"]


def test_a_claim_names_the_job_and_moves_it_in_one_write_or_not_at_all(runner: FakeRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import jobs as job_store
    from chalicelib.store import sessions as session_store

    first, second = new_job("s-claim"), new_job("s-claim")
    sessions.dispatch(first)
    gen = int((session_store.get_session("s-claim") or {})["generation"])
    [queued, _] = job_store.queued_jobs("s-claim")
    claimed = job_store.claim_for_session(queued, "s-claim", gen, {"driver_generation": gen})
    assert claimed is not None and claimed["status"] == "Running" and claimed["exec_id"] == first["exec_id"]
    stored = job_store.get_job(first["exec_id"])
    assert stored is not None and {k: stored[k] for k in ("status", "driver_generation")} == {
        "status": "Running",
        "driver_generation": gen,
    }
    assert (session_store.get_session("s-claim") or {})["current_exec_id"] == first["exec_id"]
    assert [q["exec_id"] for q in job_store.queued_jobs("s-claim")] == [second["exec_id"]]  # out of the queue
    assert job_store.claim_for_session(queued, "s-claim", gen, {}) is None  # taken already: nothing written
    assert (session_store.get_session("s-claim") or {})["current_exec_id"] == first["exec_id"]
    # a superseded driver claims nothing: neither the session nor the Job changes
    with pytest.raises(job_store.Superseded):
        job_store.claim_for_session(dict(second), "s-claim", gen - 1, {})
    after = job_store.get_job(second["exec_id"])
    assert after is not None and after["status"] == "Scheduled"
    assert (session_store.get_session("s-claim") or {})["current_exec_id"] == first["exec_id"]
