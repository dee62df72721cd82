"""The push logic on an in-memory fake of its ports (no moto, no sockets): who gets what, in which order.

``InMemoryPorts`` plays the table and the management API as the Chalice sample's ``InMemoryTodoDB``
plays its store; the moto-backed path is in ``tests/unit/test_push.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib import push
from chalicelib.records import JobRecord
from chalicelib.store import item_keys


@dataclass
class InMemoryPorts:
    """Jobs, connections and subscriptions in dicts; every post recorded (or refused)."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)  # connection id -> user id
    subscriptions: dict[str, list[push.Subscriber]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    posted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def get_job(self, exec_id: str) -> JobRecord | None:
        return self.jobs.get(exec_id)

    def connection_user(self, connection_id: str) -> str | None:
        return self.connections.get(connection_id)

    def user_connections(self, user_id: str) -> list[str]:
        return [c for c, u in self.connections.items() if u == user_id]

    def job_subscribers(self, exec_id: str) -> list[push.Subscriber]:
        return list(self.subscriptions.get(exec_id, []))

    def queued_jobs(self, session_id: str, limit: int) -> list[JobRecord]:
        queued = [j for j in self.jobs.values() if j.get("session_id") == session_id and j["status"] == "Scheduled"]
        return sorted(queued, key=lambda j: int(j["task_id"]))[:limit]

    def post(self, connection_id: str, data: bytes) -> bool:
        if connection_id in self.broken:
            raise ConnectionError("management API down")
        if connection_id in self.gone:
            return False
        self.posted.append((connection_id, json.loads(data)))
        return True


def _job(exec_id: str, task_id: int, owner: str = "ann", status: str = "Scheduled", **more: Any) -> JobRecord:
    job: dict[str, Any] = {"exec_id": exec_id, "task_id": task_id, "owner": owner, "status": status, **more}
    return job  # type: ignore[return-value]


def _change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> push.Change:
    exec_id = str((new or old or {})["exec_id"])
    return push.Change("MODIFY" if old else "INSERT", item_keys.job_key(exec_id), new, old)


def test_a_status_change_reaches_the_owners_sockets_and_never_another_users_subscription() -> None:
    ports = InMemoryPorts(connections={"c-ann": "ann", "c-ann2": "ann", "c-ben": "ben"})
    ports.subscriptions["e1"] = [push.Subscriber("c-ben", "ben", "t-ben"), push.Subscriber("c-ann2", "ann", "t1")]
    old, new = _job("e1", 1), _job("e1", 1, status="Running")
    report = push.PushBatch(ports).deliver(_change(dict(old), dict(new)))
    assert report.sent == 2 and report.failed == 0
    assert {c for c, _ in ports.posted} == {"c-ann", "c-ann2"}
    tags = {c: frame["websocketTag"] for c, frame in ports.posted}
    assert tags == {"c-ann": None, "c-ann2": "t1"}  # a subscription echoes its own tag
    assert all(frame["data"]["status"] == "Running" for _, frame in ports.posted)


def test_a_submitter_socket_of_another_user_gets_nothing() -> None:
    ports = InMemoryPorts(connections={"c-ben": "ben", "c-ann": "ann"})
    old = _job("e1", 1, submitter_connection="c-ben")
    new = {**old, "status": "Running"}
    assert push.PushBatch(ports).deliver(_change(dict(old), dict(new))).sent == 0
    assert ports.posted == []


def test_a_gone_connection_is_counted_once_and_skipped_for_the_rest_of_the_batch() -> None:
    ports = InMemoryPorts(connections={"c1": "ann", "c2": "ann"}, gone={"c1"})
    batch = push.PushBatch(ports)
    first = batch.deliver(_change(dict(_job("e1", 1)), dict(_job("e1", 1, status="Running"))))
    second = batch.deliver(_change(dict(_job("e1", 1, status="Running")), dict(_job("e1", 1, status="Succeed"))))
    assert (first.sent, first.gone) == (1, 1) and (second.sent, second.gone) == (1, 0)
    assert [c for c, _ in ports.posted] == ["c2", "c2"]


def test_nothing_delivered_to_anyone_raises_so_the_record_is_retried() -> None:
    ports = InMemoryPorts(connections={"c1": "ann"}, broken={"c1"})
    with pytest.raises(push.DeliveryFailed, match="management API down"):
        push.PushBatch(ports).deliver(_change(dict(_job("e1", 1)), dict(_job("e1", 1, status="Running"))))


def test_a_job_leaving_its_queue_moves_the_jobs_behind_it_up() -> None:
    queue = item_keys.session_queue_pk("s1")
    ports = InMemoryPorts(connections={"c1": "ann"})
    for exec_id, task_id in (("e1", 1), ("e2", 2), ("e3", 3)):
        ports.jobs[exec_id] = _job(exec_id, task_id, session_id="s1", gsi1pk=queue)
    old = dict(ports.jobs["e1"])
    ports.jobs["e1"] = _job("e1", 1, status="Running", session_id="s1")  # claimed: out of the queue
    push.PushBatch(ports).deliver(_change(old, dict(ports.jobs["e1"])))
    waiting = {f["data"]["execID"]: f["data"]["waitingSize"] for _, f in ports.posted if "waitingSize" in f["data"]}
    assert waiting == {"e2": 0, "e3": 1}


def test_a_log_chunk_pushes_only_its_new_lines() -> None:
    ports = InMemoryPorts(connections={"c1": "ann"}, jobs={"e1": _job("e1", 1, status="Running")})
    keys = item_keys.log_key("e1", 1)
    old = {"first": 1, "lines": [{"l": "INFO", "t": "one"}]}
    new = {"first": 1, "lines": [{"l": "INFO", "t": "one"}, {"l": "WARN", "t": "two"}]}
    push.PushBatch(ports).deliver(push.Change("MODIFY", keys, new, old))
    (connection, frame), *rest = ports.posted
    assert connection == "c1" and rest == []
    assert "two" in json.dumps(frame["data"]) and "one" not in json.dumps(frame["data"])
