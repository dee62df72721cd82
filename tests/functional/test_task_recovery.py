"""Starts interrupted by a crash never keep a work busy; cancel always ends the run; one active task for BATCH too.

A start is three writes (task claiming the work, Job, Job ids on the task). These tests stop the
starter between them with an exception that nothing catches (as a process dying would) and check
who ends the orphan: the schedule tick's sweep, the next start, or a cancel, after the grace period.
The compute is faked (moto, no Spark); tests/engine/test_work_runs.py runs the real drivers.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


HOUR_AGO = "2020-01-01T00:00:00Z"


class Crash(BaseException):
    """The starting process dies here (nothing in the product catches a BaseException)."""


@pytest.fixture
def dispatched(aws: None, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Jobs handed to dispatch (recorded, not run); works run tests/fixtures/count_trips.sql."""
    from chalicelib import submit

    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(FIXTURES))
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(submit, "dispatch", seen.append)
    return seen


@pytest.fixture
def owner(dispatched: list[dict[str, Any]]) -> Any:
    """The user owning the works under test."""
    from chalicelib.tokens import Principal

    return Principal("u-recovery", "recovery")


def _work(owner: Any, name: str = "w", **fields: Any) -> dict[str, Any]:
    from chalicelib import works

    body = {
        "name": name,
        "description": "d",
        "type": "BATCH",
        "category": "SPARK_SQL",
        "work_directory": "count_trips.sql",
        "extra_params": ["-Dcsv=/tmp/x.csv", "-Dmin_fare=2"],
        **fields,
    }
    return works.get_owned_work(owner, works.create_work(owner, body)["work_id"])


def _active_task_id(work_id: str) -> Any:
    from chalicelib.store import works as work_store

    return (work_store.get_work(work_id) or {}).get("active_task_id")


def _backdate_task(task_id: str) -> None:
    """Make the task look written an hour ago (well past the start grace period)."""
    from chalicelib.store import tasks as task_store

    task_store.update_task_fields(task_id, {"created_at": HOUR_AGO})


