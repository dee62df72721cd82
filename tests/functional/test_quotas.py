"""Per-user caps on live sessions and queued + running Jobs, in every surface's envelope.

Session drivers come from a fake runner (the real ``sessions`` module decides, nothing starts a JVM);
Jobs stay queued unless a test ends them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import ROOT
from tests.functional.conftest import Api
from tests.functional.test_sessions import FakeRunner
from tests.functional.test_tasks import FIXTURES

EXECUTE = "/api/rest_j/v1/entrance/execute"
SQL = {"executeApplicationName": "spark", "executionCode": "select 1", "runType": "sql", "params": {}}


@pytest.fixture
def runner(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunner]:
    from chalicelib import sessions

    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    fake = FakeRunner()
    sessions.use_runner(fake)
    yield fake
    sessions.use_runner(None)


@pytest.fixture
def api(runner: FakeRunner) -> Iterator[Api]:
    from app import app

    with Client(app, project_dir=str(ROOT), stage_name="local") as client:
        yield Api(client)


def _user(api: Api, name: str) -> str:
    from chalicelib.users import ensure_user

    ensure_user(name, f"{name}-password-1", admin=False)
    return api.login(name, f"{name}-password-1")


def _end(exec_id: str, status: str = "Cancelled") -> None:
    from chalicelib.store import jobs as job_store

    assert job_store.transition(exec_id, ("Scheduled", "Running"), status, {"ended_at": "2024-01-01T00:00:00Z"})


def _user_jobs(token: str) -> list[dict[str, Any]]:
    from chalicelib.store import jobs as job_store
    from chalicelib.tokens import verify_token

    return job_store.user_jobs(verify_token(token).user_id)


def test_job_cap_in_the_linkis_envelope(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", "2")
    alice, bob = _user(api, "alice"), _user(api, "bob")
    first = api.call("POST", EXECUTE, SQL, alice)
    assert first[0] == 200 and first[1]["status"] == 0, first[1]
    assert api.call("POST", EXECUTE, SQL, alice)[0] == 200
    status, body, _ = api.call("POST", EXECUTE, SQL, alice)
    assert status == 429, body
    assert body["method"] == EXECUTE and body["status"] == 1 and body["data"] == {"errorType": "QuotaExceeded"}
    assert "you have 2, at most 2" in body["message"] and "SPARKGATE_MAX_ACTIVE_JOBS_PER_USER" in body["message"]
    assert len(_user_jobs(alice)) == 2  # the refused call made nothing
    assert api.call("POST", EXECUTE, SQL, bob)[0] == 200  # caps are per user
    # a Job that ended frees its slot (whoever ended it: here the store directly, as the engine would)
    _end(first[1]["data"]["execID"], "Succeed")
    assert api.call("POST", EXECUTE, SQL, alice)[0] == 200
    assert api.call("POST", EXECUTE, SQL, alice)[0] == 429
    # the kill route ends a queued Job at once, which frees a slot too
    queued = [j for j in _user_jobs(alice) if j["status"] == "Scheduled"]
    killed = api.call("GET", f"/api/rest_j/v1/entrance/{queued[0]['exec_id']}/kill", None, alice)
    assert killed[0] == 200 and killed[1]["data"]["status"] == "Cancelled"
    assert api.call("POST", EXECUTE, SQL, alice)[0] == 200
    # a request that cannot run is still a 400, never counted
    assert api.call("POST", EXECUTE, {**SQL, "runType": "scala"}, alice)[0] == 400


def test_job_cap_in_the_geo_envelope(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", "2")
    ann = _user(api, "ann")
    assert api.call("POST", "/scope", {"scope": "s"}, ann)[0] == 200
    for _ in range(2):
        assert api.call("POST", "/query", {"scope": "s", "sql": "select 1"}, ann)[0] == 202
    status, body, _ = api.call("POST", "/query", {"scope": "s", "sql": "select 1"}, ann)
    assert status == 429 and body["status"] == "error" and body["code"] == 429, body
    assert "SPARKGATE_MAX_ACTIVE_JOBS_PER_USER" in body["message"]
    params = {"width": 8, "height": 8, "bounding_box": [0, 0, 1, 1]}
    map_answer = api.call("POST", "/pointmap", {"scope": "s", "sql": "select 1", "params": params}, ann)
    assert map_answer[0] == 429 and map_answer[1]["code"] == 429
    # the entrance and geo Jobs share one cap
    assert api.call("POST", EXECUTE, SQL, ann)[0] == 429


def test_job_cap_fails_a_works_run_with_the_reason(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import submit

    monkeypatch.setenv("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", "1")
    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(FIXTURES))
    monkeypatch.setattr(submit, "dispatch", lambda job: None)
    alice = _user(api, "alice")
    ids = []
    for name in ("a", "b"):
        body: dict[str, Any] = {"name": name, "description": "d", "type": "BATCH", "category": "SPARK_SQL"}
        body.update(work_directory="count_trips.sql", extra_params=["-Dcsv=x", "-Dmin_fare=1"])
        status, got, _ = api.call("POST", "/api/v1/works", body, alice)
        assert status == 201, got
        ids.append(got["data"]["work_id"])
    status, first, _ = api.call("POST", f"/api/v1/works/{ids[0]}/tasks", None, alice)
    assert status == 201 and first["code"] == 0 and first["data"]["status"] == 2, first
    # at the cap a run (manual or scheduled) is created and fails at once, the quota named in its error
    status, second, _ = api.call("POST", f"/api/v1/works/{ids[1]}/tasks", None, alice)
    assert status == 201 and second["data"]["status"] == 3, second
    assert "too many queued or running Jobs" in second["data"]["error"]
    assert "SPARKGATE_MAX_ACTIVE_JOBS_PER_USER" in second["data"]["error"]
    # the failed run did not keep a slot, nor its work: once the first run ends, a retry runs
    api.call("POST", f"/api/v1/tasks/{first['data']['task_id']}/cancel", None, alice)
    status, retry, _ = api.call("POST", f"/api/v1/tasks/{second['data']['task_id']}/retry", None, alice)
    assert status == 201 and retry["data"]["status"] == 2, retry


def test_quota_error_in_the_works_envelope() -> None:
    import json

    from chalicelib.dialects import GeoDialect, LinkisDialect, WorksDialect
    from chalicelib.errors import QuotaExceeded

    err = QuotaExceeded("too many")
    works = WorksDialect().error(err, "/api/v1/works/x/tasks")
    assert works.status_code == 429 and json.loads(works.body) == {"code": 429100, "msg": "too many"}
    geo = GeoDialect().error(err, "/query")
    assert geo.status_code == 429 and json.loads(geo.body) == {"status": "error", "code": 429, "message": "too many"}
    linkis = LinkisDialect().error(err, EXECUTE)
    assert linkis.status_code == 429 and json.loads(linkis.body)["status"] == 1


def test_session_cap_across_geo_and_the_entrance(api: Api, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_MAX_SESSIONS_PER_USER", "2")
    ann, bob = _user(api, "ann"), _user(api, "bob")
    for scope in ("s1", "s2"):
        assert api.call("POST", "/scope", {"scope": scope}, ann)[0] == 200  # recorded, no driver yet
    assert api.call("POST", "/session", {"scope": "s1", "session": "a"}, ann)[0] == 200
    assert api.call("POST", "/query", {"scope": "s1", "sql": "select 1"}, ann)[0] == 202  # starts s1/spark
    assert len(runner.started) == 2
    # a third driver: refused in the geo envelope, and nothing is left behind
    status, body, _ = api.call("POST", "/session", {"scope": "s2", "session": "b"}, ann)
    assert status == 429 and body == {"status": "error", "code": 429, "message": body["message"]}
    assert "too many live Spark sessions" in body["message"] and "SPARKGATE_MAX_SESSIONS_PER_USER" in body["message"]
    status, body, _ = api.call("POST", "/query", {"scope": "s2", "sql": "select 1"}, ann)
    assert status == 429 and body["code"] == 429
    # ... and in the Linkis envelope: the entrance's warm session counts too; no Job is queued
    jobs_before = len(_user_jobs(ann))
    status, body, _ = api.call("POST", EXECUTE, SQL, ann)
    assert status == 429 and body["status"] == 1 and body["data"]["errorType"] == "QuotaExceeded", body
    assert len(_user_jobs(ann)) == jobs_before and len(runner.started) == 2
    # a live session is reused freely: more Jobs in it are fine
    assert api.call("POST", "/query", {"scope": "s1", "sql": "select 2"}, ann)[0] == 202
    assert api.call("POST", "/query", {"scope": "s1", "session": "a", "sql": "select 3"}, ann)[0] == 202
    # another user is not affected
    assert api.call("POST", EXECUTE, SQL, bob)[0] == 200
    # deleting a scope stops its drivers and frees their slots at once
    assert api.call("POST", "/session", {"scope": "s2", "session": "b"}, ann)[0] == 429
    assert api.call("DELETE", "/scope/s1", None, ann)[0] == 200
    assert api.call("POST", "/session", {"scope": "s2", "session": "b"}, ann)[0] == 200
    assert api.call("POST", EXECUTE, SQL, ann)[0] == 200


def test_dead_drivers_stop_counting(api: Api, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import quotas
    from chalicelib.store import sessions as session_store

    monkeypatch.setenv("SPARKGATE_MAX_SESSIONS_PER_USER", "1")
    ann = _user(api, "ann")
    assert api.call("POST", EXECUTE, SQL, ann)[0] == 200
    assert api.call("POST", "/scope", {"scope": "s"}, ann)[0] == 200
    assert api.call("POST", "/query", {"scope": "s", "sql": "select 1"}, ann)[0] == 429
    # the entrance driver dies (retired as the heartbeat monitor does); after the grace it no longer counts
    (session,) = [s for s in session_store.live_sessions() if s["session_id"].startswith("entrance-")]
    assert session_store.retire_session(session["session_id"], int(session["generation"]), {"state": "dead"})
    monkeypatch.setattr(quotas, "GRACE_SECONDS", 0.0)
    assert api.call("POST", "/query", {"scope": "s", "sql": "select 1"}, ann)[0] == 202


def test_reservations_are_exact_under_a_race(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten requests race for three slots: the conditional write lets exactly three through."""
    from chalicelib import quotas
    from chalicelib.errors import QuotaExceeded
    from chalicelib.store import quotas as quota_store

    monkeypatch.setenv("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", "3")
    outcomes: list[str] = []
    gate = threading.Barrier(10)

    def take(i: int) -> None:
        gate.wait()
        try:
            quotas.reserve_job("racer", f"job-{i}")
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 7
    assert len(quota_store.holdings("racer", "jobs")) == 3


def test_reservations_being_made_are_kept_and_abandoned_ones_freed(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot whose Job is not written yet counts (it is being made) until the grace has passed."""
    from chalicelib import quotas
    from chalicelib.errors import QuotaExceeded

    monkeypatch.setenv("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", "1")
    quotas.reserve_job("u", "being-made")
    with pytest.raises(QuotaExceeded):
        quotas.reserve_job("u", "next")
    quotas.reserve_job("u", "being-made")  # renewing one's own slot is free
    monkeypatch.setattr(quotas, "GRACE_SECONDS", 0.0)  # as if the grace had passed
    quotas.reserve_job("u", "next")  # the Job never appeared: its slot was abandoned
    monkeypatch.setenv("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", "0")  # 0: no cap
    for i in range(5):
        quotas.reserve_job("u", f"free-{i}")
