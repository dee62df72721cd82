"""The embedded AWS (moto on loopback) answers only requests signed with the stack's platform credential."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.local.aws import SignedMotoServer
from chalicelib.local.credentials import Credentials

_NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


class Embedded:
    def __init__(self, server: SignedMotoServer, endpoint: str, table: str, bucket: str) -> None:
        self.server, self.endpoint, self.table, self.bucket = server, endpoint, table, bucket

    def client(self, service: str, creds: Credentials | None = None) -> Any:
        creds = creds or self.server.credentials
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            config=_NO_RETRY,
        )

    def item_count(self) -> int:
        return int(self.client("dynamodb").scan(TableName=self.table, Select="COUNT")["Count"])


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Embedded]:
    """``start_embedded_aws`` as the stack calls it, its changes to the environment undone afterwards."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(name, "")  # recorded, so the teardown restores (or removes) what the stack sets
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-real-token-that-must-not-reach-the-stand-in")
    monkeypatch.setenv("SPARKGATE_STAGE", "local")
    monkeypatch.setenv("SPARKGATE_STATE_DIR", str(tmp_path))
    from chalicelib.config import settings
    from chalicelib.local.aws import start_embedded_aws
    from chalicelib.store import aws
    from chalicelib.store.provision import ensure_table_and_bucket

    server, endpoint = start_embedded_aws()
    aws.reset()
    try:
        cfg = settings()
        ensure_table_and_bucket(cfg)  # the platform's own calls, signed from the exported environment
        aws.table().put_item(Item={"pk": "USER#victim", "sk": "USER", "is_admin": False})
        yield Embedded(server, endpoint, cfg.table_name, cfg.bucket_name)
    finally:
        aws.reset()
        server.stop()
        boto3.DEFAULT_SESSION = None


def _raw(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_the_credential_is_generated_and_exported(embedded: Embedded, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    creds = embedded.server.credentials
    assert os.environ["AWS_ACCESS_KEY_ID"] == creds.access_key_id
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == creds.secret_access_key
    assert "AWS_SESSION_TOKEN" not in os.environ
    assert creds.access_key_id.startswith("AKIA") and len(creds.secret_access_key) >= 40


def test_the_platforms_own_calls_work(embedded: Embedded) -> None:
    from chalicelib.store import aws

    assert aws.table().get_item(Key={"pk": "USER#victim", "sk": "USER"})["Item"]["is_admin"] is False
    s3 = aws.client("s3")
    s3.put_object(Bucket=embedded.bucket, Key="results/a b/ü.txt", Body=b"x" * 10_000)
    assert s3.get_object(Bucket=embedded.bucket, Key="results/a b/ü.txt")["Body"].read() == b"x" * 10_000
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=embedded.bucket, Prefix="results/")["Contents"]]
    streams = aws.client("dynamodbstreams").list_streams(TableName=embedded.table)["Streams"]
    assert streams


def test_unsigned_requests_answer_403_and_change_nothing(embedded: Embedded) -> None:
    before = embedded.item_count()
    scan = json.dumps({"TableName": embedded.table}).encode()
    target = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.Scan"}
    assert _raw(embedded.endpoint + "/", scan, target, "POST") == 403
    put = json.dumps({"TableName": embedded.table, "Item": {"pk": {"S": "X"}, "sk": {"S": "X"}}}).encode()
    put_target = {**target, "X-Amz-Target": "DynamoDB_20120810.PutItem"}
    assert _raw(embedded.endpoint + "/", put, put_target, "POST") == 403
    assert _raw(f"{embedded.endpoint}/{embedded.bucket}") == 403
    assert _raw(f"{embedded.endpoint}/{embedded.bucket}/planted", b"evil", method="PUT") == 403
    assert _raw(embedded.endpoint + "/moto-api/reset", b"", method="POST") == 403
    assert _raw(embedded.endpoint + "/moto-api/data.json") == 403
    assert embedded.item_count() == before
    s3 = embedded.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=embedded.bucket, Prefix="planted")


@pytest.mark.parametrize("who", ["another credential", "the key id with a guessed secret"])
def test_wrongly_signed_requests_are_refused_in_aws_error_shape(embedded: Embedded, who: str) -> None:
    key_id = embedded.server.credentials.access_key_id
    creds = Credentials.generate() if who == "another credential" else Credentials(key_id, "guessed")
    ddb = embedded.client("dynamodb", creds)
    with pytest.raises(ClientError) as scan:
        ddb.scan(TableName=embedded.table)
    assert scan.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    expected = "UnrecognizedClientException" if who == "another credential" else "InvalidSignatureException"
    assert scan.value.response["Error"]["Code"] == expected
    with pytest.raises(ClientError) as update:
        ddb.update_item(
            TableName=embedded.table,
            Key={"pk": {"S": "USER#victim"}, "sk": {"S": "USER"}},
            UpdateExpression="SET is_admin = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )
    assert update.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as put:
        embedded.client("s3", creds).put_object(Bucket=embedded.bucket, Key="engine/bootstrap.sh", Body=b"evil")
    assert put.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert put.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "SignatureDoesNotMatch")

    from chalicelib.store import aws

    assert aws.table().get_item(Key={"pk": "USER#victim", "sk": "USER"})["Item"]["is_admin"] is False
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=embedded.bucket, Prefix="engine/")