def _crash_in(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash(name)

    monkeypatch.setattr(module, name, crash)


def _start_and_crash(owner: Any, work: dict[str, Any], monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> str:
    """Start a task that dies at ``module.name``; answers the orphan task's id."""
    from chalicelib import tasks

    with monkeypatch.context() as mp:
        _crash_in(mp, module, name)
        with pytest.raises(Crash):
            tasks.start_task(owner, work)
    task_id = _active_task_id(work["work_id"])
    assert task_id, "the crashed start should have claimed the work"
    return str(task_id)


def test_crash_before_the_job_is_created_frees_the_work_after_the_grace_period(
    owner: Any, dispatched: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import jobs, tasks, works
    from chalicelib.errors import StateConflict
    from chalicelib.work_schedule import run_due_works

    # a weekly work whose slot (Monday 00:00 local) is not this minute, so the tick only sweeps
    now = datetime.now(UTC)
    monday_midnight = now.weekday() == 0 and now.hour == 0 and now.minute == 0
    work = _work(owner, run_frequency="weekly", timezone="Asia/Tokyo" if monday_midnight else "UTC")
    orphan = _start_and_crash(owner, work, monkeypatch, jobs, "new_job")
    # within the grace period the starter may only be slow: the work stays busy, reads change nothing
    assert tasks.owned_task(owner, orphan)["status"] == 7
    with pytest.raises(StateConflict):
        tasks.start_task(owner, work)
    with pytest.raises(StateConflict):
        works.delete_work(owner, work["work_id"], None)
    assert tasks.sweep_active() == 0 and _active_task_id(work["work_id"]) == orphan

    # past it, the schedule tick's sweep ends the orphan (conditional write) and frees the work
    _backdate_task(orphan)
    assert run_due_works(datetime.now(UTC)) == []
    assert _active_task_id(work["work_id"]) is None
    ended = tasks.owned_task(owner, orphan)
    assert ended["status"] == 3 and ended["ended_at"] and ended["run_time"] is None
    assert "process starting it stopped before creating its Job" in ended["error"]
    assert tasks.sweep_active() == 0  # nothing left to settle

    # the failed orphan can be retried like any failed task, and the retry really starts
    retry = tasks.retry_task(owner, orphan)
    assert (retry["attempt"], retry["retry_of"], retry["status"]) == (2, orphan, 2)
    assert [j["exec_id"] for j in dispatched] == [retry["exec_id"]]


def test_crash_between_the_job_and_its_attachment_cancels_the_unrecorded_job(
    owner: Any, dispatched: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import tasks, work_runs
    from chalicelib.store import jobs as job_store
    from chalicelib.store import tasks as task_store

    work = _work(owner)
    orphan = _start_and_crash(owner, work, monkeypatch, task_store, "attach_job")
    made = job_store.get_job(work_runs.task_exec_id(orphan))  # the Job the crashed starter made
    assert made is not None and made["status"] == "Scheduled" and dispatched == []

    _backdate_task(orphan)
    tasks.sweep_active()
    assert _active_task_id(work["work_id"]) is None
    assert tasks.owned_task(owner, orphan)["status"] == 3
    left = job_store.get_job(made["exec_id"])
    assert left is not None and left["status"] == "Cancelled" and "task ended" in left["error"]


def test_next_start_notices_an_orphan_without_waiting_for_the_tick(owner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import jobs, tasks

    work = _work(owner)
    orphan = _start_and_crash(owner, work, monkeypatch, jobs, "new_job")
    _backdate_task(orphan)
    task = tasks.start_task(owner, work)
    assert task["status"] == 2 and _active_task_id(work["work_id"]) == task["task_id"]
    assert tasks.owned_task(owner, orphan)["status"] == 3


def test_a_slow_starter_that_lost_to_the_sweep_never_runs_its_job(
    owner: Any, dispatched: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import jobs, tasks
    from chalicelib.store import jobs as job_store

    work = _work(owner)
    real_new_job = jobs.new_job
    made: list[dict[str, Any]] = []

    def slow_new_job(request: jobs.JobRequest) -> dict[str, Any]:
        # the starter stalls after writing its task; meanwhile the grace period passes and a tick sweeps
        _backdate_task(str(request.source["task_id"]))
        assert tasks.sweep_active() == 1
        made.append(real_new_job(request))
        return made[-1]

    monkeypatch.setattr(jobs, "new_job", slow_new_job)
    task = tasks.start_task(owner, work)
    # the sweep's write won: the task ended without a Job, and the Job made too late was cancelled unrun
    assert task["status"] == 3 and task["exec_id"] is None and "did not start" in task["error"]
    assert dispatched == []
    late = job_store.get_job(made[0]["exec_id"])
    assert late is not None and late["status"] == "Cancelled"
    assert _active_task_id(work["work_id"]) is None


def test_crash_before_dispatch_fails_the_queued_job_after_the_grace_period(
    owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import submit, tasks
    from chalicelib.store import jobs as job_store

    work = _work(owner, type="STREAMING")
    orphan = _start_and_crash(owner, work, monkeypatch, submit, "dispatch")
    task = tasks.owned_task(owner, orphan)
    assert task["status"] == 2 and task["exec_id"]  # the Job exists, queued, with no driver ever started
    assert tasks.sweep_active() == 0

    job_store.update_job_fields(task["exec_id"], {"created_at": HOUR_AGO})
    assert tasks.sweep_active() == 1
    job = job_store.get_job(task["exec_id"])
    assert job is not None and job["status"] == "Failed" and "before starting its driver" in job["error"]
    assert tasks.owned_task(owner, orphan)["status"] == 3
    assert _active_task_id(work["work_id"]) is None


def test_a_queued_job_whose_driver_record_exists_is_left_to_the_heartbeat_check(
    owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import tasks
    from chalicelib.engine.config import batch_driver_id
    from chalicelib.store import jobs as job_store
    from chalicelib.store import sessions as session_store

    work = _work(owner)
    task = tasks.start_task(owner, work)
    record = {"session_id": batch_driver_id(task["exec_id"]), "owner": owner.user_id, "kind": "batch"}
    assert session_store.put_session({**record, "generation": 1, "state": "starting"}, expected_generation=None)
    job_store.update_job_fields(task["exec_id"], {"created_at": HOUR_AGO})
    assert tasks.sweep_active() == 0
    assert tasks.owned_task(owner, task["task_id"])["status"] == 2


def test_cancel_of_a_task_whose_job_was_never_created(owner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import jobs, tasks
    from chalicelib.store import tasks as task_store

    work = _work(owner)
    orphan = _start_and_crash(owner, work, monkeypatch, jobs, "new_job")
    cancelled = tasks.cancel_task(owner, orphan)
    assert cancelled["status"] == 4 and cancelled["ended_at"] and "before its Job was created" in cancelled["error"]
    assert _active_task_id(work["work_id"]) is None
    assert not task_store.attach_job(orphan, "late-exec-id", 1)  # a starter still alive would lose
    assert tasks.cancel_task(owner, orphan)["status"] == 4  # idempotent


def test_cancel_kills_a_driver_that_does_not_stop_and_records_cancelled(
    owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import tasks
    from chalicelib.runners.local import _proc_start_time
    from chalicelib.store import jobs as job_store

    work = _work(owner, type="STREAMING")
    task = tasks.start_task(owner, work)
    # a "driver" that never looks at cancel_requested: a process in its own group, as LocalRunner starts them
    driver = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        handle = {"runner": "local", "pid": driver.pid, "start_time": _proc_start_time(driver.pid)}
        assert job_store.transition(task["exec_id"], ("Scheduled",), "Running", {"started_at": "2024-01-01T00:00:00Z"})
        job_store.update_job_fields(task["exec_id"], {"runner_handle": handle})
        monkeypatch.setattr(tasks, "CANCEL_WAIT_SECONDS", 0.5)
        asked = time.monotonic()
        cancelled = tasks.cancel_task(owner, task["task_id"])
        assert time.monotonic() - asked < 10
        assert cancelled["status"] == 4 and "was killed" in cancelled["error"] and cancelled["ended_at"]
        assert driver.wait(timeout=10) < 0  # ended by a signal
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert _active_task_id(work["work_id"]) is None


def test_batch_works_have_one_active_task_too(owner: Any) -> None:
    from chalicelib import tasks
    from chalicelib.errors import StateConflict
    from chalicelib.store import jobs as job_store

    work = _work(owner, type="BATCH")
    first = tasks.start_task(owner, work)
    with pytest.raises(StateConflict) as refused:
        tasks.start_task(owner, work)
    assert refused.value.code == 409102

    def finish(exec_id: str, status: str) -> Any:
        return job_store.transition(exec_id, ("Scheduled",), status, {"ended_at": "2024-01-01T00:00:00Z"})

    assert finish(first["exec_id"], "Failed")
    second = tasks.start_task(owner, work)  # the work is free once the first ended
    with pytest.raises(StateConflict):  # a retry is a run too: not while another is active
        tasks.retry_task(owner, first["task_id"])
    assert finish(second["exec_id"], "Succeed")
    assert tasks.retry_task(owner, first["task_id"])["attempt"] == 2
