"""The WebSocket handlers through ``chalice.test.Client`` (``lambda_.invoke``) on moto; ``@connections`` faked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from tests.functional.conftest import ADMIN, Api

ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/api"


class Sent:
    """A fake management API: what each connection was sent."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        assert len(Data) <= 128 * 1024
        self.frames.setdefault(ConnectionId, []).append(json.loads(Data))
        return {}

    def last(self, connection_id: str) -> dict[str, Any]:
        return self.frames[connection_id][-1]


@pytest.fixture
def ws(client: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    """The app with the WebSocket blueprint (registered here until app.py does) and a fake ``@connections``."""
    from app import app
    from chalicelib import sessions
    from chalicelib.store import wsapi

    assert "$connect" in app.websocket_handlers
    monkeypatch.setenv("SPARKGATE_WS_ENDPOINT", ENDPOINT)
    sent = Sent()
    monkeypatch.setattr(wsapi, "management_client", lambda endpoint=None: sent)
    # No Spark here: the Job is stored and stays Scheduled.
    monkeypatch.setattr(sessions, "ensure_session_driver", lambda *a, **k: {})
    yield sent


def event(
    route: str,
    connection_id: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    out: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": event_type,
            "connectionId": connection_id,
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "stage": "api",
            "apiId": "abc123",
            "requestId": "r1",
        },
        "isBase64Encoded": False,
    }
    if route == "$connect":
        out["queryStringParameters"] = query
        out["headers"] = headers or {}
    if body is not None:
        out["body"] = body if isinstance(body, str) else json.dumps(body)
    return out


def connect(client: Client, connection_id: str, token: str | None = None, **kw: Any) -> int:
    query = {"token": token} if token else None
    payload = client.lambda_.invoke("ws_connect", event("$connect", connection_id, query=query, **kw)).payload
    status: int = payload["statusCode"]
    return status


def send(client: Client, connection_id: str, frame: Any) -> None:
    payload = client.lambda_.invoke("ws_message", event("$default", connection_id, body=frame)).payload
    assert payload["statusCode"] == 200


def test_connect_requires_a_valid_token(client: Client, api: Api, ws: Sent) -> None:
    from chalicelib.store import connections

    token = api.new_user("alice")
    assert connect(client, "c0") == 401
    assert connect(client, "c0", "not-a-jwt") == 401
    assert connections.get_connection("c0") is None
    assert connect(client, "c1", token) == 200
    assert connect(client, "c2", headers={"Authorization": f"Token {token}"}) == 200
    record = connections.get_connection("c1")
    assert record is not None and record.username == "alice"
    client.lambda_.invoke("ws_disconnect", event("$disconnect", "c1"))
    assert connections.get_connection("c1") is None


def test_execute_over_the_socket_and_query_it(client: Client, api: Api, ws: Sent) -> None:
    from chalicelib.store import connections
    from chalicelib.store import jobs as job_store
    from chalicelib.store import logs as log_store

    token = api.new_user("alice")
    connect(client, "c1", token)
    body = {"executeApplicationName": "spark", "executionCode": "select 1", "runType": "sql", "params": {}}
    send(client, "c1", {"method": "/api/rest_j/v1/entrance/execute", "data": body, "websocketTag": "t-1"})
    answer = ws.last("c1")
    assert answer["method"] == "/api/rest_j/v1/entrance/execute"
    assert answer["status"] == 0 and answer["websocketTag"] == "t-1"
    exec_id = answer["data"]["execID"]
    assert isinstance(answer["data"]["taskID"], int)
    job = job_store.get_job(exec_id)
    assert job is not None and job["submitter_connection"] == "c1"
    assert [(s.connection_id, s.websocket_tag) for s in connections.job_subscriptions(exec_id)] == [("c1", "t-1")]

    send(client, "c1", {"method": f"/api/rest_j/v1/entrance/{exec_id}/status", "data": {}, "websocketTag": "t-2"})
    assert ws.last("c1") == {
        "method": f"/api/rest_j/v1/entrance/{exec_id}/status",
        "status": 0,
        "message": "OK",
        "data": {"execID": exec_id, "taskID": answer["data"]["taskID"], "status": "Scheduled"},
        "websocketTag": "t-2",
    }
    send(client, "c1", {"method": f"/api/rest_j/v1/entrance/{exec_id}/progress", "websocketTag": 3})
    assert ws.last("c1")["data"]["progress"] == 0.0 and ws.last("c1")["websocketTag"] == "3"

    log_store.append_log(exec_id, 0, [("INFO", "one"), ("WARN", "two"), ("INFO", "three")])
    send(client, "c1", {"method": f"/api/rest_j/v1/entrance/{exec_id}/log", "data": {"fromLine": 2, "size": 1}})
    log = ws.last("c1")  # Linkis's 1-based cursor: line 2 is "two", the next to ask for is 3
    assert log["data"]["log"] == ["", "two", "", "two"] and log["data"]["fromLine"] == 3


