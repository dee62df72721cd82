"""Linkis's ``waitingSize`` push (issue 15): while a Job waits in its session's queue its owner's sockets get
``/api/rest_j/v1/entrance/{execID}/waitingSize`` ``{execID, taskID, waitingSize}``, the number of Jobs
ahead of it: when it joins the queue, and again each time a Job ahead of it leaves the queue.

The Jobs are real (submitted over HTTP, stored in moto, left queued by the fake runner); the stream records
are the Job items' real before/after images; only ``@connections`` is faked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import push
from chalicelib.api.stream import StorePorts, plain
from tests.functional.conftest import Api

EXECUTE = "/api/rest_j/v1/entrance/execute"
SQL = {"executeApplicationName": "spark", "executionCode": "select 1", "runType": "sql"}


class Ports(StorePorts):
    """The real store; each user's one socket (``ws-<user id>``) and what it was sent."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}

    def connection_user(self, connection_id: str) -> str | None:
        return connection_id.removeprefix("ws-")

    def user_connections(self, user_id: str) -> list[str]:
        return [f"ws-{user_id}"]

    def job_subscribers(self, exec_id: str) -> list[push.Subscriber]:
        return []

    def post(self, connection_id: str, data: bytes) -> bool:
        self.sent.setdefault(connection_id, []).append(json.loads(data))
        return True

    def waiting(self, user_id: str) -> list[tuple[str, int]]:
        """(execID, waitingSize) of the waitingSize frames the user's socket got, in order."""
        frames = self.sent.get(f"ws-{user_id}", [])
        out = []
        for frame in frames:
            if frame["method"].endswith("/waitingSize"):
                assert frame["message"] == "waitingSize" and frame["status"] == 0
                assert frame["method"] == f"/api/rest_j/v1/entrance/{frame['data']['execID']}/waitingSize"
                assert set(frame["data"]) == {"execID", "taskID", "waitingSize"}
                out.append((frame["data"]["execID"], frame["data"]["waitingSize"]))
        return out


@pytest.fixture
def api(fake_engine_api: Api) -> Api:
    return fake_engine_api


def raw(exec_id: str) -> dict[str, Any]:
    """The Job item as the table's stream carries it (queue keys included)."""
    from chalicelib.store.aws import table
    from chalicelib.store.item_keys import job_key

    item = table().get_item(Key=job_key(exec_id), ConsistentRead=True)["Item"]
    image: dict[str, Any] = plain(item)
    return image


def submit(api: Api, token: str) -> tuple[str, dict[str, Any]]:
    status, answer, _ = api.call("POST", EXECUTE, SQL, token)
    assert status == 200 and answer["status"] == 0, answer
    exec_id = str(answer["data"]["execID"])
    return exec_id, raw(exec_id)


def change(event: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> push.Change:
    return push.Change(event, {"pk": new["pk"], "sk": new["sk"]}, new=new, old=old)


def user_id(exec_id: str) -> str:
    from chalicelib.store import jobs as job_store

    job = job_store.get_job(exec_id)
    assert job is not None
    return str(job["owner"])


def test_a_queued_job_is_pushed_its_position_and_each_move_up(api: Api) -> None:
    from chalicelib.store import jobs as job_store

    alice, bob = api.new_user("alice"), api.new_user("bob")
    ports = Ports()
    batch = push.PushBatch(ports)
    jobs = [submit(api, alice) for _ in range(3)]
    other, other_image = submit(api, bob)  # another user's queue: counts for nobody here
    for _, image in [*jobs, (other, other_image)]:
        assert push.queue_of(image) is not None
        batch.deliver(change("INSERT", image))
    (first, first_image), (second, _), (third, _) = jobs
    owner = user_id(first)
    assert ports.waiting(owner) == [(first, 0), (second, 1), (third, 2)]
    # the status push comes first, as Linkis's console expects the Job known before its queue position
    methods = [f["method"].rsplit("/", 1)[1] for f in ports.sent[f"ws-{owner}"]]
    assert methods == ["status", "waitingSize"] * 3
    assert ports.waiting(user_id(other)) == [(other, 0)]

    # the first Job starts: it leaves the queue, the two behind it move up
    started = job_store.transition(first, ("Scheduled",), "Running", dequeue=True)
    assert started is not None
    running = raw(first)
    assert push.queue_of(running) is None
    batch.deliver(change("MODIFY", running, first_image))
    assert ports.waiting(owner)[3:] == [(second, 0), (third, 1)]

    # a change that keeps the queue as it was (progress, log count) pushes no position
    before = raw(second)
    job_store.update_job_fields(second, {"progress": 0.0, "log_lines": 1})
    batch.deliver(change("MODIFY", raw(second), before))
    assert len(ports.waiting(owner)) == 5

    # the last one is cancelled while queued: nobody is behind it, nothing to push
    before = raw(third)
    assert job_store.transition(third, ("Scheduled",), "Cancelled", dequeue=True) is not None
    batch.deliver(change("MODIFY", raw(third), before))
    assert len(ports.waiting(owner)) == 5
    assert ports.waiting(user_id(other)) == [(other, 0)]  # bob's socket never got alice's queue


def test_waiting_pushes_place_the_changed_job_by_task_id_when_the_index_lags() -> None:
    """The queue index is eventually consistent: a joining Job may be missing from it, a leaving one still there."""
    q = "SESSIONQ#s1"
    queue = [{"exec_id": f"e{i}", "task_id": i} for i in (1, 2, 4)]  # e3 not indexed yet, e1 not yet removed
    joining = {"pk": "JOB#e3", "sk": "JOB", "exec_id": "e3", "task_id": 3, "gsi1pk": q}
    got = push.waiting_pushes(change("INSERT", joining), lambda s: queue if s == "s1" else [])
    assert [(j["exec_id"], p.data["waitingSize"]) for j, p in got] == [("e3", 2)]
    left = {"pk": "JOB#e1", "sk": "JOB", "exec_id": "e1", "task_id": 1, "status": "Running"}
    got = push.waiting_pushes(change("MODIFY", left, {**left, "gsi1pk": q}), lambda s: queue)
    assert [(j["exec_id"], p.data["waitingSize"]) for j, p in got] == [("e2", 0), ("e4", 1)]
    assert push.waiting_pushes(change("REMOVE", left), lambda s: queue) == []
