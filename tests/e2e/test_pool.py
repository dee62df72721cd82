"""The warm driver pool against the real local stack: real pool drivers, kernels, uids and Spark.

A brand-new user's first Job runs on the pre-started fresh driver (whose uid becomes the user's), the
user's next new session on the user's own spare, and another new user never gets a kernel that ran
(or will run) for somebody else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.jobs import DRIVER_STARTING_LOG, WARM_DRIVER_LOG
from tests.e2e.stack import StackProcess

BASE = "/api/rest_j/v1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    process = StackProcess(
        tmp_path_factory.mktemp("pool-e2e"),
        {
            "SPARKGATE_POOL_MAX": "3",
            "SPARKGATE_POOL_SIZE": "1",
            "SPARKGATE_POOL_PER_USER": "1",
            "SPARKGATE_SPARK_MASTER": "local[1]",
            "SPARKGATE_SYNC_WAIT_SECONDS": "60",
        },
    )
    process.start(timeout=120)
    yield process
    process.stop()


def _entries(stack: StackProcess) -> list[dict[str, Any]]:
    from chalicelib.store import pool as pool_store

    with stack.aws():
        return pool_store.listed()


def _entry(stack: StackProcess, pool_id: str) -> dict[str, Any]:
    from chalicelib.store import pool as pool_store

    with stack.aws():
        entry = pool_store.get(pool_id)
    assert entry is not None
    return entry


def _ready(stack: StackProcess, kind: str, owner: str | None = None, timeout: float = 300) -> dict[str, Any]:
    """The first ready pool entry of ``kind`` (and ``owner``), waiting for its kernel to start."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in _entries(stack):
            if entry["kind"] == kind and entry.get("owner") == owner and entry["state"] == "ready":
                return entry
        assert time.monotonic() < deadline, f"no {kind} pool entry became ready: {_entries(stack)}"
        time.sleep(0.5)


def _user_id(token: str) -> str:
    """The user id a token names (its ``sub`` claim; the stack checked the signature when it issued it)."""
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def _kernel_uid(stack: StackProcess, user_id: str) -> int | None:
    from chalicelib.store import users as user_store

    with stack.aws():
        return user_store.known_kernel_uid(user_id)


def _run(stack: StackProcess, token: str, code: str, run_type: str = "sql") -> tuple[str, list[str]]:
    """Submit over the entrance, wait for the end; the final status and the whole log."""
    body = {"executionCode": code, "runType": run_type, "executeApplicationName": "spark", "params": {}}
    headers = {"Authorization": f"Bearer {token}"}
    status, got, _ = stack.call("POST", f"{BASE}/entrance/execute", body, headers=headers)
    assert status == 200, got
    exec_id = got["data"]["execID"]
    deadline = time.monotonic() + 300
    while True:
        state = stack.call("GET", f"{BASE}/entrance/{exec_id}/status", None, headers=headers)[1]["data"]["status"]
        if state in ("Succeed", "Failed", "Cancelled", "Timeout"):
            break
        assert time.monotonic() < deadline, f"{exec_id} stuck in {state}"
        time.sleep(0.2)
    log = stack.call("GET", f"{BASE}/entrance/{exec_id}/log?fromLine=1&size=-1", None, headers=headers)[1]
    return state, [line for line in log["data"]["log"][3].split("\n") if line]


def _follow(stack: StackProcess, token: str, exec_id: str) -> None:
    deadline = time.monotonic() + 300
    headers = {"Authorization": f"Bearer {token}"}
    while stack.call("GET", f"{BASE}/entrance/{exec_id}/status", None, headers=headers)[1]["data"]["status"] not in (
        "Succeed",
        "Failed",
        "Cancelled",
        "Timeout",
    ):
        assert time.monotonic() < deadline, f"{exec_id} did not end"
        time.sleep(0.5)


def _uids_below(pid: int) -> set[int]:
    """The real uids of ``pid``'s descendants (the sandboxed kernel and its JVM)."""
    from chalicelib.engine import leftovers

    uids: set[int] = set()
    for child in leftovers.below(pid, leftovers.process_table()):
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        uids.update(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    return uids


def test_new_users_and_new_sessions_start_on_warm_drivers_that_never_change_hands(stack: StackProcess) -> None:
    fresh = _ready(stack, "fresh")
    assert fresh["uid"] is not None, "the stack runs kernels under their own uids (CI runs as root)"
    ann = stack.new_user("ann")
    ann_id = _user_id(ann)
    assert _kernel_uid(stack, ann_id) is None  # brand-new: no kernel ever ran for ann

    status, log = _run(stack, ann, "select 1 as one")
    assert status == "Succeed", log
    assert WARM_DRIVER_LOG in log[0] and DRIVER_STARTING_LOG not in "\n".join(log)
    claimed = _entry(stack, fresh["pool_id"])
    assert (claimed["state"], claimed["claimed_by"]) == ("claimed", ann_id)
    assert _kernel_uid(stack, ann_id) == fresh["uid"]  # the fresh kernel's uid became ann's
    driver_pid = int(fresh["runner_handle"]["pid"])
    assert fresh["uid"] in _uids_below(driver_pid)  # and the kernel really runs under it

    # ann's next new session (a geo scope) claims ann's own spare, under ann's uid
    spare = _ready(stack, "spare", owner=ann_id)
    assert spare["uid"] is None or spare["uid"] == fresh["uid"]
    call = stack.call
    assert call("POST", "/scope", {"scope": "warm"}, ann)[0] == 200
    assert call("POST", "/session", {"scope": "warm", "session": "s1"}, ann)[0] == 200
    answer = call("POST", "/query", {"scope": "warm", "session": "s1", "sql": "select 41 + 1 as x"}, ann)
    if answer[0] == 202:  # a busy machine outlasted the sync wait: follow the Job as an Arctern client would
        _follow(stack, ann, answer[1]["execID"])
        answer = call("POST", "/query", {"scope": "warm", "session": "s1", "sql": "select 41 + 1 as x"}, ann)
    assert answer[0] == 200 and answer[1]["status"] == "success", answer
    assert answer[1]["result"] == [{"x": 42}] or "42" in str(answer[1]["result"]), answer
    taken = _entry(stack, spare["pool_id"])
    assert (taken["state"], taken["claimed_by"]) == ("claimed", ann_id)
    assert fresh["uid"] in _uids_below(int(spare["runner_handle"]["pid"]))

    # ben, brand-new too, gets a fresh kernel of his own: never one of ann's, never ann's uid
    second = _ready(stack, "fresh")
    assert second["pool_id"] != fresh["pool_id"] and second["uid"] != fresh["uid"]
    ben = stack.new_user("ben")
    ben_id = _user_id(ben)
    status, log = _run(stack, ben, "select 2 as two")
    assert status == "Succeed" and WARM_DRIVER_LOG in log[0], log
    assert _kernel_uid(stack, ben_id) == second["uid"] != _kernel_uid(stack, ann_id)
    for entry in (_entry(stack, e) for e in (fresh["pool_id"], spare["pool_id"], second["pool_id"])):
        assert entry["claimed_by"] in (ann_id, ben_id) and (entry["kind"] == "fresh" or entry["owner"] == ann_id)
        assert entry["kind"] != "spare" or entry["claimed_by"] == entry["owner"]
