"""The warm pool's rules on moto: who may claim which entry, refill within the caps, races.

The drivers themselves are faked here (a runner that records what it would start); the real pool
drivers, kernels and uids are exercised against the local stack in ``tests/e2e/test_pool.py``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.runners.base import Probe, Runner

UID_BASE = 200_000


class PoolRunner(Runner):
    """Starts nothing: records pool starts and wakes; every handle probes ``running``."""

    name = "fakepool"

    def __init__(self) -> None:
        self.pools: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.woken: list[dict[str, Any]] = []
        self.gone: set[str] = set()

    def start_session(self, session: dict[str, Any]) -> dict[str, Any]:
        self.sessions.append(session)
        return {"runner": self.name, "session": session["session_id"]}

    def start_batch(self, job: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("no batch here")

    def start_pool(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.pools.append(entry)
        return {"runner": self.name, "pool": entry["pool_id"]}

    def wake(self, handle: dict[str, Any]) -> None:
        self.woken.append(handle)

    def probe(self, handle: dict[str, Any]) -> Probe:
        return "finished" if handle.get("pool") in self.gone else "running"

    def cancel(self, handle: dict[str, Any]) -> None:
        self.gone.add(str(handle.get("pool")))


@pytest.fixture
def runner(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[PoolRunner]:
    from chalicelib import sessions

    monkeypatch.setenv("SPARKGATE_POOL_MAX", "3")
    monkeypatch.setenv("SPARKGATE_POOL_SIZE", "1")
    monkeypatch.setenv("SPARKGATE_POOL_PER_USER", "1")
    fake = PoolRunner()
    sessions.use_runner(fake)
    yield fake
    sessions.use_runner(None)


def _ready(pool_id: str, uid: int | None = None) -> None:
    """What the pool driver does once its kernel is up."""
    from chalicelib.store import pool as pool_store

    assert pool_store.move(pool_id, ("starting",), {"state": "ready", "uid": uid}) is not None


def _session(session_id: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    from chalicelib.engine.config import session_config

    return {"session_id": session_id, "generation": 1, "config": session_config(config)}


def _fresh(runner: PoolRunner) -> str:
    from chalicelib import pool
    from chalicelib.store import users as user_store

    started = pool.refill()
    assert len(started) == 1 and started[0].startswith("fresh-")
    _ready(started[0], user_store.take_kernel_uid(UID_BASE))
    return started[0]


def test_a_fresh_driver_goes_to_a_user_without_a_uid_and_makes_its_uid_theirs(runner: PoolRunner) -> None:
    from chalicelib import pool
    from chalicelib.store import pool as pool_store
    from chalicelib.store import users as user_store

    pool_id = _fresh(runner)
    uid = pool_store.get(pool_id)["uid"]  # type: ignore[index]
    handle = pool.claim("ann", _session("s-ann"))
    assert handle is not None and handle["pool"] == pool_id and handle["pool_id"] == pool_id
    assert runner.woken == [{"runner": "fakepool", "pool": pool_id}]
    claimed = pool_store.get(pool_id)
    assert claimed is not None
    assert (claimed["state"], claimed["claimed_by"], claimed["session_id"]) == ("claimed", "ann", "s-ann")
    assert user_store.known_kernel_uid("ann") == uid
    assert user_store.kernel_uid("ann", UID_BASE) == uid  # and it stays hers
    assert pool.claim("ben", _session("s-ben")) is None  # claimed once, never again
    assert pool_id not in {e["pool_id"] for e in pool_store.listed()}


def test_a_user_with_a_uid_never_takes_a_fresh_kernel(runner: PoolRunner) -> None:
    from chalicelib import pool
    from chalicelib.store import pool as pool_store
    from chalicelib.store import users as user_store

    own = user_store.kernel_uid("ann", UID_BASE)
    pool_id = _fresh(runner)
    assert pool.claim("ann", _session("s-ann")) is None
    assert pool_store.get(pool_id)["state"] == "ready"  # type: ignore[index]
    assert user_store.known_kernel_uid("ann") == own


def test_a_spare_serves_its_owner_only(runner: PoolRunner) -> None:
    from chalicelib import pool
    from chalicelib.store import pool as pool_store
    from chalicelib.store import users as user_store

    ann_uid = user_store.kernel_uid("ann", UID_BASE)
    started = pool.refill(spare_for="ann")
    spares = [p for p in started if p.startswith("spare-")]
    assert len(spares) == 1 and len(started) == 2  # ann's spare, and the fresh one
    _ready(spares[0], ann_uid)
    assert pool.claim("ben", _session("s-ben")) is None  # ben: not ann's spare (the fresh one is not ready)
    handle = pool.claim("ann", _session("s-ann"))
    assert handle is not None and handle["pool_id"] == spares[0]
    assert pool_store.get(spares[0])["claimed_by"] == "ann"  # type: ignore[index]


def test_custom_spark_settings_are_not_served_from_the_pool(runner: PoolRunner) -> None:
    from chalicelib import pool

    _fresh(runner)
    assert pool.claim("ann", _session("s1", {"configs": {"spark.executor.memory": "2g"}})) is None
    assert pool.claim("ann", _session("s2", {"master": "local[2]"})) is None
    assert pool.claim("ann", _session("s3", {"app_name": "sparkgate-ann", "idle_timeout_seconds": 60})) is not None


def test_refill_respects_the_caps_and_replaces_dead_entries(
    runner: PoolRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import pool
    from chalicelib.store import pool as pool_store

    assert len(pool.refill()) == 1
    assert pool.refill() == []  # the fresh one is starting: nothing more
    assert len(pool.refill(spare_for="ann")) == 1
    assert len(pool.refill(spare_for="ben")) == 1
    assert pool.refill(spare_for="cid") == []  # pool_max 3 reached
    dead = runner.pools[0]["pool_id"]
    runner.gone.add(dead)
    again = pool.refill()
    assert len(again) == 1 and again[0].startswith("fresh-")
    assert pool_store.get(dead)["state"] == "retired"  # type: ignore[index]
    monkeypatch.setenv("SPARKGATE_POOL_MAX", "0")
    assert pool.refill(spare_for="ann") == []


def test_a_full_pool_retires_the_oldest_idle_spare_of_another_user(runner: PoolRunner) -> None:
    from chalicelib import pool
    from chalicelib.store import pool as pool_store

    fresh = _fresh(runner)
    ann, ben = pool.refill(spare_for="ann"), pool.refill(spare_for="ben")
    _ready(ann[0])
    _ready(ben[0])
    assert pool.refill(spare_for="ben") == []  # full (pool_max 3) with nothing missing: nobody is retired
    assert pool_store.move(fresh, ("ready",), {"state": "claimed"}) is not None  # cid took the fresh one
    started = pool.refill(spare_for="cid")  # cid's spare and a fresh one: ann's (the oldest idle) makes room
    assert sorted(name.split("-")[0] for name in started) == ["fresh", "spare"]
    assert pool_store.get(ann[0])["state"] == "retired"  # type: ignore[index]
    assert pool_store.get(ben[0])["state"] == "ready"  # type: ignore[index]
    assert ann[0] in runner.gone  # its driver was told to stop


def test_two_claims_race_for_one_entry_and_one_wins(runner: PoolRunner) -> None:
    from chalicelib import pool
    from chalicelib.store import users as user_store

    _fresh(runner)
    won: list[str] = []
    barrier = threading.Barrier(4)

    def claim(user: str) -> None:
        barrier.wait()
        if pool.claim(user, _session(f"s-{user}")) is not None:
            won.append(user)

    threads = [threading.Thread(target=claim, args=(f"u{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert [u for u in ("u0", "u1", "u2", "u3") if user_store.known_kernel_uid(u) is not None] == won


def test_a_claimed_session_records_the_warm_start_and_tops_up_the_owners_spare_after_its_first_job(
    runner: PoolRunner,
) -> None:
    """The refill waits for the claimed driver's first Job: the stream sees ``first_job_at`` written."""
    from chalicelib import sessions
    from chalicelib.api.stream import handle_stream_event
    from chalicelib.store import item_keys
    from chalicelib.store import sessions as session_store

    pool_id = _fresh(runner)
    driver = sessions.ensure_session_driver("s-ann", "ann", None)
    assert driver["warm_start"] is True and driver["runner_handle"]["pool_id"] == pool_id
    before = session_store.get_session("s-ann")
    assert before is not None and before["warm_start"] is True
    assert runner.sessions == []  # no cold start
    assert len(runner.pools) == 1  # nothing starts while the user's first Job runs

    keys = {k: {"S": v} for k, v in item_keys.session_key("s-ann").items()}
    image = {"owner": {"S": "ann"}, "state": {"S": "running"}}
    record = {"eventName": "MODIFY", "dynamodb": {"Keys": keys, "OldImage": image, "NewImage": image}}
    handle_stream_event({"Records": [record]})
    assert len(runner.pools) == 1  # another write to the session: still nothing
    done = {**image, "first_job_at": {"N": "1767000000.5"}}
    handle_stream_event({"Records": [{**record, "dynamodb": {**record["dynamodb"], "NewImage": done}}]})
    assert [p["kind"] for p in runner.pools[1:]] == ["spare", "fresh"]
    assert runner.pools[1]["owner"] == "ann"
    handle_stream_event({"Records": [{**record, "dynamodb": {"Keys": keys, "OldImage": done, "NewImage": done}}]})
    assert len(runner.pools) == 3  # once per driver


