"""Hostile input answers 400 in the surface's own envelope, never 500 (issue 13, item 5)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.functional.conftest import ADMIN, Api

NESTED = "[" * 200_000 + "]" * 200_000
BIG_INT = '{"name": ' + "9" * 5000 + ', "executionCode": "select 1"}'
HOSTILE = {"nested 200k levels": NESTED, "5000-digit integer": BIG_INT}
#: routes that read their body before anything else: they must answer exactly 400
MUST_BE_400 = {
    ("POST", "/token"),
    ("POST", "/api/v1/works"),
    ("PATCH", "/api/v1/works/{work_id}"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/rest_j/v1/entrance/execute"),
    ("POST", "/api/rest_j/v1/entrance/submit"),
    ("POST", "/api/rest_j/v1/user/login"),
    ("POST", "/query"),
    ("POST", "/scope"),
    ("POST", "/loadfile"),
    ("POST", "/pointmap"),
}


def assert_envelope(path: str, body: Any, *, error: bool = True) -> None:
    """The answer is the JSON (error) envelope of the surface ``path`` belongs to."""
    assert isinstance(body, dict), body
    if path.startswith("/api/rest_j/"):
        assert set(body) == {"method", "status", "message", "data"}, body
        assert (body["status"] != 0) is error, body
    elif path.startswith("/api/v1/"):
        assert set(body) == ({"code", "msg"} if error else {"code", "data"}) or not error, body
    else:
        assert ((body.get("status") == "error") is error and "message" in body) or not error, body


def body_routes() -> list[tuple[str, str]]:
    from app import app

    return sorted(
        (method, path)
        for path, methods in app.routes.items()
        for method in methods
        if method in ("POST", "PUT", "PATCH")
    )


@pytest.fixture
def setup(api: Api) -> tuple[Api, str, dict[str, str]]:
    token = api.login(*ADMIN)
    status, created, _ = api.call(
        "POST", "/api/v1/works", {"name": "fuzz", "description": "d", "type": "BATCH", "category": "SPARK_SQL"}, token
    )
    assert status == 201, created
    params = {"work_id": created["data"]["work_id"], "username": ADMIN[0]}
    return api, token, params


def test_every_body_route_refuses_hostile_json_with_400(setup: tuple[Api, str, dict[str, str]]) -> None:
    api, token, params = setup
    routes = body_routes()
    assert len(routes) >= 25, routes
    assert set(routes) >= MUST_BE_400, MUST_BE_400 - set(routes)
    for method, template in routes:
        path = re.sub(r"\{(\w+)\}", lambda m: params.get(m.group(1), "0" * 32), template)
        for kind, raw in HOSTILE.items():
            token = api.login(*ADMIN)  # a fresh one: the Linkis logout route revokes the last
            status, body, _ = api.call(method, path, raw, token)
            assert status < 500, (method, template, kind, status, body)
            assert_envelope(template, body, error=status >= 400)
            if (method, template) in MUST_BE_400:
                assert status == 400, (method, template, kind, status, body)


def test_a_lone_surrogate_in_a_work_is_400(setup: tuple[Api, str, dict[str, str]]) -> None:
    api, token, params = setup
    for field in ("name", "description"):
        raw = '{"name": "ok", "description": "ok", "type": "BATCH", "category": "SPARK_SQL"}'
        raw = raw.replace(f'"{field}": "ok"', f'"{field}": "a\\ud800b"')
        status, body, _ = api.call("POST", "/api/v1/works", raw, token)
        assert status == 400, (field, body)
        assert_envelope("/api/v1/works", body)
        status, body, _ = api.call("PATCH", f"/api/v1/works/{params['work_id']}", f'{{"{field}": "\\udfff"}}', token)
        assert status == 400, (field, body)
        assert_envelope("/api/v1/works", body)


@pytest.mark.parametrize("if_match", ['"²"', '"٣"', '"' + "1" * 5000 + '"', 'W/"\u00b9\u00b2"'])
def test_a_non_ascii_or_huge_if_match_is_400(setup: tuple[Api, str, dict[str, str]], if_match: str) -> None:
    api, token, params = setup
    path = f"/api/v1/works/{params['work_id']}"
    for method, body in (("PATCH", {"description": "x"}), ("DELETE", None)):
        status, answer, _ = api.call(method, path, body, token, headers={"If-Match": if_match})
        assert status == 400, (method, answer)
        assert_envelope(path, answer)
