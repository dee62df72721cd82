"""The local WebSocket gateway closes sockets as API Gateway does: idle timeout and connection lifetime."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chalicelib.local.ws_gateway import WsGateway


class Recorder:
    """Stand-in Lambda handlers: accept every connect, record disconnects, answer nothing to messages."""

    def __init__(self) -> None:
        self.disconnects: list[dict[str, Any]] = []

    def handlers(self) -> dict[str, Any]:
        return {
            "$connect": lambda event, context: {"statusCode": 200},
            "$default": lambda event, context: {"statusCode": 200},
            "$disconnect": lambda event, context: self.disconnects.append(event) or {"statusCode": 200},
        }


@contextlib.contextmanager
def _gateway(recorder: Recorder, idle: float, lifetime: float) -> Iterator[WsGateway]:
    gateway = WsGateway(recorder.handlers(), port=0, idle_seconds=idle, max_seconds=lifetime)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _closed_within(ws: Any, seconds: float, chatter: bool) -> tuple[float, int | None, str]:
    """Wait (sending a frame every 0.2 s when ``chatter``) until the server closes; when, code, reason."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if chatter:
                ws.send('{"method": "ping"}')
            ws.recv(timeout=0.2)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            frame = closed.rcvd
            return time.monotonic() - started, frame.code if frame else None, frame.reason if frame else ""
    raise AssertionError(f"the socket is still open after {seconds} s")


def test_an_idle_socket_is_closed_and_disconnected(recorder: Recorder) -> None:
    with _gateway(recorder, idle=0.6, lifetime=60) as gateway:
        with connect(gateway.ws_url) as ws:
            took, code, reason = _closed_within(ws, 15, chatter=False)
        assert code == 1001 and "idle" in reason and took > 0.5
        deadline = time.monotonic() + 3
        while not recorder.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recorder.disconnects[0]["disconnectStatusCode"] == 1001
        assert gateway.connection_ids == []


def test_a_busy_socket_stays_open_until_its_lifetime_ends(recorder: Recorder) -> None:
    with _gateway(recorder, idle=1.5, lifetime=3.0) as gateway:
        with connect(gateway.ws_url) as ws:
            took, code, reason = _closed_within(ws, 10, chatter=True)
        assert code == 1001 and "duration" in reason
        assert took > 2.5  # messages kept it open past the idle limit; the lifetime limit closed it
