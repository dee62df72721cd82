"""The geo surface (spec 004) without Spark: validation, the path allow-list, scope/session conflicts,
owner isolation, the bounded wait (202) and the answer of a finished Job.

The session driver is replaced by a recorder (and, where an answer is needed, by a thread that
finishes the queued Job the way the engine does), so nothing here starts a JVM.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import ROOT
from tests.functional.conftest import Api


class FakeSessions:
    """Records what the domain asks of ``chalicelib.sessions``."""

    def __init__(self) -> None:
        self.ensured: list[tuple[str, str, dict[str, Any]]] = []
        self.stopped: list[str] = []
        self.generation = 1

    def ensure_session_driver(self, session_id: str, owner: str, config: dict[str, Any] | None = None) -> Any:
        self.ensured.append((session_id, owner, dict(config or {})))
        return {"session_id": session_id, "generation": self.generation}

    def stop_session(self, session_id: str) -> None:
        self.stopped.append(session_id)


@pytest.fixture
def fake_sessions(monkeypatch: pytest.MonkeyPatch) -> FakeSessions:
    from chalicelib import sessions

    fake = FakeSessions()
    monkeypatch.setattr(sessions, "ensure_session_driver", fake.ensure_session_driver)
    monkeypatch.setattr(sessions, "stop_session", fake.stop_session)
    return fake


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    (root / "nyc").mkdir(parents=True)
    (root / "nyc" / "taxi.csv").write_text("a,b\n1,2\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("x\n")
    os.symlink(outside, root / "nyc" / "link.csv")
    os.symlink(tmp_path, root / "escape")
    monkeypatch.setenv("SPARKGATE_DATA_ROOTS", f"{tmp_path / 'nowhere'}:{root}")
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    return root


@pytest.fixture
def geo_api(aws: None, fake_sessions: FakeSessions, data_root: Path) -> Iterator[Api]:
    """The app under test, with sessions faked (these tests need no Spark)."""
    from app import app

    with Client(app, project_dir=str(ROOT), stage_name="local") as test_client:
        yield Api(test_client)


def _user(api: Api, name: str) -> str:
    from chalicelib.users import ensure_user

    ensure_user(name, f"{name}-password-1", admin=False)
    return api.login(name, f"{name}-password-1")


def _error(answer: tuple[int, Any, Any], needle: str) -> None:
    status, body, _ = answer
    assert status == 400, body
    assert body["status"] == "error" and body["code"] == 400
    assert needle in body["message"], body["message"]


def test_scope_create_named_unnamed_and_duplicate(geo_api: Api, fake_sessions: FakeSessions) -> None:
    token = _user(geo_api, "ann")
    status, body, _ = geo_api.call("POST", "/scope", {"scope": "s1"}, token)
    assert status == 200 and body == {
        "status": "success",
        "code": 200,
        "message": "create scope successfully!",
        "scope": "s1",
    }
    _error(geo_api.call("POST", "/scope", {"scope": "s1"}, token), "already exists")
    status, body, _ = geo_api.call("POST", "/scope", None, token)
    assert status == 200 and len(body["scope"]) == 32 and int(body["scope"], 16) >= 0
    _error(geo_api.call("POST", "/scope", {"scope": "../x"}, token), "scope must be")
    assert geo_api.call("POST", "/scope", {"scope": "s2"})[0] == 401
    assert fake_sessions.ensured == []  # the default session's driver starts on first use


def test_owner_isolation(geo_api: Api, fake_sessions: FakeSessions) -> None:
    ann, bob = _user(geo_api, "ann"), _user(geo_api, "bob")
    assert geo_api.call("POST", "/scope", {"scope": "mine"}, ann)[0] == 200
    for method, path, body in [
        ("POST", "/command", {"scope": "mine", "command": "1+1"}),
        ("POST", "/query", {"scope": "mine", "sql": "select 1"}),
        ("POST", "/session", {"scope": "mine", "session": "x"}),
        ("GET", "/table/mine/spark/t", None),
        ("GET", "/table/schema?scope=mine&session=spark&table=t", None),
        ("DELETE", "/scope/mine", None),
    ]:
        _error(geo_api.call(method, path, body, bob), "scope not found")
    assert fake_sessions.ensured == [] and fake_sessions.stopped == []
    # names are per user: bob may have his own "mine"
    assert geo_api.call("POST", "/scope", {"scope": "mine"}, bob)[0] == 200


def test_sessions_conflicts_and_master(
    geo_api: Api, fake_sessions: FakeSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _user(geo_api, "ann")
    spark = {"scope": "s", "session": "x", "master-addr": "spark://10.0.0.5:7077"}
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    _error(geo_api.call("POST", "/session", spark, token), "allowed masters")  # not on the default allow-list
    monkeypatch.setenv("SPARKGATE_MASTER_ALLOWLIST", "local[*],local[N],spark://10.0.0.5:7077")
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    _error(geo_api.call("POST", "/session", {"scope": "s", "session": "spark"}, token), "already exists")
    body = {
        "scope": "s",
        "session": "arctern",
        "app_name": "arctern",
        "master-addr": "spark://10.0.0.5:7077",
        "configs": {"spark.executor.memory": "2g"},
        "envs": {"PROJ_LIB": "/usr/share/proj"},
    }
    status, answer, _ = geo_api.call("POST", "/session", body, token)
    assert status == 200 and answer["session"] == "arctern" and answer["master"] == "spark://10.0.0.5:7077"
    (session_id, _owner, config) = fake_sessions.ensured[-1]
    assert session_id.startswith("geo-") and config["master"] == "spark://10.0.0.5:7077"
    assert config["configs"] == {"spark.executor.memory": "2g"} and config["envs"] == {"PROJ_LIB": "/usr/share/proj"}
    _error(geo_api.call("POST", "/session", body, token), "already exists")
    status, answer, _ = geo_api.call("POST", "/session", {"scope": "s", "session": "y"}, token)
    assert answer["master"] == "local[*]"
    _error(
        geo_api.call("POST", "/session", {"scope": "s", "session": "z", "master-addr": "mesos://x"}, token), "master"
    )
    _error(geo_api.call("POST", "/session", {"scope": "s", "session": "z", "configs": {"a": "b"}}, token), "configs")
    _error(geo_api.call("POST", "/session", {"scope": "nope", "session": "z"}, token), "scope not found")
    _error(geo_api.call("POST", "/query", {"scope": "s", "session": "ghost", "sql": "select 1"}, token), "session")


def _load(api: Api, token: str, path: str, **table: Any) -> tuple[int, Any, Any]:
    spec = {"name": "t", "format": "csv", "path": path, "options": {"header": "True"}, **table}
    return api.call("POST", "/loadfile", {"scope": "s", "session": "spark", "tables": [spec]}, token)


def test_loadfile_path_allow_list(geo_api: Api, data_root: Path, tmp_path: Path) -> None:
    from chalicelib.store import jobs as job_store

    token = _user(geo_api, "ann")
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    status, body, _ = _load(geo_api, token, str(data_root / "nyc" / "taxi.csv"), schema=[{"a": "int"}, {"b": "double"}])
    assert status == 202 and body["status"] == "success" and body["execID"] and body["taskID"]
    job = job_store.get_job(body["execID"])
    assert job is not None and job["run_type"] == "geo" and job["kind"] == "geo"
    table = job["geo_op"]["tables"][0]
    assert table["path"] == str((data_root / "nyc" / "taxi.csv").resolve()) and table["schema"] == "`a` int, `b` double"
    for bad, needle in [
        (f"{data_root}/nyc/../../secret.csv", ".."),
        (str(tmp_path / "secret.csv"), "your data area"),
        (str(data_root / "nyc" / "link.csv"), "your data area"),  # symlink leading out
        (str(data_root / "escape" / "secret.csv"), "your data area"),  # symlinked folder leading out
        ("/etc/passwd", "your data area"),
        ("hdfs://nn/data.csv", "s3://"),
        ("file:///etc/passwd", "s3://"),
        ("s3://sparkgate/uploads/someone-else/a.csv", "uploads"),
        ("s3://other-bucket/uploads/x.csv", "uploads"),
        ("", "path is required"),
    ]:
        _error(_load(geo_api, token, bad), needle)
    user_id = job["owner"]
    status, body, _ = _load(geo_api, token, f"s3://sparkgate/uploads/{user_id}/taxi.csv")
    assert status == 202
    s3_job = job_store.get_job(body["execID"])
    assert s3_job is not None
    assert s3_job["geo_op"]["tables"][0]["path"] == f"s3a://sparkgate/uploads/{user_id}/taxi.csv"
    ok = str(data_root / "nyc" / "taxi.csv")
    _error(_load(geo_api, token, ok, format="xls"), "format")
    _error(_load(geo_api, token, ok, schema=[{"a": "geometry"}]), "unsupported type")
    _error(_load(geo_api, token, ok, schema={"a": "int"}), "schema")
    _error(_load(geo_api, token, ok, name="t; drop"), "identifier")


def test_request_validation(geo_api: Api) -> None:
    token = _user(geo_api, "ann")
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    params = {"width": 64, "height": 64, "bounding_box": [-74.1, 40.6, -73.7, 40.9]}
    _error(geo_api.call("POST", "/query", {"scope": "s"}, token), "sql")
    # no command: a successful no-op, as in Arctern (nothing queued); a non-string is still refused
    status, body, _ = geo_api.call("POST", "/command", {"scope": "s", "command": "  "}, token)
    assert status == 200 and body["message"] == "execute command successfully!", body
    _error(geo_api.call("POST", "/command", {"scope": "s", "command": 7}, token), "command")
    _error(geo_api.call("POST", "/pointmap", {"scope": "s", "sql": "select 1"}, token), "params")
    bad_box = {**params, "bounding_box": [1, 2, 0, 3]}
    _error(geo_api.call("POST", "/heatmap", {"scope": "s", "sql": "select 1", "params": bad_box}, token), "min < max")
    _error(
        geo_api.call("POST", "/weighted", {"scope": "s", "sql": "x", "params": {**params, "width": 0}}, token), "width"
    )
    _error(geo_api.call("POST", "/createtable", {"scope": "s", "tables": []}, token), "tables")
    _error(geo_api.call("GET", "/table/s/spark/bad-name", None, token), "identifier")
    _error(geo_api.call("POST", "/query", "{not json", token), "invalid JSON")
    for route in ("pointmap", "heatmap", "choropleth", "weighted", "choroplethmap", "weighted_pointmap", "icon_viz"):
        status, body, _ = geo_api.call("POST", f"/{route}", {"scope": "s", "sql": "select 1", "params": params}, token)
        assert status == 202, (route, body)


def _finish_next_job(result: dict[str, Any] | None, error: str | None = None) -> threading.Thread:
    """A stand-in driver: takes the next queued geo Job and ends it the way the engine does."""
    from chalicelib.store import jobs as job_store
    from chalicelib.store import results as result_store

    def work() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for sid in {s for s in _SESSIONS}:
                for job in job_store.queued_jobs(sid):
                    job_store.transition(job["exec_id"], ("Scheduled",), "Running", dequeue=True)
                    if error:
                        job_store.transition(job["exec_id"], ("Running",), "Failed", {"error": error})
                        return
                    cell = json.dumps(result)
                    preview = {"metadata": [], "rows": [[cell]], "total_rows": 1, "truncated": False}
                    result_store.put_result_set(job["owner"], job["exec_id"], 0, {"metadata": [], "rows": [[cell]]})
                    fields = {"result_preview": preview, "result_sets": 1}
                    job_store.transition(job["exec_id"], ("Running",), "Succeed", fields)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


_SESSIONS: set[str] = set()


def test_synchronous_answers_and_errors(
    geo_api: Api, fake_sessions: FakeSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "5")
    token = _user(geo_api, "ann")
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    fake_sessions.generation = 0  # nothing to replay yet

    _SESSIONS.clear()
    geo_api.call("POST", "/query", {"scope": "s", "sql": "select 1"}, token)  # learn the session id (202 is fine)
    _SESSIONS.add(fake_sessions.ensured[-1][0])
    from chalicelib.store import jobs as job_store

    for job in job_store.queued_jobs(next(iter(_SESSIONS))):
        job_store.transition(job["exec_id"], ("Scheduled",), "Cancelled", dequeue=True)

    _finish_next_job({"result": [2.5]})
    status, body, _ = geo_api.call("POST", "/query", {"scope": "s", "sql": "select 2.5"}, token)
    assert (status, body) == (200, {"status": "success", "code": 200, "result": [2.5]})

    _finish_next_job({"schema": [{"a": "int"}], "num_rows": 9})
    status, body, _ = geo_api.call("GET", "/table/schema?scope=s&session=spark&table=t", None, token)
    assert status == 200 and body["num_rows"] == 9 and body["table"] == "t"
    assert body["schema"] == [{"col_name": "a", "data_type": "int", "comment": None}]  # Arctern's shipped shape

    _finish_next_job(None, error="NameError: name 'nope' is not defined")
    _error(geo_api.call("POST", "/command", {"scope": "s", "command": "nope"}, token), "NameError")

    # every driver is started with its catalog named in its config (the driver replays it itself,
    # whoever starts it), so a call after a crash queues only its own Job
    _finish_next_job({"tables": ["t"]})
    path = str(Path(os.environ["SPARKGATE_DATA_ROOTS"].split(":")[1]) / "nyc" / "taxi.csv")
    status, body, _ = _load(geo_api, token, path)
    assert status == 200 and body["message"] == "load table successfully!"
    fake_sessions.generation = 2
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    status, body, _ = geo_api.call("POST", "/query", {"scope": "s", "sql": "select * from t"}, token)
    assert status == 202
    queued = job_store.queued_jobs(next(iter(_SESSIONS)))
    assert [j["geo_op"]["op"] for j in queued] == ["query"]
    session_id, owner, config = fake_sessions.ensured[-1]
    assert session_id == next(iter(_SESSIONS))
    assert config["geo_catalog"] == {"user_id": owner, "scope": "s", "session": "spark"}
    from chalicelib.store import geo as geo_store

    assert [t["name"] for t in geo_store.catalog(owner, "s", "spark")] == ["t"]


def test_delete_scope_stops_drivers(geo_api: Api, fake_sessions: FakeSessions) -> None:
    token = _user(geo_api, "ann")
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    geo_api.call("POST", "/session", {"scope": "s", "session": "second"}, token)
    status, body, _ = geo_api.call("DELETE", "/scope/s", None, token)
    assert status == 200 and body["status"] == "success"
    assert len(fake_sessions.stopped) == 2 and all(s.startswith("geo-") for s in fake_sessions.stopped)
    _error(geo_api.call("DELETE", "/scope/s", None, token), "scope not found")
    assert geo_api.call("POST", "/scope", {"scope": "s"}, token)[0] == 200  # the name is free again


def test_entrance_refuses_internal_run_type(geo_api: Api) -> None:
    from chalicelib import entrance
    from chalicelib.errors import BadRequest
    from chalicelib.tokens import Principal

    principal = Principal(user_id="u1", username="ann")
    body = {"executeApplicationName": "spark", "executionCode": "x", "runType": "geo"}
    with pytest.raises(BadRequest, match="internal"):
        entrance.execute(principal, body)
