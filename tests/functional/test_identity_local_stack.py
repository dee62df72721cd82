"""Identity on the real local stack (over loopback sockets): logout and disable revoke, failed logins
are throttled with ``Retry-After``, a Linkis service token is issued, used and revoked."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from chalicelib.local.stack import LocalStack
from tests.functional.test_local_stack_isolation import ADMIN, stack  # noqa: F401  - the module's stack fixture

L = "/api/rest_j/v1"
CODE = "local-stack-service-code-42"


def call(
    local: LocalStack, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", local.http_port, timeout=30)
    try:
        conn.request(
            method,
            path,
            json.dumps(body) if body is not None else None,
            {"Content-Type": "application/json", **(headers or {})},
        )
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def login(local: LocalStack, username: str, password: str) -> str:
    status, body, _ = call(local, "POST", "/token", {"username": username, "password": password})
    assert status == 200, body
    return str(body["data"]["token"])


def test_identity_on_the_local_stack(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    admin = login(stack, *ADMIN)
    for name in ("carol", "dan", "erin"):
        status, body, _ = call(
            stack, "POST", "/api/v1/users", {"username": name, "password": "pw-12345678"}, auth(admin)
        )
        assert status == 201, body

    # logout revokes that session's token, over the cookie
    status, body, headers = call(stack, "POST", f"{L}/user/login", {"userName": "carol", "password": "pw-12345678"})
    assert status == 200 and "SameSite=Strict" in headers["set-cookie"]
    cookie = {"Cookie": headers["set-cookie"].split(";")[0]}
    carol = login(stack, "carol", "pw-12345678")
    assert call(stack, "GET", f"{L}/jobhistory/1/get", headers=cookie)[0] == 400
    assert call(stack, "GET", f"{L}/user/logout", headers=cookie)[0] == 200
    assert call(stack, "GET", f"{L}/jobhistory/1/get", headers=cookie)[0] == 401
    assert call(stack, "GET", "/api/v1/works", headers=auth(carol))[0] == 200  # another session lives

    # disabling revokes every token at once
    assert call(stack, "PATCH", "/api/v1/users/carol", {"disabled": True}, auth(admin))[0] == 200
    assert call(stack, "GET", "/api/v1/works", headers=auth(carol))[0] == 401

    # throttling: 429 with Retry-After, before the hash
    monkeypatch.setenv("SPARKGATE_LOGIN_MAX_FAILURES_PER_USER", "3")
    for _ in range(3):
        assert call(stack, "POST", "/token", {"username": "dan", "password": "wrong-pw-1"})[0] == 401
    status, body, headers = call(stack, "POST", "/token", {"username": "dan", "password": "pw-12345678"})
    assert status == 429 and body["code"] == 429 and int(headers["retry-after"]) > 0, (body, headers)

    # a Linkis service token: issued, used, revoked
    service = {"Token-User": "erin", "Token-Code": CODE}
    assert call(stack, "GET", f"{L}/jobhistory/1/get", headers=service)[0] == 401
    gw = f"{L}/basedata-manager/gateway-auth-token"
    status, body, _ = call(stack, "POST", gw, {"tokenName": CODE, "legalUsers": "erin"}, auth(admin))
    assert status == 200 and body["status"] == 0, body
    token_id = body["data"]["item"]["id"]
    status, body, _ = call(stack, "GET", f"{L}/jobhistory/1/get", headers=service)
    assert (status, body["message"]) == (400, "no job with taskID 1")  # authenticated as erin
    assert call(stack, "GET", f"{L}/jobhistory/1/get", headers={**service, "Token-User": "dan"})[0] == 401
    assert call(stack, "DELETE", f"{gw}/{token_id}", headers=auth(admin))[0] == 200
    assert call(stack, "GET", f"{L}/jobhistory/1/get", headers=service)[0] == 401
