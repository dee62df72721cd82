"""Scheduled runs of works: ``run_due_works(now)`` is called every minute by the schedule tick.

Slots (the moment a run is due), in the work's ``timezone`` (default UTC):

- ``hourly``: the start of each hour; ``daily``: 00:00 local; ``weekly``: Monday 00:00 local;
- ``once``: a single slot named ``once``, due at the first tick after creation.

A work without a ``work_directory`` is a draft: it is never due (so a ``once`` work runs at the first
tick after it gets one, instead of failing with "no work_directory" at the first tick after creation).

A tick looks only at the *latest* slot at or before ``now`` and only if it is not before the work's
creation, so a work never runs for slots before it existed, and after downtime a work runs once
for the latest missed slot, never once per missed slot. Each run first claims
``SLOT#<work_id>#<slot>`` with a conditional put: overlapping or retried ticks cannot run a slot
twice. Paused works (``paused: true``) and deleted works do not run (a slot that falls while paused
is skipped, not caught up later). When the work still has an active task the slot is claimed and
skipped (runs never overlap, BATCH works included). Due works are found through the works' ``gsi2``
projection (``SCHEDULED#<frequency>``), not by scanning the table. Each tick first settles the
active tasks (``tasks.sweep_active``): ended runs free their works, and starts interrupted by a crash
are ended after their grace period, so no work stays busy for ever.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from chalicelib import tasks
from chalicelib.errors import SparkgateError
from chalicelib.observability import logger
from chalicelib.records import WorkRecord
from chalicelib.store import tasks as task_store
from chalicelib.store import users as user_store
from chalicelib.timeutil import iso, parse_iso
from chalicelib.tokens import Principal

FREQUENCIES = ("once", "hourly", "daily", "weekly")


def latest_slot(frequency: str, now: datetime, timezone: str = "UTC") -> datetime | None:
    """The latest slot start at or before ``now`` (aware, UTC) for ``frequency``; None for ``once``."""
    local = now.astimezone(ZoneInfo(timezone or "UTC"))
    if frequency == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0)
    elif frequency == "daily":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elif frequency == "weekly":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=local.weekday())
    else:
        return None
    # rebuild through the zone so DST offsets at the slot (not at ``now``) apply
    naive = start.replace(tzinfo=None)
    return naive.replace(tzinfo=ZoneInfo(timezone or "UTC")).astimezone(UTC)


def due_slot(work: WorkRecord, now: datetime) -> str | None:
    """The slot name ``work`` is due for at ``now``, or None (paused, deleted, not yet due)."""
    if work.get("paused") or work.get("deleted_at"):
        return None
    if not work.get("work_directory"):
        return None  # nothing to run yet: a draft is not due (its ``once`` slot waits for a work_directory)
    frequency = work.get("run_frequency")
    if frequency == "once":
        return "once"
    slot = latest_slot(str(frequency), now, str(work.get("timezone") or "UTC"))
    if slot is None:
        return None
    created = work.get("created_at")
    if created and slot < parse_iso(str(created)).replace(second=0):
        return None
    return iso(slot)


def owner_username(work: WorkRecord) -> str:
    """The owner's username for a scheduled run (the Job's ``umUser``): recorded on the work when it is
    saved; for works saved before that, looked up in the user roster by id; the id only as a last resort."""
    name = work.get("owner_username")
    if name:
        return str(name)
    user_id = str(work["user_id"])
    try:
        for record in user_store.list_users():
            if record.get("user_id") == user_id and record.get("username"):
                return str(record["username"])
    except Exception:
        logger.exception("owner lookup failed", extra={"work_id": work.get("work_id")})
    return user_id


def run_due_works(now: datetime) -> list[str]:
    """Start every due run exactly once; answers the ids of the tasks started."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        tasks.sweep_active()
    except Exception:
        logger.exception("active-task sweep failed")
    started: list[str] = []
    for frequency in FREQUENCIES:
        for work in task_store.scheduled_works(frequency):
            slot = due_slot(work, now)
            if slot is None or not task_store.claim_slot(str(work["work_id"]), slot):
                continue
            try:
                owner = Principal(str(work["user_id"]), owner_username(work))
                task = tasks.start_task(owner, work, trigger="schedule", slot=slot)
                started.append(str(task["task_id"]))
            except SparkgateError as err:
                logger.info("scheduled run skipped", extra={"work_id": work["work_id"], "reason": err.message})
            except Exception:
                logger.exception("scheduled run failed to start", extra={"work_id": work["work_id"]})
    return started
