"""The local ``@connections`` API requires the gateway's credential, as API Gateway's IAM auth does."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.sync.client import ClientConnection, connect

from chalicelib.local.credentials import Credentials
from chalicelib.local.ws_gateway import MAX_MESSAGE_BYTES, WsGateway

PLATFORM = Credentials.generate()


def _accept_all() -> dict[str, Any]:
    return {
        "$connect": lambda event, context: {"statusCode": 200},
        "$default": lambda event, context: {"statusCode": 200},
        "$disconnect": lambda event, context: {"statusCode": 200},
    }


@pytest.fixture
def gateway() -> Iterator[WsGateway]:
    gw = WsGateway(_accept_all(), port=0, credentials=PLATFORM)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def socket_and_id(gateway: WsGateway) -> Iterator[tuple[ClientConnection, str]]:
    with connect(gateway.ws_url) as ws:
        (connection_id,) = gateway.connection_ids
        yield ws, connection_id


def _management(gateway: WsGateway, creds: Credentials) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        "apigatewaymanagementapi",
        endpoint_url=gateway.endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def _nothing_received(ws: ClientConnection) -> bool:
    try:
        ws.recv(timeout=0.3)
    except TimeoutError:
        return True
    return False


def _raw(gateway: WsGateway, method: str, connection_id: str, data: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"{gateway.endpoint}/@connections/{connection_id}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status), resp.headers.get("x-amzn-ErrorType", ""), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.headers.get("x-amzn-ErrorType", ""), err.read()


def test_the_platforms_signed_calls_work(gateway: WsGateway, socket_and_id: tuple[ClientConnection, str]) -> None:
    ws, connection_id = socket_and_id
    api = _management(gateway, PLATFORM)
    api.post_to_connection(ConnectionId=connection_id, Data=b'{"genuine": true}')
    assert ws.recv(timeout=5) == '{"genuine": true}'
    assert api.get_connection(ConnectionId=connection_id)["ConnectedAt"]
    with pytest.raises(ClientError) as too_large:
        api.post_to_connection(ConnectionId=connection_id, Data=b"x" * (MAX_MESSAGE_BYTES + 1))
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    api.delete_connection(ConnectionId=connection_id)
    with pytest.raises(ClientError) as gone:
        api.post_to_connection(ConnectionId=connection_id, Data=b"late")
    assert gone.value.response["Error"]["Code"] == "GoneException"


def test_unsigned_post_get_delete_answer_403_and_reach_no_socket(
    gateway: WsGateway, socket_and_id: tuple[ClientConnection, str]
) -> None:
    ws, connection_id = socket_and_id
    forged = b'{"method": "/api/rest_j/v1/entrance/x/log", "data": {"log": ["forged"]}}'
    assert _raw(gateway, "POST", connection_id, forged)[:2] == (403, "ForbiddenException")
    assert _raw(gateway, "GET", connection_id)[:2] == (403, "ForbiddenException")
    status, error, body = _raw(gateway, "DELETE", connection_id)
    assert (status, error) == (403, "ForbiddenException") and b"missing Authentication Token" in body
    assert _raw(gateway, "POST", "unknown-id", b"x")[0] == 403  # no telling known ids from unknown ones
    assert _nothing_received(ws)
    assert connection_id in gateway.connection_ids
    ws.send("still open")


@pytest.mark.parametrize("who", ["another credential", "the key id with a guessed secret"])
def test_wrongly_signed_calls_answer_403_and_reach_no_socket(
    gateway: WsGateway, socket_and_id: tuple[ClientConnection, str], who: str
) -> None:
    ws, connection_id = socket_and_id
    creds = Credentials.generate() if who == "another credential" else Credentials(PLATFORM.access_key_id, "guess")
    api = _management(gateway, creds)
    for call in (
        lambda: api.post_to_connection(ConnectionId=connection_id, Data=b"forged"),
        lambda: api.get_connection(ConnectionId=connection_id),
        lambda: api.delete_connection(ConnectionId=connection_id),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert refused.value.response["Error"]["Code"] == "ForbiddenException"
    assert _nothing_received(ws)
    assert connection_id in gateway.connection_ids


def test_an_unsigned_huge_body_is_refused_without_being_read(gateway: WsGateway) -> None:
    url = urlsplit(gateway.endpoint)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(b"POST /@connections/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000\r\n\r\npartial")
        answer = b""
        while chunk := sock.recv(4096):  # the server closes: the unread body is never taken for a request
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and b"ForbiddenException" in answer


def test_without_a_credential_every_call_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    gw = WsGateway(_accept_all(), port=0)
    gw.start()
    try:
        with connect(gw.ws_url) as ws:
            (connection_id,) = gw.connection_ids
            with pytest.raises(ClientError) as refused:
                _management(gw, PLATFORM).post_to_connection(ConnectionId=connection_id, Data=b"x")
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert _nothing_received(ws)
    finally:
        gw.stop()
