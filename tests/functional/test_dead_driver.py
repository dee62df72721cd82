"""A local driver killed under a fresh heartbeat is noticed at once, not 30 s later (issue 13, item 6)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from chalicelib.runners.local import LocalRunner


@pytest.fixture
def runner(aws: None) -> Iterator[LocalRunner]:
    from chalicelib import sessions
    from chalicelib.config import settings

    local = LocalRunner(settings(), command=[sys.executable, "-c", "import time; time.sleep(120)"])
    sessions.use_runner(local)
    yield local
    sessions.use_runner(None)


def test_a_killed_driver_is_replaced_on_the_next_submit(runner: LocalRunner) -> None:
    from chalicelib import sessions
    from chalicelib.store import sessions as session_store

    first = sessions.ensure_session_driver("s-killed", "u-1", None)
    handle = first["runner_handle"]
    session_store.update_session_fields("s-killed", 1, {"state": "running", "heartbeat_at": time.time()})
    assert sessions.ensure_session_driver("s-killed", "u-1", None)["generation"] == 1  # alive: reused
    os.killpg(int(handle["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while runner.probe(handle) == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    second = sessions.ensure_session_driver("s-killed", "u-1", None)
    assert int(second["generation"]) == 2, second
    assert time.monotonic() - started < 5
    dead = session_store.get_session("s-killed")
    assert dead is not None and int(dead["generation"]) == 2
    runner.cancel(second["runner_handle"])
