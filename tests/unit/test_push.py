"""The stream handler: hand-built DynamoDB stream events -> pushes (table in moto, ``@connections`` stubbed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3.dynamodb.types
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/api"
_SER = boto3.dynamodb.types.TypeSerializer()


class FakeManagementApi:
    """Records posts; answers 410 for ``gone`` ids and 500 for ``broken`` ids."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], int]] = []
        self.gone: set[str] = set()
        self.broken: set[str] = set()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        if ConnectionId in self.gone:
            raise ClientError(
                {"Error": {"Code": "GoneException", "Message": "gone"}, "ResponseMetadata": {"HTTPStatusCode": 410}},
                "PostToConnection",
            )
        if ConnectionId in self.broken:
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "PostToConnection",
            )
        self.posts.append((ConnectionId, json.loads(Data), len(Data)))
        return {}

    def to(self, connection_id: str) -> list[dict[str, Any]]:
        return [frame for cid, frame, _ in self.posts if cid == connection_id]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("SPARKGATE_STAGE", "local")
    monkeypatch.setenv("SPARKGATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SPARKGATE_WS_ENDPOINT", ENDPOINT)
    from chalicelib.store import wsapi
    from chalicelib.store.aws import reset

    with mock_aws():
        reset()
        wsapi.reset()
        from chalicelib.config import settings
        from chalicelib.store.provision import ensure_table_and_bucket

        ensure_table_and_bucket(settings())
        yield
        reset()
        wsapi.reset()


@pytest.fixture
def mgmt(aws: None, monkeypatch: pytest.MonkeyPatch) -> FakeManagementApi:
    from chalicelib.store import wsapi

    fake = FakeManagementApi()
    monkeypatch.setattr(wsapi, "management_client", lambda endpoint=None: fake)
    return fake


def job_item(exec_id: str = "e1", owner: str = "u1", status: str = "Scheduled", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"JOB#{exec_id}",
        "sk": "JOB",
        "exec_id": exec_id,
        "task_id": 7,
        "owner": owner,
        "status": status,
        "progress": 0,
        "progress_info": [],
        "submitter_connection": None,
    }
    item.update(extra)
    return item


def log_item(exec_id: str, first: int, lines: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "pk": f"JOB#{exec_id}",
        "sk": f"LOG#{first:09d}",
        "exec_id": exec_id,
        "first": first,
        "lines": [{"l": level, "t": text} for level, text in lines],
    }


_seq = iter(range(1000, 10**6))


