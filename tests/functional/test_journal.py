"""The embedded AWS's write-ahead log: what it logs, torn tails, replay order, generations."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from chalicelib.local.journal import Journal, Journaled, replay

AUTH_DDB = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"
AUTH_S3 = AUTH_DDB.replace("/dynamodb/", "/s3/")


def environ(method: str, path: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-amz-json-1.0",
        "wsgi.input": io.BytesIO(body),
    }
    env.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return env


class Recorder:
    """A WSGI app answering ``status`` and remembering what it saw."""

    def __init__(self, status: str = "200 OK") -> None:
        self.status = status
        self.seen: list[tuple[str, str, bytes, str]] = []

    def __call__(self, env: dict[str, Any], start_response: Any) -> list[bytes]:
        body = env["wsgi.input"].read()
        self.seen.append((env["REQUEST_METHOD"], env["PATH_INFO"], body, env.get("HTTP_X_AMZ_TARGET", "")))
        start_response(self.status, [("Content-Type", "application/json")])
        return [b"{}"]


def call(app: Any, env: dict[str, Any]) -> str:
    got: list[str] = []
    b"".join(app(env, lambda status, headers, exc=None: got.append(status)))
    return got[0]


def test_only_applied_writes_are_logged_and_replayed_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "wal")
    lock_d, lock_s = threading.RLock(), threading.RLock()
    inner = Recorder()
    app = Journaled(inner, journal, lock_d, lock_s)
    # not open yet: nothing is logged (the stack restores and replays before opening it)
    call(app, environ("POST", "/", b"{}", x_amz_target="DynamoDB_20120810.PutItem", authorization=AUTH_DDB))
    journal.open(1)
    assert call(app, environ("POST", "/", b'{"a":1}', x_amz_target="DynamoDB_20120810.PutItem", authorization=AUTH_DDB))
    call(app, environ("POST", "/", b"{}", x_amz_target="DynamoDB_20120810.GetItem", authorization=AUTH_DDB))
    call(app, environ("PUT", "/bucket/key", b"object", authorization=AUTH_S3, x_amz_meta_owner="u1"))
    call(app, environ("GET", "/bucket/key", authorization=AUTH_S3))
    inner.status = "400 Bad Request"  # a refused write (a failed condition)
    call(app, environ("POST", "/", b'{"b":2}', x_amz_target="DynamoDB_20120810.UpdateItem", authorization=AUTH_DDB))
    journal.close()
    records = list(journal.read(1))
    assert [(h["m"], h["p"], body) for h, body in records] == [
        ("POST", "/", b'{"a":1}'),
        ("PUT", "/bucket/key", b"object"),
    ]
    assert records[1][0]["h"]["x-amz-meta-owner"] == "u1"
    target = Recorder()
    assert replay(target, records) == (2, 0)
    assert target.seen == [
        ("POST", "/", b'{"a":1}', "DynamoDB_20120810.PutItem"),
        ("PUT", "/bucket/key", b"object", ""),
    ]


def test_a_torn_or_corrupt_tail_ends_the_log(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "wal")
    journal.open(3)
    for n in range(3):
        journal.sync(journal.append({"m": "POST", "p": f"/{n}"}, b"x" * 100))
    journal.close()
    path = journal.path(3)
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # a crash mid-append
    assert [h["p"] for h, _ in journal.read(3)] == ["/0", "/1"]
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF  # a flipped byte in the second record
    path.write_bytes(bytes(corrupt))
    assert [h["p"] for h, _ in journal.read(3)] == ["/0"]


def test_rotation_and_dropping_old_generations(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "wal")
    journal.open(1)
    journal.append({"m": "POST", "p": "/a"}, b"")
    assert journal.rotate() == 2 and journal.appended == 0
    journal.append({"m": "POST", "p": "/b"}, b"")
    assert journal.generations() == [1, 2]
    journal.drop_before(2)
    assert journal.generations() == [2]
    assert [h["p"] for h, _ in journal.read(2)] == ["/b"]
    assert oct((tmp_path / "wal").stat().st_mode & 0o777) == "0o700"
    assert oct(journal.path(2).stat().st_mode & 0o777) == "0o600"
    journal.close()
