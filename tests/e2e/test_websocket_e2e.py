"""End to end over real sockets: the local stack (subprocess, free ports, temp state) + a ``websockets`` client.

Runs real Spark through the engine (a warm entrance session per user), so it takes a minute or two.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.e2e.stack import StackProcess

FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")
JOB_SECONDS = 240.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    process = StackProcess(tmp_path_factory.mktemp("ws-e2e"))
    process.start(timeout=90)
    yield process
    process.stop()


def execute_frame(code: str, tag: str, run_type: str = "sql") -> str:
    data = {"executeApplicationName": "spark", "executionCode": code, "runType": run_type, "params": {}}
    return json.dumps({"method": "/api/rest_j/v1/entrance/execute", "data": data, "websocketTag": tag})


async def until_final(sock: ClientConnection, received: list[dict[str, Any]], exec_id: str | None = None) -> None:
    """Read frames into ``received`` until the Job's final status push."""
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        frame = json.loads(await asyncio.wait_for(sock.recv(), max(1.0, deadline - time.monotonic())))
        received.append(frame)
        if exec_id is None and frame["method"].endswith("/execute"):
            exec_id = frame["data"]["execID"]
        final = frame["method"].endswith("/status") and frame["data"]["status"] in FINAL
        if final and (exec_id is None or frame["data"]["execID"] == exec_id):
            return


def pushes(frames: list[dict[str, Any]], exec_id: str, kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["method"] == f"/api/rest_j/v1/entrance/{exec_id}/{kind}"]


def log_lines(frames: list[dict[str, Any]], start: int = 1) -> tuple[list[str], int]:
    """Lines of consecutive log pushes, asserting each continues exactly where the previous ended."""
    cursor, lines = start, []
    for frame in frames:
        text = frame["data"]["log"][3]
        part = text.split("\n") if text else []
        assert frame["data"]["fromLine"] == cursor + len(part), (cursor, frame["data"])
        cursor = frame["data"]["fromLine"]
        lines.extend(part)
    return lines, cursor


def http_log(stack: StackProcess, token: str, exec_id: str, from_line: int = 0) -> tuple[list[str], int]:
    status, body, _ = stack.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/log?fromLine={from_line}", token=token)
    assert status == 200, body
    text = body["data"]["log"][3]
    return (text.split("\n") if text else []), body["data"]["fromLine"]


def test_connect_is_refused_without_a_valid_token(stack: StackProcess) -> None:
    async def run() -> None:
        for url in (stack.ws_url, f"{stack.ws_url}/?token=forged"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 401

    asyncio.run(run())


def test_a_browser_passes_its_token_as_a_subprotocol_and_gets_sparkgate_echoed(stack: StackProcess) -> None:
    """Browsers cannot set headers on a WebSocket: the token rides in ``Sec-WebSocket-Protocol`` and the
    stack must echo the ``sparkgate`` subprotocol (a browser drops a socket whose offer is not answered)."""
    from websockets.typing import Subprotocol

    token = stack.new_user("browser")

    async def run() -> tuple[str | None, dict[str, Any]]:
        offered = [Subprotocol("sparkgate"), Subprotocol(f"token.{token}")]
        async with connect(stack.ws_url, subprotocols=offered) as sock:
            await sock.send(json.dumps({"method": "/api/rest_j/v1/entrance/nosuch/status", "data": {}}))
            return sock.subprotocol, json.loads(await asyncio.wait_for(sock.recv(), 30))

    selected, answer = asyncio.run(run())
    assert selected == "sparkgate"
    assert answer["status"] != 0 and "nosuch" in json.dumps(answer)  # authenticated: the frame was answered

    async def forged() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(stack.ws_url, subprotocols=[Subprotocol("sparkgate"), Subprotocol("token.forged")]):
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(forged())


def test_execute_over_the_socket_pushes_status_log_progress_to_the_owner_only(stack: StackProcess) -> None:
    alice, bob = stack.new_user("alice"), stack.new_user("bob")

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with connect(f"{stack.ws_url}/?token={alice}") as mine, connect(f"{stack.ws_url}/?token={bob}") as theirs:
            await mine.send(execute_frame("select 1 as one", "run-1"))
            frames: list[dict[str, Any]] = []
            await until_final(mine, frames)
            others: list[dict[str, Any]] = []
            try:
                while True:
                    others.append(json.loads(await asyncio.wait_for(theirs.recv(), 1.5)))
            except TimeoutError:
                pass
            return frames, others

    frames, others = asyncio.run(run())
    (answer,) = [f for f in frames if f["method"] == "/api/rest_j/v1/entrance/execute"]
    assert answer["status"] == 0 and answer["websocketTag"] == "run-1"
    exec_id = answer["data"]["execID"]
    statuses = [f["data"]["status"] for f in pushes(frames, exec_id, "status")]
    assert statuses == ["Scheduled", "Running", "Succeed"]
    lines, cursor = log_lines(pushes(frames, exec_id, "log"))
    assert lines and (lines, cursor) == http_log(stack, alice, exec_id)
    progress = pushes(frames, exec_id, "progress")
    assert progress and progress[-1]["data"]["progress"] == 1.0
    assert others == []  # bob's socket heard nothing of alice's job


def test_disconnect_mid_job_then_finish_the_log_over_http(stack: StackProcess) -> None:
    token = stack.new_user("carol")
    code = "import time\nfor i in range(8):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.5)\nprint('done')"

    async def run() -> tuple[str, list[dict[str, Any]]]:
        frames: list[dict[str, Any]] = []
        async with connect(f"{stack.ws_url}/?token={token}") as sock:
            await sock.send(execute_frame(code, "mid", run_type="python"))
            exec_id = None
            deadline = time.monotonic() + JOB_SECONDS
            while True:  # leave as soon as the job runs and has logged something (or at the answer if late)
                frame = json.loads(await asyncio.wait_for(sock.recv(), max(1.0, deadline - time.monotonic())))
                frames.append(frame)
                if frame["method"].endswith("/execute"):
                    exec_id = frame["data"]["execID"]
                if exec_id and frame["method"].endswith(f"{exec_id}/log"):
                    break
        assert exec_id is not None
        return exec_id, frames

    exec_id, frames = asyncio.run(run())
    seen, cursor = log_lines(pushes(frames, exec_id, "log"))
    deadline = time.time() + JOB_SECONDS
    while True:
        status, body, _ = stack.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/status", token=token)
        assert status == 200, body
        if body["data"]["status"] in FINAL:
            break
        assert time.time() < deadline
        time.sleep(0.5)
    assert body["data"]["status"] == "Succeed"
    rest, end = http_log(stack, token, exec_id, cursor)
    full, full_end = http_log(stack, token, exec_id)
    assert seen + rest == full and end == full_end
    texts = [line.split(" ", 3)[3] for line in full]  # Linkis's lines: yyyy-MM-dd HH:mm:ss.SSS LEVEL text
    assert "done" in texts and all(f"tick {i}" in texts for i in range(8))
    assert texts[-1] == "Congratulations. Your job completed with status Success."  # what linkis-cli waits for
