"""The warm driver pool: pre-started session drivers that a new session claims at once.

A cold session driver waits for a JVM and a SparkSession (5 s on a quiet machine, 20-100 s on a
busy one). A pool entry is a driver that already has them, waiting in ``python -m chalicelib.engine
pool``. Two kinds, so that no kernel ever serves two users:

- ``fresh``: its kernel runs under a kernel uid nobody has (taken from the users' uid counter).
  Only a user who has no kernel uid yet can claim it, and the claim makes that uid the user's
  (put-if-absent): from then on the kernel, and the uid, are that user's alone.
- ``spare``: started for one user under that user's own kernel uid, claimable by that user only.
  A user's spare is started once the first Job of the user's session driver has ended
  (:func:`refill_after`), so the next new scope (or the entrance session after a geo one) starts warm too.

Entries move ``starting -> ready -> reserved -> claimed`` (or ``-> retired``), each move a
conditional write (``store.pool``). A claimed driver becomes the session's driver for the
generation the claim names; an unclaimed one exits after ``pool_idle_seconds``. Only sessions
whose Spark settings (master, configs, envs) are the defaults can be served from the pool (a
pooled SparkSession cannot take other static settings; its Spark application name stays
``sparkgate-pool-<id>``). Domain code: no boto3, no pyspark.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from typing import Any

from chalicelib.config import settings
from chalicelib.engine.config import default_session_config
from chalicelib.push import Change
from chalicelib.records import SessionRecord
from chalicelib.runners import RunnerError, runner
from chalicelib.store import pool as pool_store
from chalicelib.store import users as user_store

#: An entry still starting after this long is given up (its driver is cancelled).
START_TIMEOUT_SECONDS = 300.0
#: Session config keys that shape the SparkSession itself; a pooled one has the defaults.
_SPARK_KEYS = ("master", "configs", "envs")


def poolable(config: dict[str, Any] | None) -> bool:
    """Whether a session with ``config`` can run on a pooled driver (its Spark settings are the defaults)."""
    defaults = default_session_config()
    given = config or {}
    return all((given.get(k) or defaults[k]) == defaults[k] for k in _SPARK_KEYS)


def _dead(entry: dict[str, Any], now: float) -> bool:
    handle = entry.get("runner_handle")
    if handle:
        with contextlib.suppress(Exception):
            if runner(handle).probe(handle) in ("finished", "failed"):
                return True
    return entry.get("state") == "starting" and now - float(entry.get("created_epoch") or 0) > START_TIMEOUT_SECONDS


def _retire(entry: dict[str, Any], reason: str) -> bool:
    """Retire a starting or ready ``entry`` (and cancel its driver); whether this call retired it."""
    moved = pool_store.move(
        entry["pool_id"],
        ("starting", "ready"),
        {"state": "retired", "stop_reason": reason, "retired_epoch": time.time()},
    )
    handle = entry.get("runner_handle")
    if moved and handle:
        with contextlib.suppress(Exception):
            runner(handle).cancel(handle)
    return moved is not None


def _evict(live: list[dict[str, Any]], count: int, keep_owner: str | None) -> int:
    """Retire up to ``count`` of other users' ready spares, least recently ready first; how many went.

    A spare serves one user, a fresh entry anyone new: when the pool is full, idle spares make room."""
    spares = [e for e in live if e["kind"] == "spare" and e.get("owner") != keep_owner and e["state"] == "ready"]
    spares.sort(key=lambda e: float(e.get("ready_epoch") or e.get("created_epoch") or 0))
    return sum(_retire(e, "room made for a new pool entry") for e in spares[: max(0, count)])


def _start(kind: str, owner: str | None) -> str | None:
    """Start one pool driver; its pool id, or None when the runner keeps no pool."""
    pool_id = f"{kind}-{secrets.token_hex(6)}"
    entry: dict[str, Any] = {"pool_id": pool_id, "kind": kind, "owner": owner, "state": "starting"}
    entry["created_epoch"] = time.time()
    if not pool_store.insert(entry):
        return None
    try:
        handle = runner().start_pool(entry)
    except RunnerError as err:
        pool_store.move(pool_id, ("starting",), {"state": "retired", "stop_reason": f"could not start: {err}"})
        return None
    pool_store.move(pool_id, ("starting", "ready"), {"runner_handle": handle})
    return pool_id


def refill(spare_for: str | None = None) -> list[str]:
    """Retire dead entries, then start fresh ones up to ``pool_size`` and (``spare_for``) that user's
    spares up to ``pool_per_user``, never more than ``pool_max`` in all: other users' idle spares are
    retired (oldest first) to make room. Answers the pool ids started."""
    cfg = settings()
    if cfg.pool_max <= 0:
        return []
    now = time.time()
    live: list[dict[str, Any]] = []
    for entry in pool_store.listed():
        if _dead(entry, now):
            _retire(entry, "the pooled driver is gone")
        else:
            live.append(entry)
    started: list[str] = []
    room = cfg.pool_max - len(live)
    wanted: list[tuple[str, str | None]] = [("fresh", None)] * max(
        0, cfg.pool_size - sum(e["kind"] == "fresh" for e in live)
    )
    if spare_for and cfg.pool_per_user:
        have = sum(e["kind"] == "spare" and e.get("owner") == spare_for for e in live)
        wanted = [("spare", spare_for)] * max(0, cfg.pool_per_user - have) + wanted
    room += _evict(live, len(wanted) - room, spare_for)
    for kind, owner in wanted[: max(0, room)]:
        pool_id = _start(kind, owner)
        if pool_id is None:
            break
        started.append(pool_id)
    return started


def refill_quietly(spare_for: str | None = None) -> None:
    """:func:`refill` where a failure must not fail the caller's request (it is reported)."""
    try:
        refill(spare_for)
    except Exception as err:
        print(f"sparkgate: warm pool refill failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


def refill_after(change: Change) -> None:
    """The stream's part: a session driver's first Job has just ended (its ``first_job_at`` written),
    so its owner's spare and the fresh entries are topped up now. Not at the claim: the new pool
    drivers' JVM starts would share the cores with the very Job the user is waiting for."""
    new, old = change.new or {}, change.old or {}
    if change.is_session and new.get("first_job_at") and not old.get("first_job_at") and new.get("owner"):
        refill_quietly(spare_for=str(new["owner"]))


def _claimable(owner: str) -> list[dict[str, Any]]:
    ready = [e for e in pool_store.listed() if e.get("state") == "ready" and e.get("runner_handle")]
    spares = [e for e in ready if e["kind"] == "spare" and e.get("owner") == owner]
    fresh = [e for e in ready if e["kind"] == "fresh"]
    if fresh and any(e.get("uid") is not None for e in fresh) and user_store.known_kernel_uid(owner) is not None:
        fresh = [e for e in fresh if e.get("uid") is None]  # a user with a uid keeps it: only uid-less kernels
    return spares + fresh


def claim(owner: str, session: SessionRecord) -> dict[str, Any] | None:
    """Hand a ready pool driver to ``session`` (a new generation just written as ``starting``).

    Answers the driver's runner handle, or None when no entry fits (the caller starts a cold driver).
    """
    if settings().pool_max <= 0 or not poolable(session.get("config")):
        return None
    for entry in _claimable(owner):
        pool_id = entry["pool_id"]
        if pool_store.move(pool_id, ("ready",), {"state": "reserved", "claimed_by": owner}) is None:
            continue  # somebody else's claim came first
        uid = entry.get("uid")
        if entry["kind"] == "fresh" and uid is not None and not user_store.bind_kernel_uid(owner, int(uid)):
            pool_store.move(pool_id, ("reserved",), {"state": "ready", "claimed_by": None})
            continue  # the user took a uid meanwhile: this kernel cannot become theirs
        claimed = {
            "state": "claimed",
            "session_id": session["session_id"],
            "generation": int(session["generation"]),
            "claimed_epoch": time.time(),
        }
        if pool_store.move(pool_id, ("reserved",), claimed) is None:
            continue
        handle = dict(entry["runner_handle"])
        with contextlib.suppress(Exception):
            runner(handle).wake(handle)
        return {**handle, "pool_id": pool_id}
    return None
