"""Login and authentication across the surfaces."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tests.functional.conftest import ADMIN, Api


def test_token_answers_spec_envelope(api: Api) -> None:
    status, body, _ = api.call("POST", "/token", {"username": ADMIN[0], "password": ADMIN[1]})
    assert status == 200
    assert body["status"] == "success" and body["code"] == 200
    assert body["data"]["expired"] == 604800
    header = jwt.get_unverified_header(body["data"]["token"])
    assert header["alg"] == "HS512" and header["kid"]
    claims = jwt.decode(body["data"]["token"], options={"verify_signature": False})
    assert {"exp", "iat", "sub"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 604800


@pytest.mark.parametrize(
    "body,status",
    [
        ({"username": ADMIN[0], "password": "wrong-password"}, 401),
        ({"username": "nobody", "password": "whatever1"}, 401),
        ({"username": ADMIN[0]}, 400),
        ({"password": "x"}, 400),
        ({"username": 5, "password": "x"}, 400),
        ("{not json", 400),
    ],
)
def test_token_refusals(api: Api, body: object, status: int) -> None:
    got, answer, _ = api.call("POST", "/token", body)
    assert got == status
    assert answer["status"] == "error" and answer["message"]


def _forge(token: str, header: dict[str, object] | None = None, claims: dict[str, object] | None = None) -> str:
    parts = token.split(".")

    def enc(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    def dec(part: str) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return loaded

    new_header = {**dec(parts[0]), **(header or {})}
    new_claims = {**dec(parts[1]), **(claims or {})}
    return f"{enc(new_header)}.{enc(new_claims)}.{parts[2]}"


def test_bad_tokens_are_refused(api: Api) -> None:
    token = api.login(*ADMIN)
    assert api.call("GET", "/api/v1/works", token=token)[0] == 200
    none_alg = _forge(token, header={"alg": "none"}).rsplit(".", 1)[0] + "."
    tampered = _forge(token, claims={"sub": "someone-else"})
    hs256 = jwt.encode({"sub": "x", "iat": int(time.time()), "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256")
    for bad in (none_alg, tampered, hs256, "garbage", token[:-4] + "AAAA"):
        status, body, _ = api.call("GET", "/api/v1/works", token=bad)
        assert status == 401, bad
        assert body["code"] == 401100
    assert api.call("GET", "/api/v1/works")[0] == 401
    bearer = api.call("GET", "/api/v1/works", headers={"Authorization": f"Bearer {token}"})
    assert bearer[0] == 200


def test_expired_token_is_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_TOKEN_TTL", "1")
    token = api.login(*ADMIN)
    time.sleep(2.1)
    status, body, _ = api.call("GET", "/api/v1/works", token=token)
    assert status == 401 and "expired" in body["msg"]


def test_only_admins_create_users(api: Api) -> None:
    alice = api.new_user("alice")
    status, body, _ = api.call("POST", "/api/v1/users", {"username": "mallory", "password": "password-1"}, alice)
    assert status == 403 and body["code"] == 403100
    admin = api.login(*ADMIN)
    status, body, _ = api.call("POST", "/api/v1/users", {"username": "alice", "password": "password-2"}, admin)
    assert status == 409
    status, body, _ = api.call("POST", "/api/v1/users", {"username": "bob", "password": "short"}, admin)
    assert status == 400 and "password" in body["msg"]


def test_passwords_are_stored_hashed(api: Api) -> None:
    api.new_user("carol", "carol-secret-pw")
    from chalicelib.store.users import get_user

    record = get_user("carol")
    assert record is not None
    assert "carol-secret-pw" not in json.dumps(record, default=str)
    assert record["password_hash"].startswith("scrypt$")
