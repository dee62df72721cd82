"""The embedded AWS's two ways in: the stack's own clients call it in process, other processes over
kept-alive HTTP. Both answer alike, both check the signature, both log writes before answering."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.local.aws import SignedMotoServer
from chalicelib.local.credentials import Credentials
from chalicelib.local.inprocess import InProcessSession
from chalicelib.local.journal import Journal

_NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


class Embedded:
    def __init__(self, server: SignedMotoServer, endpoint: str, journal: Journal, table: str, bucket: str) -> None:
        self.server, self.endpoint, self.journal = server, endpoint, journal
        self.table, self.bucket = table, bucket

    @property
    def accepted(self) -> int:
        """TCP connections the embedded AWS has accepted so far."""
        return int(self.server._server.accepted)

    def http_client(self, service: str, creds: Credentials | None = None) -> Any:
        """A client of another process: plain boto3, over HTTP."""
        creds = creds or self.server.credentials
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            config=_NO_RETRY,
        )


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Embedded]:
    """``start_embedded_aws`` as the stack calls it (with its write-ahead log open)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "SPARKGATE_AWS_IN_PROCESS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("SPARKGATE_STAGE", "local")
    monkeypatch.setenv("SPARKGATE_STATE_DIR", str(tmp_path))
    from chalicelib.config import settings
    from chalicelib.local.aws import start_embedded_aws
    from chalicelib.store import aws
    from chalicelib.store.provision import ensure_table_and_bucket

    journal = Journal(tmp_path / "wal")
    server, endpoint = start_embedded_aws(journal=journal)
    aws.reset()
    try:
        cfg = settings()
        ensure_table_and_bucket(cfg)
        journal.open(1)
        yield Embedded(server, endpoint, journal, cfg.table_name, cfg.bucket_name)
    finally:
        aws.reset()
        server.stop()
        journal.close()
        boto3.DEFAULT_SESSION = None


def test_the_stacks_own_clients_use_no_socket(embedded: Embedded) -> None:
    from chalicelib.store import aws

    assert isinstance(aws.client("s3")._endpoint.http_session, InProcessSession)
    assert isinstance(aws.table().meta.client._endpoint.http_session, InProcessSession)
    before = embedded.accepted
    aws.table().put_item(Item={"pk": "A", "sk": "A", "n": 1})
    assert aws.table().get_item(Key={"pk": "A", "sk": "A"})["Item"]["n"] == 1
    aws.client("s3").put_object(Bucket=embedded.bucket, Key="k", Body=b"v")
    assert embedded.accepted == before


_KEYS = ["plain.txt", "a b/ü.txt", "plus+sign", "per%25cent", "q?mark=1&x", "tilde~/semi;colon", "dots/../x"]


def test_s3_answers_alike_in_process_and_over_http(embedded: Embedded) -> None:
    from chalicelib.store import aws

    own, other = aws.client("s3"), embedded.http_client("s3")
    for i, key in enumerate(_KEYS):
        body = f"body {i} ".encode() * 500
        own.put_object(
            Bucket=embedded.bucket, Key=key, Body=body, ContentType="text/csv", Metadata={"owner": "u_1", "n": "1"}
        )
        got = other.get_object(Bucket=embedded.bucket, Key=key)
        assert got["Body"].read() == body
        assert got["Metadata"] == {"owner": "u_1", "n": "1"}
        mine, theirs = (c.head_object(Bucket=embedded.bucket, Key=key) for c in (own, other))
        for field in ("ContentLength", "ContentType", "ETag", "Metadata"):
            assert mine[field] == theirs[field], (key, field)
        assert mine["ContentLength"] == len(body)
        ranged = own.get_object(Bucket=embedded.bucket, Key=key, Range="bytes=2-5")
        assert ranged["Body"].read() == body[2:6]
    listed = [[o["Key"] for o in c.list_objects_v2(Bucket=embedded.bucket)["Contents"]] for c in (own, other)]
    assert listed[0] == listed[1] and set(listed[0]) >= set(_KEYS)
    own.delete_object(Bucket=embedded.bucket, Key=_KEYS[1])
    for client in (own, other):
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket=embedded.bucket, Key=_KEYS[1])
        assert err.value.response["Error"]["Code"] == "NoSuchKey"


