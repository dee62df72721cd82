"""What keeps an idle driver cheap stays correct: slower heartbeats the monitor knows about, one request
per beat, and the doorbell a submit or a stop rings (bench/idle_cost.py measures the cost itself)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.test_sessions import OWNER, FakeRunner, driver_running


class WakingRunner(FakeRunner):
    def __init__(self) -> None:
        super().__init__()
        self.woken: list[dict[str, Any]] = []

    def wake(self, handle: dict[str, Any]) -> None:
        self.woken.append(handle)


@pytest.fixture
def runner(aws: None) -> Iterator[WakingRunner]:
    from chalicelib import sessions

    fake = WakingRunner()
    sessions.use_runner(fake)
    yield fake
    sessions.use_runner(None)


def test_an_idle_heartbeat_writes_its_interval_and_the_monitor_allows_three_of_them(runner: WakingRunner) -> None:
    from chalicelib import sessions
    from chalicelib.engine.supervisor import Heartbeat
    from chalicelib.store import sessions as session_store

    sessions.ensure_session_driver("s-idle", OWNER.user_id, None)
    driver_running("s-idle")
    beat = Heartbeat("s-idle", 1, every=3.0, idle_every=30.0)
    beat.idle.set()
    beat.beat()
    session = session_store.get_session("s-idle")
    assert session is not None and session["heartbeat_every"] == 30.0
    assert sessions.stale_after(session) == 90.0
    now = float(session["heartbeat_at"])
    assert sessions._death_reason(session, now + 60) is None  # 60 s without a beat: fine for an idle driver
    assert "no heartbeat" in str(sessions._death_reason(session, now + 91))
    beat.idle.clear()
    beat.beat()
    busy = session_store.get_session("s-idle")
    assert busy is not None and busy["heartbeat_every"] == 3.0 and sessions.stale_after(busy) == 30.0
    assert "no heartbeat" in str(sessions._death_reason(busy, float(busy["heartbeat_at"]) + 31))


def test_one_beat_learns_a_stop_request_and_a_superseded_generation(runner: WakingRunner) -> None:
    from chalicelib import sessions
    from chalicelib.engine.supervisor import Heartbeat
    from chalicelib.store import sessions as session_store

    sessions.ensure_session_driver("s-stop", OWNER.user_id, None)
    driver_running("s-stop")
    beat = Heartbeat("s-stop", 1, every=3.0)
    beat.beat()
    assert not beat.stop_requested.is_set() and not beat.superseded.is_set()
    runner.state = "running"
    sessions.stop_session("s-stop")
    assert runner.woken, "a stop rings the driver's doorbell"
    beat.beat()
    assert beat.stop_requested.is_set()
    stale = Heartbeat("s-stop", 0, every=3.0)
    stale.beat()
    assert stale.superseded.is_set()
    assert session_store.get_session("s-stop") is not None


def test_a_submit_rings_a_running_driver_but_not_one_still_starting(runner: WakingRunner) -> None:
    from chalicelib import sessions

    starting = sessions.ensure_session_driver("s-ring", OWNER.user_id, None)
    sessions.wake(starting)
    assert runner.woken == []  # its signal handler may not be installed yet
    running = driver_running("s-ring", beat=time.time())
    sessions.wake(running)
    assert runner.woken == [running["runner_handle"]]
