"""The Linkis-compatible entrance end to end: the local stack as a process, real Spark, real sockets.

One user logs in with the cookie (as Linkis clients do), submits SQL and Python, polls status, reads
the log with the ``fromLine`` cursor and fetches the result set through jobhistory -> getDirFileTrees
-> openFile; kills a long job; another user is refused; the warm driver is SIGKILLed mid-job and the
schedule tick fails that job while the next one gets a new driver.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.stack import StackProcess

BASE = "/api/rest_j/v1"
FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """The local stack with a 2-second schedule tick (so a dead driver is noticed quickly)."""
    process = StackProcess(
        tmp_path_factory.mktemp("entrance-e2e"),
        {"SPARKGATE_SCHEDULE_SECONDS": "2", "SPARKGATE_SPARK_MASTER": "local[1]", "SPARKGATE_HEARTBEAT_SECONDS": "1"},
    )
    process.start(timeout=120)
    yield process
    process.stop()


class Linkis:
    """A Linkis client: cookie session from ``/user/login``, answers unwrapped from the envelope."""

    def __init__(self, stack: StackProcess, username: str, password: str) -> None:
        self.stack = stack
        body = json.dumps({"userName": username, "password": password}).encode()
        request = urllib.request.Request(
            stack.url + BASE + "/user/login", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            envelope = json.loads(resp.read())
            cookie = resp.headers["Set-Cookie"]
        assert envelope["status"] == 0 and envelope["data"]["userName"] == username, envelope
        assert "linkis_user_session_ticket_id_v1=" in cookie and "HttpOnly" in cookie
        self.cookie = cookie.split(";", 1)[0]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """One request with the session cookie; the HTTP status and the envelope."""
        status, envelope, _ = self.stack.call(method, BASE + path, body, headers={"Cookie": self.cookie})
        assert set(envelope) >= {"method", "status", "message", "data"}, envelope
        return status, envelope

    def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, envelope = self.call(method, path, body)
        assert status == 200 and envelope["status"] == 0, envelope
        data: dict[str, Any] = envelope["data"]
        return data

    def execute(self, code: str, run_type: str = "sql") -> dict[str, Any]:
        body = {"executionCode": code, "runType": run_type, "executeApplicationName": "spark", "params": {}}
        return self.ok("POST", "/entrance/execute", body)

    def wait(self, exec_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status: str = self.ok("GET", f"/entrance/{exec_id}/status")["status"]
            if status in statuses:
                return status
            assert time.monotonic() < deadline, f"{exec_id} stuck in {status}"
            time.sleep(0.2)

    def full_log(self, exec_id: str, size: int = 2) -> list[str]:
        """Every log line, read in small pages with Linkis's 1-based ``fromLine`` cursor, starting at 0 as
        some clients do (a value below 1 is the first line)."""
        lines: list[str] = []
        cursor = 0
        while True:
            got = self.ok("GET", f"/entrance/{exec_id}/log?fromLine={cursor}&size={size}")
            page = [line for line in got["log"][3].split("\n") if line]
            if not page:
                return lines
            lines += page
            assert got["fromLine"] == max(cursor, 1) + len(page)
            cursor = got["fromLine"]


@pytest.fixture(scope="module")
def alice(stack: StackProcess) -> Linkis:
    admin = stack.login()
    status, body, _ = stack.call("POST", "/api/v1/users", {"username": "alice", "password": "alice-password"}, admin)
    assert status == 201, body
    return Linkis(stack, "alice", "alice-password")


def _driver_pid(stack: StackProcess, prefix: str) -> int:
    """The pid of the live session driver whose id starts with ``prefix`` (read through the stack's AWS)."""
    from chalicelib.store import sessions as session_store

    with stack.aws():
        live = [s for s in session_store.live_sessions() if str(s["session_id"]).startswith(prefix)]
        assert live and live[0].get("runner_handle"), "no live driver"
        return int(live[0]["runner_handle"]["pid"])


def test_submit_poll_log_and_fetch_the_result_set(alice: Linkis) -> None:
    view = alice.execute(
        "df = spark.createDataFrame([(i, f'v{i}') for i in range(25)], 'n int, name string')\n"
        "df.createOrReplaceTempView('t')\n"
        "print('rows', df.count())",
        "python",
    )
    assert isinstance(view["taskID"], int) and len(view["execID"]) == 32
    assert alice.wait(view["execID"]) == "Succeed"
    assert any(line.endswith("rows 25") for line in alice.full_log(view["execID"]))

    # /submit (Linkis 1.x) runs in the same warm session: the view made above is there
    submitted = alice.ok(
        "POST",
        "/entrance/submit",
        {
            "executionContent": {"code": "select n, name from t where n >= 20 order by n", "runType": "sql"},
            "params": {},
            "source": {},
            "labels": {"engineType": "spark-3", "userCreator": "alice-e2e"},
        },
    )
    exec_id, task_id = submitted["execID"], submitted["taskID"]
    assert alice.wait(exec_id) == "Succeed"
    progress = alice.ok("GET", f"/entrance/{exec_id}/progress")
    assert progress["progress"] == 1.0 and progress["progressInfo"]
    assert len(alice.full_log(exec_id)) >= 2  # started + succeeded, every line once

    task = alice.ok("GET", f"/jobhistory/{task_id}/get")["task"]
    assert (task["taskID"], task["execId"], task["status"]) == (task_id, exec_id, "Succeed")
    assert task["costTime"] is not None and task["executionCode"].startswith("select n")
    tree = alice.ok("GET", f"/filesystem/getDirFileTrees?path={quote(task['resultLocation'])}")["dirFileTrees"]
    assert [c["name"] for c in tree["children"]] == ["_0.json"]
    opened = alice.ok("GET", f"/filesystem/openFile?path={quote(tree['children'][0]['path'])}&page=1&pageSize=3")
    assert [m["columnName"] for m in opened["metadata"]] == ["n", "name"]
    assert opened["fileContent"] == [["20", "v20"], ["21", "v21"], ["22", "v22"]]  # Linkis sends text
    assert [m["dataType"] for m in opened["metadata"]][1] == "string"
    assert (opened["totalLine"], opened["totalPage"], opened["type"]) == (5, 2, "2")


def test_errors_and_other_users(stack: StackProcess, alice: Linkis) -> None:
    failing = alice.execute("select * from no_such_table")
    assert alice.wait(failing["execID"]) == "Failed"
    task = alice.ok("GET", f"/jobhistory/{failing['taskID']}/get")["task"]
    assert "no_such_table" in task["errDesc"] and task["errCode"]
    assert any("no_such_table" in line for line in alice.full_log(failing["execID"]))

    status, envelope = alice.call("GET", "/entrance/ffffffffffffffffffffffffffffffff/status")
    assert (status, envelope["status"]) == (400, 1) and "no job" in envelope["message"]
    status, envelope = alice.call("POST", "/entrance/execute", {"executionCode": "x", "runType": "scala"})
    assert (status, envelope["status"]) == (400, 1)

    admin = stack.login()
    stack.call("POST", "/api/v1/users", {"username": "mallory", "password": "mallory-password"}, admin)
    mallory = Linkis(stack, "mallory", "mallory-password")
    for path in (f"/entrance/{failing['execID']}/status", f"/entrance/{failing['execID']}/log", "/jobhistory/1/get"):
        status, envelope = mallory.call("GET", path)
        assert (status, envelope["status"]) == (400, 1), (path, envelope)  # as an unknown id answers
    status, envelope = mallory.call("GET", f"/entrance/{failing['execID']}/kill")
    assert (status, envelope["status"]) == (400, 1)
    status, _, _ = stack.call("GET", f"{BASE}/entrance/{failing['execID']}/status")  # no cookie, no token
    assert status == 401


def test_kill_a_long_job_then_the_session_serves_the_next(alice: Linkis) -> None:
    long = alice.execute("select count(*) from range(0, 40000000000)")
    assert alice.wait(long["execID"], ("Running", *FINAL)) == "Running"
    time.sleep(1)
    killed_at = time.monotonic()
    alice.ok("GET", f"/entrance/{long['execID']}/kill")
    assert alice.wait(long["execID"], timeout=30) == "Cancelled"
    assert time.monotonic() - killed_at < 15
    after = alice.execute("select 41 + 1 as answer")
    assert alice.wait(after["execID"]) == "Succeed"


def test_a_sigkilled_driver_fails_its_job_and_the_next_job_gets_a_new_driver(
    stack: StackProcess, alice: Linkis
) -> None:
    victim = alice.execute("select count(*) from range(0, 40000000000)")
    assert alice.wait(victim["execID"], ("Running", *FINAL)) == "Running"
    os.kill(_driver_pid(stack, "entrance-"), signal.SIGKILL)
    assert alice.wait(victim["execID"], timeout=60) == "Failed"
    task = alice.ok("GET", f"/jobhistory/{victim['taskID']}/get")["task"]
    assert "driver" in task["errDesc"]
    survivor = alice.execute("select 'alive' as state")
    assert alice.wait(survivor["execID"], timeout=240) == "Succeed"
    location = alice.ok("GET", f"/jobhistory/{survivor['taskID']}/get")["task"]["resultLocation"]
    tree = alice.ok("GET", f"/filesystem/getDirFileTrees?path={quote(location)}")
    opened = alice.ok("GET", f"/filesystem/openFile?path={quote(tree['dirFileTrees']['children'][0]['path'])}")
    assert opened["fileContent"] == [["alive"]]