def test_a_new_uid_never_owns_an_earlier_tables_files(
    runner: PoolRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user root outlives its table (the state dir was reset): the counter starts again at the base,
    so the uids it hands out may own areas of users an earlier table knew. Those are skipped, for a
    user's own uid and a fresh pool kernel's alike, and an earlier entry's link does not block a new one."""
    from chalicelib.engine import pool_driver, sandbox
    from chalicelib.store import users as user_store

    users = tmp_path / "users"
    users.mkdir()
    monkeypatch.setenv("SPARKGATE_USER_ROOT", str(users))
    old = users / ("0" * 32)  # an earlier table's user, whose kernels ran as UID_BASE + 1 and + 2
    old.mkdir()
    os.chown(old, UID_BASE + 1, UID_BASE + 1)
    (users / "pool-earlier").symlink_to(old)
    os.lchown(users / "pool-earlier", UID_BASE + 2, UID_BASE + 2)

    assert sandbox.uid_has_files(UID_BASE + 1) and not sandbox.uid_has_files(UID_BASE + 3)
    assert user_store.kernel_uid("ann", UID_BASE, sandbox.uid_has_files) == UID_BASE + 3
    assert user_store.take_kernel_uid(UID_BASE, sandbox.uid_has_files) == UID_BASE + 4
    assert user_store.kernel_uid("ann", UID_BASE, sandbox.uid_has_files) == UID_BASE + 3  # and it stays hers
    assert pool_driver.placeholder_owner("fresh-a") != pool_driver.placeholder_owner("fresh-b")
