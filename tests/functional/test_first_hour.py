"""A newcomer's first hour (issue 14), the parts that need no JVM: a cold start says so in the Job's log
and in the geo 202; a draft work (no ``work_directory``) is never due, so ``once`` does not fail at the
first tick; scheduled runs are recorded under the owner's username; the task list shows a task's error
and its Job; a ``work_directory`` outside the roots is refused when the work is PATCHed.

Session drivers come from a fake runner (nothing starts a JVM); the session stays ``starting`` until a
test marks it running.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import ROOT
from tests.functional.conftest import Api
from tests.functional.test_sessions import FakeRunner
from tests.functional.test_tasks import FIXTURES

EXECUTE = "/api/rest_j/v1/entrance/execute"
SQL = {"executeApplicationName": "spark", "executionCode": "select 1", "runType": "sql", "params": {}}
STARTING = "starting a Spark driver for your session; this usually takes 10-30 s"
#: the line as Linkis writes it: ``yyyy-MM-dd HH:mm:ss.SSS INFO <text>``
STARTING_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO " + re.escape(STARTING) + "$")


@pytest.fixture
def runner(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunner]:
    from chalicelib import sessions

    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(FIXTURES))
    fake = FakeRunner()
    sessions.use_runner(fake)
    yield fake
    sessions.use_runner(None)


@pytest.fixture
def api(runner: FakeRunner) -> Iterator[Api]:
    from app import app

    with Client(app, project_dir=str(ROOT), stage_name="local") as client:
        yield Api(client)


def _log(api: Api, token: str, exec_id: str) -> tuple[str, int]:
    status, body, _ = api.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/log?fromLine=0", None, token)
    assert status == 200, body
    return body["data"]["log"][3], int(body["data"]["fromLine"])


def _warm(session_id: str) -> None:
    """The fake driver reports in: its session is running with a fresh heartbeat."""
    from chalicelib.store import sessions as session_store

    session = session_store.get_session(session_id)
    assert session is not None
    fields = {"state": "running", "heartbeat_at": time.time()}
    assert session_store.update_session_fields(session_id, int(session["generation"]), fields)


# ---- visible start-up -----------------------------------------------------------------------------


def test_a_cold_start_opens_the_jobs_log_and_a_warm_driver_adds_nothing(api: Api) -> None:
    from chalicelib.store import jobs as job_store

    token = api.new_user("alice")
    status, body, _ = api.call("POST", EXECUTE, SQL, token)
    assert status == 200, body
    cold = body["data"]["execID"]
    text, cursor = _log(api, token, cold)
    assert STARTING_LINE.match(text) and cursor == 2  # Linkis's 1-based cursor: line 1 was read
    job = job_store.get_job(cold)
    assert job is not None and int(job["log_lines"]) == 1  # the supervisor continues after it
    _warm(str(job["session_id"]))
    status, body, _ = api.call("POST", EXECUTE, SQL, token)
    assert status == 200, body
    assert _log(api, token, body["data"]["execID"]) == ("", 1)


def test_the_opening_line_is_pushed_like_any_log_line(api: Api) -> None:
    """The line is a log chunk written after its Job, so the stream handler finds the Job and pushes it."""
    from chalicelib import push
    from chalicelib.store import jobs as job_store
    from chalicelib.store.aws import table

    token = api.new_user("alice")
    exec_id = api.call("POST", EXECUTE, SQL, token)[1]["data"]["execID"]
    chunk = table().get_item(Key={"pk": f"JOB#{exec_id}", "sk": "LOG#000000000"})["Item"]
    change = push.Change("INSERT", {"pk": chunk["pk"], "sk": chunk["sk"]}, new=chunk)
    first, lines = push.new_log_lines(change)
    assert first == 0 and len(lines) == 1 and lines[0][0] == "INFO" and STARTING_LINE.match(lines[0][1])
    job = job_store.get_job(exec_id)
    assert job is not None
    pushes = push.log_pushes(job, first, lines)
    assert pushes and STARTING in pushes[0].encode(None).decode()


def test_geo_202_says_the_driver_is_starting(api: Api) -> None:
    token = api.new_user("alice")
    status, body, _ = api.call("POST", "/scope", {"scope": "s1"}, token)
    assert status == 200, body
    status, body, _ = api.call("POST", "/session", {"scope": "s1", "session": "main"}, token)
    assert status == 200, body
    status, body, _ = api.call("POST", "/query", {"scope": "s1", "session": "main", "sql": "select 1"}, token)
    assert status == 202, body
    assert body["driver"] == "starting" and "starting a Spark driver" in body["message"]
    assert "10-30 s" in body["message"]
    assert STARTING_LINE.match(_log(api, token, body["execID"])[0])


def test_a_works_run_opens_its_log_with_its_driver_start(api: Api) -> None:
    token = api.new_user("alice")
    work = _work(api, token, work_directory="count_trips.sql", extra_params=["-Dcsv=x", "-Dmin_fare=1"])
    status, body, _ = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)
    assert status == 201, body
    text, _ = _log(api, token, body["data"]["exec_id"])
    assert text.endswith(" INFO starting a Spark driver for this run; this usually takes 10-30 s")


# ---- works and the schedule -------------------------------------------------------------------------


def _work(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly", "description": "taxi rollup", "type": "BATCH", "category": "SPARK_SQL", **fields}
    status, got, _ = api.call("POST", "/api/v1/works", body, token)
    assert status == 201, got
    work: dict[str, Any] = got["data"]
    return work


def _tasks(api: Api, token: str, work_id: str) -> list[dict[str, Any]]:
    status, got, _ = api.call("GET", f"/api/v1/works/{work_id}/tasks?limit=100", None, token)
    assert status == 200, got
    tasks: list[dict[str, Any]] = got["data"]
    return tasks


def test_a_draft_once_work_waits_for_its_work_directory(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import submit
    from chalicelib.work_schedule import run_due_works

    monkeypatch.setattr(submit, "dispatch", lambda job: None)
    token = api.new_user("alice")
    work = _work(api, token)  # the README's example: no work_directory, run_frequency defaults to once
    assert work["run_frequency"] == "once" and work["work_directory"] is None
    soon = datetime.now(UTC) + timedelta(minutes=1)
    assert run_due_works(soon) == []  # not a failed task the user never started
    assert _tasks(api, token, work["work_id"]) == []
    patch = {"work_directory": "count_trips.sql", "extra_params": ["-Dcsv=x", "-Dmin_fare=1"]}
    status, got, _ = api.call("PATCH", f"/api/v1/works/{work['work_id']}", patch, token)
    assert status == 200, got
    started = run_due_works(soon + timedelta(minutes=1))
    assert len(started) == 1
    assert run_due_works(soon + timedelta(minutes=2)) == []  # once is still once


def test_scheduled_runs_record_the_owners_username(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import submit
    from chalicelib.store import tasks as task_store
    from chalicelib.store import works as work_store
    from chalicelib.work_schedule import owner_username, run_due_works

    monkeypatch.setattr(submit, "dispatch", lambda job: None)
    token = api.new_user("alice")
    work = _work(api, token, work_directory="count_trips.sql", extra_params=["-Dcsv=x", "-Dmin_fare=1"])
    (task_id,) = run_due_works(datetime.now(UTC) + timedelta(minutes=1))
    task = task_store.get_task(task_id)
    assert task is not None
    status, body, _ = api.call("GET", f"/api/rest_j/v1/jobhistory/{task['job_task_id']}/get", None, token)
    assert status == 200, body
    assert body["data"]["task"]["umUser"] == "alice"
    # a work saved before the username was recorded: found in the roster by the owner's id
    stored = work_store.get_work(work["work_id"])
    assert stored is not None and stored["owner_username"] == "alice"
    stored.pop("owner_username")
    assert owner_username(stored) == "alice"
    assert owner_username({"user_id": "f" * 32}) == "f" * 32  # an owner gone from the roster


def test_the_task_list_shows_a_failed_tasks_error_and_its_job(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import submit

    monkeypatch.setattr(submit, "dispatch", lambda job: None)
    token = api.new_user("alice")
    # a variable the SQL needs is missing: the run cannot start, its task fails at once with the reason
    work = _work(api, token, work_directory="count_trips.sql")
    status, body, _ = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)
    assert status == 201 and body["data"]["status"] == 3, body
    (listed,) = _tasks(api, token, work["work_id"])
    assert listed["status"] == 3 and listed["error"] == body["data"]["error"] and "csv" in listed["error"]
    assert listed["exec_id"] == body["data"]["exec_id"] and listed["job_task_id"] == body["data"]["job_task_id"]
    assert isinstance(listed["job_task_id"], int)


def test_patch_with_a_work_directory_outside_the_roots_is_refused_at_patch_time(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = api.new_user("alice")
    work = _work(api, token)
    outside = tmp_path / "elsewhere.sql"
    outside.write_text("select 1")
    for path, said in ((str(outside), "SPARKGATE_WORK_ROOTS"), ("/etc/x.sql", str(FIXTURES)), ("../x.sql", "'..'")):
        status, got, _ = api.call("PATCH", f"/api/v1/works/{work['work_id']}", {"work_directory": path}, token)
        assert status == 400, (path, got)
        assert "work_directory" in got["msg"] and said in got["msg"], got
    status, got, _ = api.call("GET", f"/api/v1/works/{work['work_id']}", None, token)
    assert got["data"]["work_directory"] is None and got["data"]["version"] == 1  # nothing was saved