def test_subscribe_only_to_own_jobs(client: Client, api: Api, ws: Sent) -> None:
    from chalicelib import jobs
    from chalicelib.store import connections
    from chalicelib.tokens import verify_token

    alice, bob = api.new_user("alice"), api.new_user("bob")
    connect(client, "a1", alice)
    connect(client, "b1", bob)
    job = jobs.new_job(jobs.JobRequest(owner=verify_token(alice), code="select 1", run_type="sql"))
    method = f"/api/rest_j/v1/entrance/{job['exec_id']}/subscribe"
    send(client, "b1", {"method": method, "data": {}, "websocketTag": "spy"})
    refused = ws.last("b1")
    assert refused["status"] == 1 and refused["method"] == method and refused["websocketTag"] == "spy"
    assert refused["message"] == f"no job with execID {job['exec_id']}"  # exactly what an unknown id gets
    send(client, "a1", {"method": method, "data": {}, "websocketTag": "mine"})
    assert ws.last("a1")["status"] == 0 and ws.last("a1")["data"]["status"] == "Scheduled"
    subs = connections.job_subscriptions(job["exec_id"])
    assert [(s.connection_id, s.websocket_tag) for s in subs] == [("a1", "mine")]
    send(client, "a1", {"method": f"/api/rest_j/v1/entrance/{job['exec_id']}/unsubscribe"})
    assert connections.job_subscriptions(job["exec_id"]) == []


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        ("not json", 1),
        ("[1, 2]", 1),
        ({"data": {}}, 1),
        ({"method": "/api/rest_j/v1/entrance/execute", "data": "x", "websocketTag": "bad"}, 2),
        ({"method": "/api/rest_j/v1/nowhere", "websocketTag": "bad"}, 1),
        ({"method": "/api/rest_j/v1/entrance/execute", "data": {"executionCode": "x"}, "websocketTag": "bad"}, 1),
        ({"method": "/api/rest_j/v1/entrance/nope/status", "websocketTag": "bad"}, 1),
    ],
)
def test_bad_frames_get_error_frames(client: Client, api: Api, ws: Sent, frame: Any, status: int) -> None:
    from chalicelib.store import connections

    connect(client, "c1", api.new_user("alice"))
    send(client, "c1", frame)
    answer = ws.last("c1")
    assert answer["status"] == status
    assert answer["message"]
    if isinstance(frame, dict):
        assert answer["method"] == frame.get("method", "")
        assert answer["websocketTag"] == frame.get("websocketTag")
    assert connections.get_connection("c1") is not None  # still connected


def test_frames_on_an_unknown_connection_are_refused_not_logged_in(client: Client, ws: Sent) -> None:
    send(client, "ghost", {"method": "/api/rest_j/v1/entrance/x/status", "websocketTag": "g"})
    assert ws.last("ghost")["status"] == -1


def test_stream_handler_is_registered_as_a_lambda_function(client: Client, ws: Sent) -> None:
    from app import app

    assert "on_dynamodb_record" in app.handler_map
    assert client.lambda_.invoke("on_dynamodb_record", {"Records": []}).payload == {"batchItemFailures": []}


@pytest.mark.parametrize("revoke", ["logout", "disable", "password"])
def test_an_open_socket_of_a_revoked_token_is_refused_at_its_next_frame(
    client: Client, api: Api, ws: Sent, revoke: str
) -> None:
    """Revocation reaches open sockets too: the frame after a logout, a disable or a password change is refused
    and the connection is forgotten (no push reaches it); another session of the user lives on."""
    from chalicelib import tokens
    from chalicelib.store import connections

    token = api.new_user("alice")
    other = api.login("alice", "password-123")
    assert connect(client, "c1", token) == 200 and connect(client, "c2", other) == 200
    status_frame = {"method": "/api/rest_j/v1/entrance/nosuch/status", "data": {}}
    send(client, "c1", status_frame)
    assert "revoked" not in ws.last("c1")["message"]
    admin = api.login(*ADMIN)
    if revoke == "logout":
        assert api.call("POST", "/api/rest_j/v1/user/logout", token=token)[0] == 200
    elif revoke == "disable":
        assert api.call("PATCH", "/api/v1/users/alice", {"disabled": True}, admin)[0] == 200
    else:
        assert api.call("PATCH", "/api/v1/users/alice", {"password": "another-password-9"}, admin)[0] == 200
    tokens.forget_cached_state()  # another container, or 10 s later
    send(client, "c1", status_frame)
    refused = ws.last("c1")
    assert refused["status"] != 0 and "revoked" in refused["message"], refused
    assert connections.get_connection("c1") is None
    send(client, "c2", status_frame)
    assert ("revoked" in ws.last("c2")["message"]) == (revoke != "logout")