def test_dynamodb_answers_alike_in_process_and_over_http(embedded: Embedded) -> None:
    from chalicelib.store import aws

    own, other = aws.client("dynamodb"), embedded.http_client("dynamodb")
    item = {
        "pk": {"S": "job#ü"},
        "sk": {"S": "job"},
        "n": {"N": "1.50"},
        "empty": {"S": ""},
        "b": {"B": b"\x00\xffraw"},
        "m": {"M": {"l": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}]}, "ss": {"SS": ["a", "b"]}}},
    }
    own.put_item(TableName=embedded.table, Item=item)
    key = {"pk": item["pk"], "sk": item["sk"]}
    mine = own.get_item(TableName=embedded.table, Key=key)["Item"]
    assert mine == other.get_item(TableName=embedded.table, Key=key)["Item"] == item
    for client in (own, other):
        with pytest.raises(ClientError) as err:
            client.put_item(TableName=embedded.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_in_process_requests_are_signature_checked_too(embedded: Embedded) -> None:
    from chalicelib.store import aws

    real = embedded.server.credentials
    forged = Credentials(real.access_key_id, "x" * len(real.secret_access_key))
    for creds, code in ((Credentials.generate(), "UnrecognizedClientException"), (forged, "InvalidSignatureException")):
        client = embedded.http_client("dynamodb", creds)
        client._endpoint.http_session = InProcessSession(embedded.server.app, embedded.server.get_host_and_port())
        with pytest.raises(ClientError) as err:
            client.put_item(TableName=embedded.table, Item={"pk": {"S": "forged"}, "sk": {"S": "x"}})
        assert err.value.response["Error"]["Code"] == code
    assert "Item" not in aws.table().get_item(Key={"pk": "forged", "sk": "x"})


def test_in_process_writes_are_in_the_log_when_they_return(embedded: Embedded) -> None:
    from chalicelib.store import aws

    aws.table().put_item(Item={"pk": "logged", "sk": "x"})
    aws.client("s3").put_object(Bucket=embedded.bucket, Key="logged.txt", Body=b"v")
    records = list(embedded.journal.read(embedded.journal.generation))
    assert any(b'"logged"' in body for _, body in records)
    assert any(header["p"].endswith("/logged.txt") and body == b"v" for header, body in records)


def test_http_clients_keep_their_connection(embedded: Embedded) -> None:
    client = embedded.http_client("dynamodb")
    client.describe_table(TableName=embedded.table)
    before = embedded.accepted
    for i in range(20):
        client.put_item(TableName=embedded.table, Item={"pk": {"S": f"k{i}"}, "sk": {"S": "x"}})
        client.get_item(TableName=embedded.table, Key={"pk": {"S": f"k{i}"}, "sk": {"S": "x"}})
    assert embedded.accepted == before


class _Answering:
    """A WSGI app that answers with its request's method and path and never reads the body."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.seen.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        if environ["PATH_INFO"] == "/read":
            environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [self.seen[-1].encode()]


@pytest.fixture
def answering() -> Iterator[tuple[_Answering, int]]:
    import threading

    from chalicelib.local.aws import _KeepAliveServer
    from chalicelib.local.keepalive import KeepAliveHandler

    app = _Answering()
    server = _KeepAliveServer("127.0.0.1", 0, app, handler=KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, server.server_address[1]
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()


_SMUGGLED = b"DELETE /secret HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("chunked", [False, True])
def test_an_unread_request_body_cannot_smuggle_a_request(answering: tuple[_Answering, int], chunked: bool) -> None:
    app, port = answering
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body: Any = iter([_SMUGGLED, _SMUGGLED]) if chunked else _SMUGGLED * 2
    conn.request("POST", "/first", body=body, encode_chunked=chunked)
    first = conn.getresponse()
    assert (first.status, first.read(), first.will_close) == (200, b"POST /first", False)
    conn.request("GET", "/second")
    assert conn.getresponse().read() == b"GET /second"
    assert app.seen == ["POST /first", "GET /second"]  # the body's lookalike request was never served
    conn.close()


def test_a_body_cut_short_closes_its_connection(answering: tuple[_Answering, int]) -> None:
    import socket

    _, port = answering
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly this")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 ") and b"\r\nConnection: close\r\n" in answer
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/still-serving")
    assert conn.getresponse().read() == b"GET /still-serving"
    conn.close()


def test_one_connection_serves_many_requests(answering: tuple[_Answering, int]) -> None:
    app, port = answering
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(5):
        conn.request("PUT", f"/r{i}", body=b"x" * (i * 1000))
        answer = conn.getresponse()
        assert answer.read() == f"PUT /r{i}".encode() and answer.getheader("Content-Length") == str(len(f"PUT /r{i}"))
    conn.request("HEAD", "/h")
    head = conn.getresponse()
    assert head.read() == b"" and head.getheader("Content-Length") == str(len("HEAD /h"))
    conn.request("GET", "/after-head")
    assert conn.getresponse().read() == b"GET /after-head"
    assert len(app.seen) == 7
    conn.close()


def test_a_refused_request_closes_its_connection(embedded: Embedded) -> None:
    host, port = embedded.server.get_host_and_port()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/", body=b"{}" * 1000, headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"})
    answer = conn.getresponse()
    assert answer.status == 403 and answer.getheader("Connection") == "close"
    assert json.loads(answer.read())["__type"].endswith("MissingAuthenticationTokenException")
    assert answer.will_close


def test_stopping_closes_kept_connections_and_the_in_process_path(embedded: Embedded) -> None:
    from chalicelib.store import aws

    client = embedded.http_client("dynamodb")
    client.describe_table(TableName=embedded.table)  # a pooled, kept-alive connection
    embedded.server.stop()
    with pytest.raises(Exception):  # noqa: B017 - botocore's connection error, whichever it is
        client.describe_table(TableName=embedded.table)
    assert not isinstance(aws.client("s3")._endpoint.http_session, InProcessSession)
