"""The local stack as a process: acknowledged writes survive ``kill -9``, taskIDs are never reused,
unknown methods answer 405 in JSON, and Ctrl-C stops the drivers before the embedded AWS (issue 13)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import StackProcess

BASE = "/api/rest_j/v1"
ENV = {"SPARKGATE_SPARK_MASTER": "local[1]", "SPARKGATE_SCHEDULE_SECONDS": "2"}


def _pids_of(state_dir: Path) -> list[int]:
    """Processes (drivers, kernels) started for ``state_dir``'s stack, found by their environment."""
    marker = f"SPARKGATE_STATE_DIR={state_dir.resolve()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _kill_leftovers(state_dir: Path) -> None:
    for pid in _pids_of(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _execute(stack: StackProcess, token: str, code: str = "select 1") -> dict[str, Any]:
    body = {"executionCode": code, "runType": "sql", "executeApplicationName": "spark", "params": {}}
    status, envelope, _ = stack.call("POST", BASE + "/entrance/execute", body, token)
    assert status == 200 and envelope["status"] == 0, envelope
    data: dict[str, Any] = envelope["data"]
    return data


def _raw(stack: StackProcess, method: str, path: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(stack.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def test_acknowledged_writes_survive_kill_9_and_task_ids_are_never_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = StackProcess(state, ENV)
    first.start(timeout=120)
    try:
        token = first.new_user("durable")
        works: dict[str, str] = {}
        lock = threading.Lock()

        def create(worker: int) -> None:
            for n in range(15):
                name = f"w{worker}-{n}"
                body = {"name": name, "description": "d", "type": "BATCH", "category": "SPARK_SQL"}
                status, answer, _ = first.call("POST", "/api/v1/works", body, token)
                assert status == 201, answer
                with lock:
                    works[answer["data"]["work_id"]] = name

        threads = [threading.Thread(target=create, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        jobs = [_execute(first, token) for _ in range(3)]
        for thread in threads:
            thread.join()
        assert len(works) == 60
        # the last acknowledged write is a few milliseconds old: no snapshot can hold it
        status, last, _ = first.call(
            "POST",
            "/api/v1/works",
            {"name": "last", "description": "d", "type": "BATCH", "category": "SPARK_SQL"},
            token,
        )
        assert status == 201, last
        works[last["data"]["work_id"]] = "last"
    finally:
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(30)
        _kill_leftovers(state)

    second = StackProcess(state, ENV)
    second.start(timeout=120)
    try:
        token = second.login("durable", "durable-password")
        for work_id, name in works.items():
            status, answer, _ = second.call("GET", f"/api/v1/works/{work_id}", None, token)
            assert status == 200 and answer["data"]["name"] == name, (work_id, answer)
        for job in jobs:
            status, envelope, _ = second.call("GET", f"{BASE}/entrance/{job['execID']}/status", None, token)
            assert status == 200 and envelope["status"] == 0, envelope
            status, envelope, _ = second.call("GET", f"{BASE}/jobhistory/{job['taskID']}/get", None, token)
            assert status == 200 and envelope["data"]["task"]["execId"] == job["execID"], envelope
        after = _execute(second, token)
        assert after["taskID"] > max(job["taskID"] for job in jobs), (after, jobs)
        # a work name taken before the crash is still taken
        status, answer, _ = second.call(
            "POST",
            "/api/v1/works",
            {"name": "last", "description": "d", "type": "BATCH", "category": "SPARK_SQL"},
            token,
        )
        assert status == 409, answer
    finally:
        second.stop()
        _kill_leftovers(state)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    process = StackProcess(tmp_path_factory.mktemp("durability") / "state", ENV)
    process.start(timeout=120)
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.stop()
    _kill_leftovers(process.state_dir)


@pytest.mark.parametrize(
    ("path", "envelope"),
    [
        ("/api/v1/works", {"code", "msg"}),
        (BASE + "/entrance/execute", {"method", "status", "message", "data"}),
        ("/query", {"status", "code", "message"}),
    ],
)
@pytest.mark.parametrize("method", ["TRACE", "BREW", "CONNECT"])
def test_unknown_methods_answer_405_in_the_surface_envelope(
    stack: StackProcess, method: str, path: str, envelope: set[str]
) -> None:
    status, content_type, raw = _raw(stack, method, path)
    assert status == 405 and content_type == "application/json", (status, raw)
    body = json.loads(raw)
    assert set(body) == envelope, body


def test_ctrl_c_stops_the_drivers_before_the_embedded_aws(stack: StackProcess) -> None:
    token = stack.new_user("stopper")
    job = _execute(stack, token)
    deadline = time.monotonic() + 180
    while True:  # a warm driver is running and polling the table
        _, envelope, _ = stack.call("GET", f"{BASE}/entrance/{job['execID']}/status", None, token)
        if envelope["data"]["status"] in ("Succeed", "Failed"):
            break
        assert time.monotonic() < deadline, envelope
        time.sleep(0.5)
    assert envelope["data"]["status"] == "Succeed", envelope
    assert _pids_of(stack.state_dir), "no driver is running"
    assert stack.stop() == 0
    assert _pids_of(stack.state_dir) == [], "a driver outlived the stack"
    logs = list((stack.state_dir / "drivers").glob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert "EndpointConnectionError" not in text and "Could not connect to the endpoint" not in text, log
    assert any("stopped 1 engine driver" in line for line in stack.output), stack.output[-20:]
