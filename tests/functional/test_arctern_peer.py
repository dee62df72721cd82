"""Arctern clients' calls as they make them (issue 15): CORS for browser front ends on another origin
(answers and preflight, one allow-list ``SPARKGATE_CORS_ORIGINS``), ``/table/schema`` in Arctern's shipped
shape, ``/command`` without ``command`` a successful no-op, ``/savefile`` into the caller's own area only
(hostile paths: traversal, symlinks, patterns, other users' areas, shared roots). No Spark: the session
driver is faked (see test_geo_api.py); the write itself is tested on the engine in
tests/engine/test_geo_savefile.py."""

# ruff: noqa: F811  (the geo fixtures are imported from test_geo_api and named as parameters)
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import Api
from tests.functional.test_geo_api import (  # noqa: F401  (fixtures)
    _SESSIONS,
    FakeSessions,
    _finish_next_job,
    _user,
    data_root,
    fake_sessions,
    geo_api,
)

ORIGIN = "https://maps.example.com"


def _options(api: Api, path: str, origin: str, method: str = "POST") -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return api.client.http.request("OPTIONS", path, headers=headers, body=b"")


def test_cors_allowed_origin_on_answers_and_preflight(geo_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_CORS_ORIGINS", f"{ORIGIN}, http://localhost:3000")
    token = _user(geo_api, "ann")
    status, _, headers = geo_api.call("POST", "/scope", {"scope": "s"}, token, headers={"Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in headers["Vary"]
    # errors carry it too (a browser must be able to read the message)
    status, _, headers = geo_api.call("POST", "/scope", {"scope": "s"}, token, headers={"Origin": ORIGIN})
    assert status == 400 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert (
        geo_api.call("POST", "/token", {"username": "ann", "password": "x"}, headers={"Origin": ORIGIN})[2][
            "Access-Control-Allow-Origin"
        ]
        == ORIGIN
    )
    for path in ("/query", "/scope/s", "/table/schema", "/pointmap", "/savefile", "/table/s/spark/t", "/command"):
        pre = _options(geo_api, path, ORIGIN)
        assert pre.status_code == 204, (path, pre.status_code, pre.body)
        assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in pre.headers["Access-Control-Allow-Methods"]
        assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()


def test_cors_foreign_origin_gets_no_grant(geo_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_CORS_ORIGINS", ORIGIN)
    token = _user(geo_api, "ann")
    _, _, headers = geo_api.call("POST", "/scope", {"scope": "s"}, token, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers
    assert _options(geo_api, "/query", "https://evil.example").status_code == 403
    monkeypatch.setenv("SPARKGATE_CORS_ORIGINS", "")  # the default: no cross-origin access at all
    assert _options(geo_api, "/query", ORIGIN).status_code == 403
    _, _, headers = geo_api.call("POST", "/scope", {"scope": "t"}, token, headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in headers
    monkeypatch.setenv("SPARKGATE_CORS_ORIGINS", "*")
    assert _options(geo_api, "/query", "https://any.example").headers["Access-Control-Allow-Origin"] == "*"


def test_table_schema_in_arcterns_shipped_shape(
    geo_api: Api, fake_sessions: FakeSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "5")
    token = _user(geo_api, "ann")
    geo_api.call("POST", "/scope", {"scope": "s"}, token)
    _SESSIONS.clear()
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    geo_api.call("POST", "/query", {"scope": "s", "sql": "select 1"}, token)  # learn the session id
    _SESSIONS.add(fake_sessions.ensured[-1][0])
    from chalicelib.store import jobs as job_store

    for job in job_store.queued_jobs(next(iter(_SESSIONS))):
        job_store.transition(job["exec_id"], ("Scheduled",), "Cancelled", dequeue=True)
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "5")
    schema = [{"pickup_longitude": "double"}, {"passenger_count": "int"}, {"geom": "binary"}]
    _finish_next_job({"schema": schema, "num_rows": 3})
    status, body, _ = geo_api.call("GET", "/table/schema?scope=s&session=spark&table=t", None, token)
    assert status == 200 and body["status"] == "success" and body["table"] == "t"
    assert body["schema"] == [
        {"col_name": "pickup_longitude", "data_type": "double", "comment": None},
        {"col_name": "passenger_count", "data_type": "int", "comment": None},
        {"col_name": "geom", "data_type": "binary", "comment": None},
    ]
    # the seed's route keeps the seed's shape
    _finish_next_job({"schema": schema, "num_rows": 3})
    status, body, _ = geo_api.call("GET", "/table/s/spark/t", None, token)
    assert status == 200 and body["schema"] == schema and body["num_rows"] == 3


def test_command_without_command_is_a_successful_noop(geo_api: Api, fake_sessions: FakeSessions) -> None:
    ann, bob = _user(geo_api, "ann"), _user(geo_api, "bob")
    geo_api.call("POST", "/scope", {"scope": "s"}, ann)
    for body in ({"scope": "s"}, {"scope": "s", "command": None}, {"scope": "s", "command": ""}):
        status, answer, _ = geo_api.call("POST", "/command", body, ann)
        assert status == 200 and answer["status"] == "success" and answer["code"] == 200, answer
        assert answer["message"] == "execute command successfully!"
    assert fake_sessions.ensured == []  # nothing ran, no driver started
    # still only the caller's scope: another user's is "not found" like an unknown one
    status, answer, _ = geo_api.call("POST", "/command", {"scope": "s"}, bob)
    assert status == 400 and "scope not found" in answer["message"]


# ---- /savefile ------------------------------------------------------------------------------------


@pytest.fixture
def areas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "users"
    monkeypatch.setenv("SPARKGATE_USER_ROOT", str(root))
    return root


def _queued_savefile(geo_api: Api, token: str, tables: list[dict[str, Any]], fake: FakeSessions) -> Any:
    from chalicelib.store import jobs as job_store

    status, body, _ = geo_api.call("POST", "/savefile", {"scope": "s", "tables": tables}, token)
    if status != 202:
        return status, body
    queued = [j for sid in {e[0] for e in fake.ensured} for j in job_store.queued_jobs(sid)]
    return status, queued[-1]["geo_op"]


def test_savefile_queues_the_write_in_the_callers_area(geo_api: Api, fake_sessions: FakeSessions, areas: Path) -> None:
    from chalicelib.tokens import verify_token

    ann = _user(geo_api, "ann")
    geo_api.call("POST", "/scope", {"scope": "s"}, ann)
    area = os.path.realpath(areas / verify_token(ann).user_id)
    tables: list[dict[str, Any]] = [
        {
            "sql": "select * from t",
            "format": "csv",
            "path": "out/t.csv",
            "options": {"header": "True", "delimiter": ","},
        },
        {"table": "t", "format": "parquet", "path": f"{area}/t.parquet", "mode": "overwrite"},
        {"name": "t", "format": "json", "path": "s3://sparkgate/uploads/" + verify_token(ann).user_id + "/t.json"},
    ]
    status, op = _queued_savefile(geo_api, ann, tables, fake_sessions)
    assert status == 202 and op["op"] == "savefile" and op["area"] == area
    assert [o["path"] for o in op["tables"]] == [
        f"{area}/out/t.csv",
        f"{area}/t.parquet",
        f"s3a://sparkgate/uploads/{verify_token(ann).user_id}/t.json",
    ]
    assert op["tables"][0]["sql"] == "select * from t" and op["tables"][0]["options"] == {
        "header": "True",
        "delimiter": ",",
    }
    assert op["tables"][1]["table"] == "t" and op["tables"][1]["mode"] == "overwrite"
    assert op["tables"][0]["mode"] == "error"  # Spark's default: an existing output is not replaced


def test_savefile_refuses_hostile_paths(
    geo_api: Api, fake_sessions: FakeSessions, areas: Path, data_root: Path, tmp_path: Path
) -> None:
    from chalicelib.tokens import verify_token

    ann, bob = _user(geo_api, "ann"), _user(geo_api, "bob")
    geo_api.call("POST", "/scope", {"scope": "s"}, ann)
    ann_area = areas / verify_token(ann).user_id
    bob_area = areas / verify_token(bob).user_id
    bob_area.mkdir(parents=True)
    ann_area.mkdir(parents=True, exist_ok=True)
    os.symlink(bob_area, ann_area / "to_bob")  # a folder link leading into another user's area
    os.symlink(tmp_path, ann_area / "to_tmp")
    os.symlink(bob_area / "x.csv", ann_area / "dangling.csv")  # a link as the target itself
    hostile = [
        "../" + verify_token(bob).user_id + "/x.csv",
        "out/../../x.csv",
        str(bob_area / "x.csv"),
        "to_bob/x.csv",
        "to_tmp/x.csv",
        "to_bob",
        "dangling.csv",
        str(data_root / "nyc" / "out.csv"),  # shared roots are read-only
        "/tmp/x.csv",
        "*.csv",
        "out/{a,b}.csv",
        "out/x?.csv",
        "file:///tmp/x.csv",
        "hdfs://nn/x.csv",
        "s3://sparkgate/uploads/" + verify_token(bob).user_id + "/x.json",
        "s3://other-bucket/uploads/" + verify_token(ann).user_id + "/x.json",
        str(ann_area),
        ".",
        "",
        "out/x\x00.csv",
        "out/\nx.csv",
    ]
    for path in hostile:
        status, body = _queued_savefile(
            geo_api, ann, [{"sql": "select 1", "format": "csv", "path": path}], fake_sessions
        )
        assert status == 400 and body["status"] == "error", (path, body)
        assert str(bob_area) not in body["message"] and str(tmp_path / "secret") not in body["message"], path
    assert not any(p.name == "x.csv" for p in bob_area.rglob("*"))
    for bad, needle in (
        ({"sql": "select 1", "format": "orc", "path": "a"}, "format"),
        ({"sql": "select 1", "format": "csv", "path": "a", "options": {"path": "/tmp/x"}}, "options"),
        ({"sql": "select 1", "format": "csv", "path": "a", "mode": "truncate"}, "mode"),
        ({"format": "csv", "path": "a"}, "table"),
    ):
        status, body = _queued_savefile(geo_api, ann, [bad], fake_sessions)
        assert status == 400 and needle in body["message"], (bad, body)
    # another user's scope: "scope not found" like an unknown one
    status, body = _queued_savefile(
        geo_api, bob, [{"sql": "select 1", "format": "csv", "path": "a.csv"}], fake_sessions
    )
    assert status == 400 and "scope not found" in body["message"]
