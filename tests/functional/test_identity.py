"""Identity: revocation, user admin, login throttling, Linkis service tokens, the cookie's reach."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from tests.functional.conftest import ADMIN, Api

L = "/api/rest_j/v1"
GW = f"{L}/basedata-manager/gateway-auth-token"
CODE = "svc-code-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    from chalicelib.tokens import forget_cached_state

    forget_cached_state()
    yield
    forget_cached_state()


def works_ok(api: Api, token: str) -> int:
    return api.call("GET", "/api/v1/works", token=token)[0]


def linkis_login(api: Api, username: str, password: str) -> tuple[str, str]:
    """The cookie header value and the token of a Linkis login."""
    status, body, headers = api.call("POST", f"{L}/user/login", {"userName": username, "password": password})
    assert status == 200, body
    cookie = headers["Set-Cookie"].split(";")[0]
    return cookie, body["data"]["token"]


# ---- revocation ----------------------------------------------------------------------------------


def test_logout_revokes_that_sessions_token_only(api: Api) -> None:
    api.new_user("alice")
    other = api.login("alice", "password-123")
    cookie, token = linkis_login(api, "alice", "password-123")
    probe = f"{L}/jobhistory/1/get"
    assert api.call("GET", probe, headers={"Cookie": cookie})[0] == 400  # logged in: "no job"
    status, body, headers = api.call("POST", f"{L}/user/logout", headers={"Cookie": cookie})
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    status, body, _ = api.call("GET", probe, headers={"Cookie": cookie})
    assert (status, body["status"]) == (401, -1) and "revoked" in body["message"]
    assert works_ok(api, token) == 401  # the same token through the header
    assert works_ok(api, other) == 200  # another session of alice lives on


def test_logout_with_the_header_and_a_revocation_seen_by_another_container(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.store.users import revoke_token_id
    from chalicelib.tokens import decode_token

    token = api.new_user("alice")
    assert api.call("GET", f"{L}/user/logout", token=token)[0] == 200
    assert works_ok(api, token) == 401
    # a revocation written elsewhere (another Lambda container) shows here within the cache window
    monkeypatch.setenv("SPARKGATE_AUTH_CACHE_SECONDS", "1")
    second = api.login("alice", "password-123")
    assert works_ok(api, second) == 200  # cached now
    claims = decode_token(second)
    revoke_token_id(claims["jti"], claims["exp"])  # not through this container's revoke_token
    assert works_ok(api, second) == 200  # still inside the window
    time.sleep(1.1)
    assert works_ok(api, second) == 401


def test_delete_disable_and_password_change_revoke_every_token(api: Api) -> None:
    admin = api.login(*ADMIN)
    for name in ("dora", "dave", "pete"):
        api.new_user(name)
    tokens = {name: [api.login(name, "password-123"), api.login(name, "password-123")] for name in ("dora", "dave")}
    pete = api.login("pete", "password-123")

    assert api.call("DELETE", "/api/v1/users/dora", token=admin)[0] == 200
    assert [works_ok(api, t) for t in tokens["dora"]] == [401, 401]
    assert api.call("POST", "/scope", {"scope": "s"}, tokens["dora"][0])[0] == 401
    api.new_user("dora")  # the name again: a new user, the old tokens stay dead
    assert works_ok(api, tokens["dora"][0]) == 401

    status, body, _ = api.call("PATCH", "/api/v1/users/dave", {"disabled": True}, admin)
    assert status == 200 and body["data"]["disabled"] is True
    assert [works_ok(api, t) for t in tokens["dave"]] == [401, 401]
    status, body, _ = api.call("POST", "/token", {"username": "dave", "password": "password-123"})
    assert status == 401 and body["message"] == "invalid username or password"
    assert api.call("PATCH", "/api/v1/users/dave", {"disabled": False}, admin)[0] == 200
    assert works_ok(api, tokens["dave"][0]) == 401  # enabling again does not bring old tokens back
    assert works_ok(api, api.login("dave", "password-123")) == 200

    status, body, _ = api.call("PATCH", "/api/v1/users/pete", {"password": "new-password-1"}, admin)
    assert status == 200 and "token" not in body["data"]
    assert works_ok(api, pete) == 401
    assert api.call("POST", "/token", {"username": "pete", "password": "password-123"})[0] == 401
    assert works_ok(api, api.login("pete", "new-password-1")) == 200


def test_a_user_changes_their_own_password(api: Api) -> None:
    alice = api.new_user("alice")
    path = "/api/v1/users/alice"
    status, body, _ = api.call("PATCH", path, {"password": "next-password"}, alice)
    assert status == 400 and "current_password" in body["msg"]
    status, body, _ = api.call("PATCH", path, {"password": "next-password", "current_password": "wrong-one"}, alice)
    assert status == 400 and "current_password" in body["msg"]
    status, body, _ = api.call("PATCH", path, {"disabled": False}, alice)
    assert status == 403
    body_ok = {"password": "next-password", "current_password": "password-123"}
    status, body, _ = api.call("PATCH", path, body_ok, alice)
    assert status == 200 and body["data"]["username"] == "alice" and body["data"]["expired"] == 604800
    assert works_ok(api, alice) == 401
    assert works_ok(api, body["data"]["token"]) == 200
    assert api.login("alice", "next-password")
    api.new_user("bob")
    bob = api.login("bob", "password-123")
    status, _, _ = api.call("PATCH", path, {"password": "bobs-choice-1", "current_password": "x"}, bob)
    assert status == 403


# ---- user admin ----------------------------------------------------------------------------------


def test_admins_list_get_and_change_users(api: Api) -> None:
    admin = api.login(*ADMIN)
    for name in ("carol", "bob", "alice"):
        api.new_user(name)
    status, body, headers = api.call("GET", "/api/v1/users?limit=2", token=admin)
    assert status == 200 and headers["X-Total-Count"] == "4"
    assert [u["username"] for u in body["data"]] == ["admin", "alice"]
    status, body, _ = api.call("GET", "/api/v1/users?limit=2&offset=1", token=admin)
    assert [u["username"] for u in body["data"]] == ["bob", "carol"]
    assert api.call("GET", "/api/v1/users?page=1", token=admin)[0] == 400
    status, body, _ = api.call("GET", "/api/v1/users/alice", token=admin)
    assert status == 200 and set(body["data"]) == {
        "user_id",
        "username",
        "is_admin",
        "disabled",
        "created_at",
        "updated_at",
        "password_changed_at",
    }
    assert "password_hash" not in json.dumps(body)
    assert api.call("GET", "/api/v1/users/nobody", token=admin)[:2] == (
        404,
        {"code": 404100, "msg": "user nobody not found"},
    )
    assert api.call("PATCH", "/api/v1/users/alice", {"is_admin": "yes"}, admin)[0] == 400
    assert api.call("PATCH", "/api/v1/users/alice", {"role": "x"}, admin)[0] == 400
    status, body, _ = api.call("PATCH", "/api/v1/users/alice", {"is_admin": True}, admin)
    assert status == 200 and body["data"]["is_admin"] is True
    alice = api.login("alice", "password-123")
    assert api.call("GET", "/api/v1/users", token=alice)[0] == 200  # an admin now

    bob = api.login("bob", "password-123")
    assert api.call("GET", "/api/v1/users", token=bob)[0] == 403
    assert api.call("GET", "/api/v1/users/bob", token=bob)[0] == 200  # their own record
    existing = api.call("GET", "/api/v1/users/carol", token=bob)
    missing = api.call("GET", "/api/v1/users/zed", token=bob)
    assert existing[:2] == missing[:2] == (403, {"code": 403100, "msg": "only administrators may do this"})
    assert api.call("DELETE", "/api/v1/users/carol", token=bob)[0] == 403
    assert (
        api.call("POST", "/api/v1/users", {"username": "e1", "password": "password-1", "is_admin": True}, admin)[0]
        == 201
    )
    assert api.login("e1", "password-1")


def test_the_last_admin_cannot_be_removed_disabled_or_demoted(api: Api) -> None:
    admin = api.login(*ADMIN)
    for body in ({"disabled": True}, {"is_admin": False}):
        status, answer, _ = api.call("PATCH", "/api/v1/users/admin", body, admin)
        assert status == 409 and "last administrator" in answer["msg"], answer
    status, answer, _ = api.call("DELETE", "/api/v1/users/admin", token=admin)
    assert status == 409 and "last administrator" in answer["msg"]
    assert works_ok(api, admin) == 200  # nothing changed, nothing revoked

    api.new_user("second")
    assert api.call("PATCH", "/api/v1/users/second", {"is_admin": True}, admin)[0] == 200
    second = api.login("second", "password-123")
    assert api.call("PATCH", "/api/v1/users/admin", {"disabled": True}, second)[0] == 200
    # admin is disabled: "second" is the last active admin now
    assert api.call("DELETE", "/api/v1/users/second", token=second)[0] == 409
    assert api.call("PATCH", "/api/v1/users/second", {"is_admin": False}, second)[0] == 409
    assert api.call("DELETE", "/api/v1/users/admin", token=second)[0] == 200  # a disabled admin may go


def test_racing_demotions_leave_an_admin(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib import users
    from chalicelib.errors import SparkgateError

    admin = api.login(*ADMIN)
    for name in ("a1", "a2"):
        api.new_user(name)
        api.call("PATCH", f"/api/v1/users/{name}", {"is_admin": True}, admin)

    def demote(name: str) -> bool:
        try:
            users.manage_update(name, {"disabled": True})
        except SparkgateError:
            return False
        return True

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(demote, ["admin", "a1", "a2"]))
    assert results.count(True) == 2 and results.count(False) == 1
    from chalicelib.store.users import active_admins

    assert len(active_admins()) == 1


def test_cli_manages_users(api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib import cli

    monkeypatch.setattr(cli, "_point_at_local_stack", lambda: None)
    monkeypatch.setenv("SPARKGATE_NEW_PASSWORD", "cli-password-1")
    assert cli.main(["create-user", "--username", "olga"]) == 0
    olga = api.login("olga", "cli-password-1")
    assert cli.main(["list-users"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listed["total"] == 2 and [u["username"] for u in listed["users"]] == ["admin", "olga"]
    monkeypatch.setenv("SPARKGATE_NEW_PASSWORD", "cli-password-2")
    assert cli.main(["set-user", "--username", "olga", "--password", "--admin"]) == 0
    assert works_ok(api, olga) == 401
    assert api.login("olga", "cli-password-2")
    assert cli.main(["set-user", "--username", "olga", "--disable"]) == 0
    assert cli.main(["set-user", "--username", "admin", "--no-admin"]) == 1  # olga is disabled: last admin
    assert "last administrator" in capsys.readouterr().err
    assert cli.main(["delete-user", "--username", "olga"]) == 0
    assert cli.main(["show-user", "--username", "olga"]) == 1


# ---- throttling ------------------------------------------------------------------------------------


def test_failed_logins_are_throttled_per_username_and_recover(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_LOGIN_WINDOW_SECONDS", "2")
    api.new_user("alice")
    wrong = {"username": "alice", "password": "wrong-password"}
    for _ in range(4):
        assert api.call("POST", "/token", wrong)[0] == 401
    assert api.login("alice", "password-123")  # a success resets the count
    for _ in range(5):
        assert api.call("POST", "/token", wrong)[0] == 401
    started = time.perf_counter()
    status, body, headers = api.call("POST", "/token", {"username": "alice", "password": "password-123"})
    refused_in = time.perf_counter() - started
    assert status == 429 and body["status"] == "error" and body["code"] == 429, body
    assert 1 <= int(headers["Retry-After"]) <= 2 and "too many failed logins" in body["message"]
    status, body, headers = api.call("POST", f"{L}/user/login", {"userName": "alice", "password": "password-123"})
    assert (status, body["status"], body["data"]["errorType"]) == (429, 1, "TooManyRequests")
    assert headers["Retry-After"]
    started = time.perf_counter()
    assert api.call("POST", "/token", {**wrong, "username": "zed"})[0] == 401  # another name: hashed, 401
    hashed_in = time.perf_counter() - started
    assert refused_in < hashed_in, (refused_in, hashed_in)  # refused before any scrypt
    time.sleep(2.1)
    assert api.login("alice", "password-123")


def test_failed_logins_are_throttled_per_address(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_LOGIN_MAX_FAILURES_PER_ADDRESS", "3")
    monkeypatch.setenv("SPARKGATE_LOGIN_MAX_FAILURES_PER_USER", "0")
    for name in ("u1", "u2", "u3"):
        assert api.call("POST", "/token", {"username": name, "password": "whatever-1"})[0] == 401
    status, body, headers = api.call("POST", "/token", {"username": ADMIN[0], "password": ADMIN[1]})
    assert status == 429 and "your address" in body["message"] and headers["Retry-After"]
    status, body, _ = api.call("POST", f"{L}/user/login", {"userName": ADMIN[0], "password": ADMIN[1]})
    assert status == 429


def test_throttle_counters_are_exact_under_a_race(aws: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.store import users as user_store

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: user_store.add_failure("user", "racer", 60), range(12)))
    assert user_store.failure_counts([("user", "racer")])[0][0] == 12


# ---- service tokens ----------------------------------------------------------------------------------


def _add_token(api: Api, admin: str, **fields: Any) -> dict[str, Any]:
    body = {"tokenName": CODE, "legalUsers": "alice", "legalHosts": "*", "elapseDay": -1, "businessOwner": "etl"}
    status, answer, _ = api.call("POST", GW, {**body, **fields}, admin)
    assert status == 200 and answer["status"] == 0, answer
    item: dict[str, Any] = answer["data"]["item"]
    return item


def _as_service(api: Api, path: str, user: str = "alice", code: str = CODE) -> tuple[int, Any, dict[str, str]]:
    return api.call("GET", path, headers={"Token-User": user, "Token-Code": code})


def test_service_tokens_issue_use_and_revoke(api: Api) -> None:
    from chalicelib import jobs
    from chalicelib.store.aws import table
    from chalicelib.tokens import verify_token

    admin = api.login(*ADMIN)
    alice = api.new_user("alice")
    api.new_user("bob")
    bob = api.login("bob", "password-123")
    job = jobs.new_job(jobs.JobRequest(owner=verify_token(alice), code="select 1", run_type="sql"))
    history = f"{L}/jobhistory/{job['task_id']}/get"

    status, body, _ = api.call("POST", GW, {"tokenName": CODE, "legalUsers": "alice"}, bob)
    assert (status, body["status"]) == (403, 3)
    item = _add_token(api, admin)
    assert item["tokenName"] == "svc-****" and item["legalUsers"] == "alice" and item["elapseDay"] == -1
    scanned = json.dumps(table().scan()["Items"], default=str)
    assert CODE not in scanned  # only its hash is stored

    status, body, _ = _as_service(api, history)
    assert status == 200 and body["data"]["task"]["umUser"] == "alice"
    assert _as_service(api, history, code=CODE + "x")[0] == 401
    assert _as_service(api, history, user="bob")[0] == 401
    assert _as_service(api, history, user="admin")[0] == 401
    assert _as_service(api, "/api/v1/works")[0] == 401  # Linkis service tokens are for the Linkis surface

    status, body, _ = api.call("GET", f"{GW}?currentPage=1&pageSize=10", token=admin)
    page = body["data"]["list"]
    assert page["total"] == 1 and page["list"][0]["id"] == item["id"] and page["pages"] == 1
    status, body, _ = api.call("GET", f"{GW}/{item['id']}", token=admin)
    assert body["data"]["item"] == item
    status, body, _ = api.call("GET", f"{GW}/check?token={CODE}&checkName=alice", token=bob)
    assert body["data"]["result"] is True
    status, body, _ = api.call("GET", f"{GW}/check?token={CODE}&checkName=bob", token=bob)
    assert body["data"]["result"] is False

    status, body, _ = api.call("PUT", GW, {"id": item["id"], "legalUsers": "bob,carol"}, admin)
    assert status == 200 and body["data"]["result"] is True
    assert _as_service(api, history)[0] == 401  # at once
    status, body, _ = _as_service(api, history, user="bob")
    assert (status, body["message"]) == (400, f"no job with taskID {job['task_id']}")  # acts as bob
    api.call("PUT", GW, {"id": item["id"], "legalUsers": "*", "legalHosts": "10.1.2.3"}, admin)
    assert _as_service(api, history)[0] == 401  # the test client calls from 127.0.0.1
    api.call("PUT", GW, {"id": item["id"], "legalHosts": "127.0.0.1"}, admin)
    assert _as_service(api, history)[0] == 200

    status, body, _ = api.call("DELETE", f"{GW}/{item['id']}", token=admin)
    assert status == 200 and body["data"]["result"] is True
    assert _as_service(api, history)[0] == 401
    assert api.call("GET", f"{GW}/{item['id']}", token=admin)[0] == 400


def test_service_tokens_expire_and_follow_the_user(api: Api) -> None:
    from chalicelib.service_tokens import code_hash
    from chalicelib.store.aws import table

    admin = api.login(*ADMIN)
    api.new_user("alice")
    for bad in ({"tokenName": "short"}, {"elapseDay": 0}, {"legalUsers": ""}, {"legalUsers": "a b"}, {"x": 1}):
        status, body, _ = api.call("POST", GW, {"tokenName": CODE, "legalUsers": "alice", **bad}, admin)
        assert (status, body["status"]) == (400, 1), (bad, body)
    _add_token(api, admin, elapseDay=1)
    status, body, _ = api.call("POST", GW, {"tokenName": CODE, "legalUsers": "alice"}, admin)
    assert status == 400 and "already exists" in body["message"]
    assert _as_service(api, f"{L}/jobhistory/1/get")[0] == 400  # authenticated
    table().update_item(
        Key={"pk": f"GWTOKEN#{code_hash(CODE)}", "sk": "GWTOKEN"},
        UpdateExpression="SET create_time = :t",
        ExpressionAttributeValues={":t": int((time.time() - 86_401) * 1000)},
    )
    status, body, _ = _as_service(api, f"{L}/jobhistory/1/get")
    assert (status, body["status"]) == (401, -1) and "expired" in body["message"]

    _add_token(api, admin, tokenName=CODE + "-2", elapseDay=-1)
    assert _as_service(api, f"{L}/jobhistory/1/get", code=CODE + "-2")[0] == 400
    api.call("PATCH", "/api/v1/users/alice", {"disabled": True}, admin)
    assert _as_service(api, f"{L}/jobhistory/1/get", code=CODE + "-2")[0] == 401


# ---- the cookie's reach, the WebSocket subprotocol ------------------------------------------------


def test_the_linkis_cookie_works_on_the_entrance_surface_only(api: Api) -> None:
    api.new_user("alice")
    cookie, _ = linkis_login(api, "alice", "password-123")
    _, _, headers = api.call("POST", f"{L}/user/login", {"userName": "alice", "password": "password-123"})
    assert "SameSite=Strict" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert api.call("GET", f"{L}/jobhistory/1/get", headers={"Cookie": cookie})[0] == 400
    assert api.call("GET", "/api/v1/works", headers={"Cookie": cookie})[0] == 401
    assert api.call("POST", "/scope", {"scope": "s"}, headers={"Cookie": cookie})[0] == 401


def test_websocket_token_in_the_subprotocol(client: Client, api: Api) -> None:
    from tests.functional.test_websocket import event

    token = api.new_user("alice")
    offer = {"Sec-WebSocket-Protocol": f"sparkgate, token.{token}"}
    payload = client.lambda_.invoke("ws_connect", event("$connect", "w1", headers=offer)).payload
    assert payload["statusCode"] == 200 and payload["headers"] == {"Sec-WebSocket-Protocol": "sparkgate"}
    bad = {"Sec-WebSocket-Protocol": "sparkgate, token.nope"}
    assert client.lambda_.invoke("ws_connect", event("$connect", "w2", headers=bad)).payload["statusCode"] == 401
    api.call("POST", f"{L}/user/logout", token=token)
    payload = client.lambda_.invoke("ws_connect", event("$connect", "w3", headers=offer)).payload
    assert payload["statusCode"] == 401


# ---- another user's ids answer exactly like unknown ones -------------------------------------------


def _same(api: Api, token: str, calls: list[tuple[str, str, str, Any]], theirs: str, unknown: str) -> None:
    """Each call with ``theirs`` and with ``unknown`` in its path or body: same status, same body
    once the id itself is blanked out."""
    for method, path, what, body in calls:
        answers = []
        for ident in (theirs, unknown):
            raw = json.dumps(body).replace("{id}", ident) if body is not None else None
            status, got, _ = api.call(method, path.replace("{id}", ident), json.loads(raw) if raw else None, token)
            answers.append((status, json.dumps(got).replace(ident, "<id>")))
        assert answers[0] == answers[1], (what, answers)
        assert answers[0][0] in (400, 403, 404), (what, answers)


def test_other_users_ids_are_indistinguishable_from_unknown_ones(
    client: Client, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    from chalicelib import jobs, sessions, submit
    from chalicelib.store import jobs as job_store
    from chalicelib.tokens import verify_token

    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(Path(__file__).resolve().parents[1] / "fixtures"))
    monkeypatch.setattr(submit, "dispatch", lambda request: None)
    monkeypatch.setattr(sessions, "ensure_session_driver", lambda *a, **k: {"session_id": "x", "generation": 1})
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    alice, bob = api.new_user("alice"), api.new_user("bob")
    work_body = {"name": "w", "description": "d", "type": "BATCH", "category": "SPARK_SQL"}
    status, work, _ = api.call("POST", "/api/v1/works", {**work_body, "work_directory": "count_trips.sql"}, alice)
    assert status == 201, work
    work_id = work["data"]["work_id"]
    status, task, _ = api.call("POST", f"/api/v1/works/{work_id}/tasks", None, alice)
    assert status in (200, 201), task
    task_id = task["data"]["task_id"]
    unknown = "f" * 32
    _same(
        api,
        bob,
        [
            ("GET", "/api/v1/works/{id}", "work", None),
            ("PATCH", "/api/v1/works/{id}", "work patch", {"description": "x"}),
            ("DELETE", "/api/v1/works/{id}", "work delete", None),
            ("GET", "/api/v1/works/{id}/tasks", "work tasks", None),
            ("POST", "/api/v1/works/{id}/tasks", "work run", None),
        ],
        work_id,
        unknown,
    )
    _same(
        api,
        bob,
        [
            ("GET", "/api/v1/tasks/{id}", "task", None),
            ("POST", "/api/v1/tasks/{id}/cancel", "task cancel", None),
            ("POST", "/api/v1/tasks/{id}/retry", "task retry", None),
        ],
        task_id,
        unknown,
    )

    job = jobs.new_job(jobs.JobRequest(owner=verify_token(alice), code="select 1", run_type="sql"))
    _same(
        api,
        bob,
        [
            ("GET", f"{L}/entrance/{{id}}/status", "status", None),
            ("GET", f"{L}/entrance/{{id}}/progress", "progress", None),
            ("GET", f"{L}/entrance/{{id}}/log", "log", None),
            ("GET", f"{L}/entrance/{{id}}/kill", "kill", None),
            ("POST", f"{L}/entrance/{{id}}/kill", "kill", None),
            ("POST", f"{L}/entrance/{{id}}/killJobs", "killJobs", {"idList": ["{id}"]}),
        ],
        job["exec_id"],
        unknown,
    )
    assert job_store.get_job(job["exec_id"])["status"] == "Scheduled"  # type: ignore[index]
    unknown_task = str(int(job["task_id"]) + 1000)
    _same(
        api,
        bob,
        [
            ("GET", f"{L}/jobhistory/{{id}}/get", "jobhistory", None),
            ("POST", f"{L}/entrance/x/killJobs", "killJobs by task", {"taskIDList": ["{id}"]}),
        ],
        str(job["task_id"]),
        unknown_task,
    )
    alice_id = verify_token(alice).user_id
    result = f"s3://sparkgate/results/{alice_id}/{{id}}"
    _same(
        api,
        bob,
        [
            ("GET", f"{L}/filesystem/getDirFileTrees?path={result}", "result folder", None),
            ("GET", f"{L}/filesystem/openFile?path={result}/_0.json", "result file", None),
        ],
        job["exec_id"],
        unknown,
    )

    assert api.call("POST", "/scope", {"scope": "mine"}, alice)[0] == 200
    _same(
        api,
        bob,
        [
            ("DELETE", "/scope/{id}", "scope delete", None),
            ("POST", "/command", "command", {"scope": "{id}", "command": "1+1"}),
            ("POST", "/query", "query", {"scope": "{id}", "sql": "select 1"}),
            ("POST", "/session", "new session", {"scope": "{id}", "session": "x"}),
            ("POST", "/query", "session query", {"scope": "{id}", "session": "spark", "sql": "select 1"}),
            ("GET", "/table/{id}/spark/t", "table", None),
            ("GET", "/table/schema?scope={id}&session=spark&table=t", "schema", None),
        ],
        "mine",
        "nope",
    )