def record(name: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None) -> dict[str, Any]:
    from chalicelib.store.aws import dynamo_value

    def typed(item: dict[str, Any]) -> dict[str, Any]:
        return {k: _SER.serialize(dynamo_value(v)) for k, v in item.items()}

    image = new or old or {}
    body: dict[str, Any] = {
        "Keys": typed({"pk": image["pk"], "sk": image["sk"]}),
        "SequenceNumber": str(next(_seq)),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        body["NewImage"] = typed(new)
    if old is not None:
        body["OldImage"] = typed(old)
    return {
        "eventID": f"ev{body['SequenceNumber']}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/sparkgate/stream/2026",
        "dynamodb": body,
    }


def handle(*records: dict[str, Any]) -> dict[str, Any]:
    from chalicelib.api.stream import on_dynamodb_record

    result: dict[str, Any] = on_dynamodb_record({"Records": list(records)}, None)
    return result


def connect(connection_id: str, user: str) -> Any:
    from chalicelib.store import connections

    return connections.put_connection(connection_id, user, user)


def put_job(job: dict[str, Any]) -> None:
    from chalicelib.store.aws import table

    table().put_item(Item={k: v for k, v in job.items() if v is not None})


def test_status_change_goes_to_submitter_with_subscription_tag(mgmt: FakeManagementApi) -> None:
    from chalicelib.store import connections

    conn = connect("c1", "u1")
    connect("c2", "u1")  # same user, not subscribed: a socket-submitted job does not go to it
    connections.subscribe(conn, "e1", "tag-1")
    old = job_item(submitter_connection="c1")
    new = job_item(status="Running", submitter_connection="c1")
    assert handle(record("INSERT", old), record("MODIFY", new, old)) == {"batchItemFailures": []}
    frames = mgmt.to("c1")
    assert [f["data"]["status"] for f in frames] == ["Scheduled", "Running"]
    assert frames[0] == {
        "method": "/api/rest_j/v1/entrance/e1/status",
        "status": 0,
        "message": "status",
        "data": {"execID": "e1", "taskID": 7, "status": "Scheduled"},
        "websocketTag": "tag-1",
    }
    assert mgmt.to("c2") == []


def test_unchanged_status_pushes_nothing(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    old = job_item(status="Running", submitter_connection="c1", heartbeat=1)
    new = job_item(status="Running", submitter_connection="c1", heartbeat=2)
    handle(record("MODIFY", new, old))
    assert mgmt.posts == []


def test_http_job_goes_to_all_owner_connections_never_another_user(mgmt: FakeManagementApi) -> None:
    from chalicelib.store import connections

    connect("a1", "u1")
    connect("a2", "u1")
    intruder = connect("b1", "u2")
    connections.subscribe(intruder, "e1", "sneaky")  # a forged subscription by another user
    put_job(job_item())
    handle(record("INSERT", job_item()))
    assert {cid for cid, _, _ in mgmt.posts} == {"a1", "a2"}
    assert mgmt.to("b1") == []


def test_submitter_connection_of_another_user_gets_nothing(mgmt: FakeManagementApi) -> None:
    connect("b1", "u2")
    handle(record("INSERT", job_item(submitter_connection="b1")))
    assert mgmt.posts == []


def test_progress_push(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    info = [{"id": "job-1", "succeedTasks": 2, "failedTasks": 0, "runningTasks": 1, "totalTasks": 4}]
    old = job_item(status="Running", submitter_connection="c1")
    new = job_item(status="Running", submitter_connection="c1", progress=0.5, progress_info=info)
    handle(record("MODIFY", new, old))
    (frame,) = mgmt.to("c1")
    assert frame["method"] == "/api/rest_j/v1/entrance/e1/progress"
    assert frame["data"] == {"execID": "e1", "taskID": 7, "progress": 0.5, "progressInfo": info}


def test_final_transition_pushes_progress_then_status(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    old = job_item(status="Running", submitter_connection="c1", progress=0.5)
    new = job_item(status="Succeed", submitter_connection="c1", progress=1)
    handle(record("MODIFY", new, old))
    frames = mgmt.to("c1")
    assert [f["method"].rsplit("/", 1)[1] for f in frames] == ["progress", "status"]
    assert frames[0]["data"]["progress"] == 1.0
    assert frames[1]["data"]["status"] == "Succeed"


def test_log_chunk_pushes_new_lines_only(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    put_job(job_item(status="Running", submitter_connection="c1"))
    first = log_item("e1", 0, [("INFO", "a"), ("WARN", "b")])
    second = log_item("e1", 2, [("ERROR", "c"), ("INFO", "d")])
    grown = log_item("e1", 2, [("ERROR", "c"), ("INFO", "d"), ("INFO", "e")])
    handle(record("INSERT", first), record("INSERT", second), record("MODIFY", grown, second))
    frames = mgmt.to("c1")
    assert [f["data"]["log"] for f in frames] == [
        ["", "b", "a", "a\nb"],
        ["c", "", "d", "c\nd"],
        ["", "", "e", "e"],
    ]
    assert [f["data"]["fromLine"] for f in frames] == [3, 5, 6]  # 1-based: the next line to ask for
    assert all(f["method"] == "/api/rest_j/v1/entrance/e1/log" for f in frames)


def test_gone_connection_is_deleted_and_not_a_failure(mgmt: FakeManagementApi) -> None:
    from chalicelib.store import connections

    gone = connect("dead", "u1")
    connections.subscribe(gone, "e1", None)
    connect("live", "u1")
    mgmt.gone.add("dead")
    put_job(job_item())
    assert handle(record("INSERT", job_item())) == {"batchItemFailures": []}
    assert connections.get_connection("dead") is None
    assert connections.job_subscriptions("e1") == []
    assert len(mgmt.to("live")) == 1


def test_real_gone_exception_shape_deletes_the_connection(aws: None) -> None:
    """botocore's own GoneException (410) as the real management API answers it."""
    from chalicelib.store import connections, wsapi

    connect("c1", "u1")
    client = wsapi.management_client()
    with Stubber(client) as stub:
        stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
        assert wsapi.post("c1", b"{}") is False
        stub.assert_no_pending_responses()
    assert connections.get_connection("c1") is None


def test_partial_batch_failure_reports_first_failed_record_and_stops(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    connect("c2", "u2")
    ok = record("INSERT", job_item("e1", submitter_connection="c1"))
    bad = record("INSERT", job_item("e2", owner="u2", submitter_connection="c2"))
    later = record("INSERT", job_item("e3", submitter_connection="c1"))
    mgmt.broken.add("c2")
    result = handle(ok, bad, later)
    assert result == {"batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]}
    # the first record was delivered; the third waits for the retry (Lambda resumes from the failure)
    assert [f["data"]["execID"] for f in mgmt.to("c1")] == ["e1"]


def test_one_failing_connection_does_not_fail_the_record(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    connect("c2", "u1")
    mgmt.broken.add("c2")
    assert handle(record("INSERT", job_item())) == {"batchItemFailures": []}
    assert len(mgmt.to("c1")) == 1


def test_failed_lookup_fails_the_record(mgmt: FakeManagementApi, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.api import stream

    def boom(self: Any, exec_id: str) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "GetItem")

    monkeypatch.setattr(stream.StorePorts, "get_job", boom)
    rec = record("INSERT", log_item("e1", 0, [("INFO", "x")]))
    assert handle(rec) == {"batchItemFailures": [{"itemIdentifier": rec["dynamodb"]["SequenceNumber"]}]}


def test_large_log_is_split_under_128kb_with_consecutive_cursors(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    put_job(job_item(status="Running", submitter_connection="c1"))
    lines = [("INFO" if i % 3 else "WARN", f"line {i:05d} " + "x" * 180) for i in range(3000)]
    handle(record("INSERT", log_item("e1", 10, lines)))
    frames = [(f, size) for cid, f, size in mgmt.posts if cid == "c1"]
    assert len(frames) > 1
    assert all(size <= 128 * 1024 for _, size in frames)
    cursor, seen = 11, []  # the chunk starts at 0-based line 10: Linkis's line 11
    for frame, _ in frames:
        text = frame["data"]["log"][3].split("\n")
        assert frame["data"]["fromLine"] == cursor + len(text)
        cursor = frame["data"]["fromLine"]
        seen.extend(text)
    assert seen == [t for _, t in lines]
    assert cursor == 3011


def test_single_huge_line_is_truncated_in_the_push(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    put_job(job_item(status="Running", submitter_connection="c1"))
    handle(record("INSERT", log_item("e1", 0, [("INFO", "y" * 300_000), ("INFO", "after")])))
    frames = [(f, size) for cid, f, size in mgmt.posts if cid == "c1"]
    assert all(size <= 128 * 1024 for _, size in frames)
    assert [f["data"]["fromLine"] for f, _ in frames] == [2, 3]
    assert "truncated" in frames[0][0]["data"]["log"][3]
    assert frames[1][0]["data"]["log"][3] == "after"


def test_other_items_are_ignored(mgmt: FakeManagementApi) -> None:
    connect("c1", "u1")
    conn_item = {"pk": "CONN#c1", "sk": "CONN", "user_id": "u1"}
    assert handle(record("INSERT", conn_item), record("REMOVE", None, job_item())) == {"batchItemFailures": []}
    assert mgmt.posts == []


def test_expired_connections_are_skipped(mgmt: FakeManagementApi) -> None:
    from chalicelib.store import connections

    connections.put_connection("old", "u1", "u1", now=1_000_000)  # expired long ago; TTL has not run yet
    handle(record("INSERT", job_item()))
    assert mgmt.posts == []
