"""The works schedule with a controllable clock: slots once each, overlapping ticks, downtime, pause."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.functional.conftest import Api
from tests.functional.test_tasks import FIXTURES


@pytest.fixture
def done_at_once(monkeypatch: pytest.MonkeyPatch, api: Api) -> list[dict[str, Any]]:
    """Dispatch ends every job Succeed at once, so the work is free for its next slot."""
    from chalicelib import submit
    from chalicelib.store import jobs as job_store

    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(FIXTURES))
    seen: list[dict[str, Any]] = []

    def dispatch(job: dict[str, Any]) -> None:
        seen.append(job)
        job_store.transition(job["exec_id"], ("Scheduled",), "Running", {"started_at": "2024-01-01T00:00:00Z"})
        job_store.transition(job["exec_id"], ("Running",), "Succeed", {"ended_at": "2024-01-01T00:00:05Z"})

    monkeypatch.setattr(submit, "dispatch", dispatch)
    return seen


def _work(api: Api, token: str, frequency: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"w-{frequency}-{len(fields)}",
        "description": "d",
        "type": "BATCH",
        "category": "SPARK_SQL",
        "work_directory": "count_trips.sql",
        "extra_params": ["-Dcsv=x", "-Dmin_fare=1"],
        "run_frequency": frequency,
        **fields,
    }
    status, got, _ = api.call("POST", "/api/v1/works", body, token)
    assert status == 201, got
    work: dict[str, Any] = got["data"]
    return work


def _next_hour() -> datetime:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)


def _tasks(api: Api, token: str, work_id: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = api.call("GET", f"/api/v1/works/{work_id}/tasks?limit=100", None, token)[1]["data"]
    return got


def test_hourly_slots_fire_once_each_and_downtime_runs_once(api: Api, done_at_once: list[dict[str, Any]]) -> None:
    from chalicelib.work_schedule import run_due_works

    token = api.new_user("alice")
    work = _work(api, token, "hourly")
    assert run_due_works(datetime.now(UTC)) == []  # the current hour began before the work existed
    h = _next_hour()
    first = run_due_works(h + timedelta(seconds=20))
    assert len(first) == 1
    assert run_due_works(h + timedelta(minutes=1)) == []  # same slot, next tick
    assert run_due_works(h + timedelta(seconds=20)) == []  # a retried tick
    assert len(run_due_works(h + timedelta(hours=1, minutes=1))) == 1
    # four hours of downtime: one catch-up run for the latest missed slot, not four
    assert len(run_due_works(h + timedelta(hours=5, minutes=30))) == 1
    assert run_due_works(h + timedelta(hours=5, minutes=31)) == []
    tasks = _tasks(api, token, work["work_id"])
    assert len(tasks) == 3 and all(t["status"] == 0 for t in tasks)
    detail = api.call("GET", f"/api/v1/tasks/{first[0]}", None, token)[1]["data"]
    assert detail["trigger"] == "schedule" and detail["slot"] == (h).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_overlapping_ticks_do_not_double_run(api: Api, done_at_once: list[dict[str, Any]]) -> None:
    from chalicelib.work_schedule import run_due_works

    token = api.new_user("alice")
    _work(api, token, "hourly")
    moment = _next_hour() + timedelta(seconds=5)
    started: list[str] = []
    barrier = threading.Barrier(3)

    def tick() -> None:
        barrier.wait()
        started.extend(run_due_works(moment))

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1 and len(done_at_once) == 1


def test_paused_deleted_and_once(api: Api, done_at_once: list[dict[str, Any]]) -> None:
    from chalicelib.work_schedule import run_due_works

    token = api.new_user("alice")
    paused = _work(api, token, "hourly", paused=True)
    once = _work(api, token, "once")
    gone = _work(api, token, "daily")
    assert api.call("DELETE", f"/api/v1/works/{gone['work_id']}", None, token)[0] == 200
    h = _next_hour()
    started = run_due_works(h + timedelta(days=2))
    assert len(started) == 1 and _tasks(api, token, once["work_id"])[0]["task_id"] == started[0]
    assert run_due_works(h + timedelta(days=3)) == []  # once means once
    assert _tasks(api, token, paused["work_id"]) == []
    # unpausing: the next slot runs
    status, got, _ = api.call("PATCH", f"/api/v1/works/{paused['work_id']}", {"paused": False}, token)
    assert status == 200, got
    assert len(run_due_works(h + timedelta(days=3, hours=1))) == 1


def test_busy_work_skips_its_slot(
    api: Api, monkeypatch: pytest.MonkeyPatch, done_at_once: list[dict[str, Any]]
) -> None:
    from chalicelib import submit
    from chalicelib.work_schedule import run_due_works

    monkeypatch.setattr(submit, "dispatch", lambda job: None)  # the run stays queued: the work is busy
    token = api.new_user("alice")
    _work(api, token, "hourly")
    h = _next_hour()
    assert len(run_due_works(h)) == 1
    assert run_due_works(h + timedelta(hours=1)) == []  # runs never overlap; the slot is skipped


def test_daily_and_weekly_slots_follow_the_timezone() -> None:
    from chalicelib.work_schedule import latest_slot

    now = datetime(2024, 3, 6, 15, 30, tzinfo=UTC)  # a Wednesday; 23:30 in Shanghai
    assert latest_slot("daily", now, "Asia/Shanghai") == datetime(2024, 3, 5, 16, 0, tzinfo=UTC)
    assert latest_slot("daily", now, "UTC") == datetime(2024, 3, 6, 0, 0, tzinfo=UTC)
    assert latest_slot("weekly", now, "UTC") == datetime(2024, 3, 4, 0, 0, tzinfo=UTC)  # Monday
    assert latest_slot("weekly", now, "America/New_York") == datetime(2024, 3, 4, 5, 0, tzinfo=UTC)
    assert latest_slot("hourly", now, "Asia/Kolkata") == datetime(2024, 3, 6, 15, 30, tzinfo=UTC)  # +05:30
