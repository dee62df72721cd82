"""Functional tests: the Chalice app through ``chalice.test.Client`` on a moto backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

from tests.conftest import ROOT

ADMIN = ("admin", "admin-password")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A fresh moto backend holding the table and bucket."""
    monkeypatch.setenv("SPARKGATE_STAGE", "local")
    monkeypatch.setenv("SPARKGATE_STATE_DIR", str(tmp_path / "state"))
    from chalicelib.local.aws import serialize_dynamodb
    from chalicelib.store.aws import reset
    from chalicelib.store.keys import forget_cached_keys

    serialize_dynamodb()
    with mock_aws():
        reset()
        forget_cached_keys()
        from chalicelib.config import settings
        from chalicelib.store.provision import ensure_table_and_bucket
        from chalicelib.users import ensure_user

        ensure_table_and_bucket(settings())
        ensure_user(*ADMIN, admin=True)
        yield
        reset()


@pytest.fixture
def client(aws: None) -> Iterator[Client]:
    """The app under test."""
    from app import app

    with Client(app, project_dir=str(ROOT), stage_name="local") as test_client:
        yield test_client


class Api:
    """Small helper around the test client: JSON in, parsed JSON out."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Token {token}"
        raw = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
        resp = getattr(self.client.http, method.lower())(path, headers=hdrs, body=raw)
        return resp.status_code, json.loads(resp.body) if resp.body else None, resp.headers

    def login(self, username: str, password: str) -> str:
        status, body, _ = self.call("POST", "/token", {"username": username, "password": password})
        assert status == 200, body
        token: str = body["data"]["token"]
        return token

    def new_user(self, username: str, password: str = "password-123") -> str:
        """Create a user as the admin and return its token."""
        admin = self.login(*ADMIN)
        status, body, _ = self.call("POST", "/api/v1/users", {"username": username, "password": password}, admin)
        assert status == 201, body
        return self.login(username, password)


@pytest.fixture
def api(client: Client) -> Api:
    """JSON helper bound to the test client."""
    return Api(client)


@pytest.fixture
def fake_engine_api(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The app under test with session drivers from a fake runner (no JVM) and no sync wait."""
    from app import app
    from chalicelib import sessions
    from tests.functional.test_sessions import FakeRunner

    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    sessions.use_runner(FakeRunner())
    try:
        with Client(app, project_dir=str(ROOT), stage_name="local") as client:
            yield Api(client)
    finally:
        sessions.use_runner(None)
