"""Per-user caps: live Spark sessions and queued + running Jobs (see docs/api.md, "Per-user quotas").

- ``SPARKGATE_MAX_SESSIONS_PER_USER`` (default 4): session drivers starting or running, geo sessions
  and the entrance's warm session alike (batch drivers count as Jobs, not sessions). Reserved when a
  driver generation is about to start (``sessions.ensure_session_driver``) or a geo session is created.
- ``SPARKGATE_MAX_ACTIVE_JOBS_PER_USER`` (default 20): Jobs not yet final, of every surface.
  Reserved when a Job is made (``jobs.new_job``; a work's run reserves in ``work_runs.build_request``).

The cap is exact, not a count taken before a write: each reservation is a conditional write on one
item per user (``store.quotas``), so of two requests racing for the last slot one is refused.
Nothing has to remember to give a slot back when a Job ends or a driver dies (many writers move
Jobs, the engine among them): when a reservation finds the cap reached, the entries whose Job is
final, or whose driver is no longer live (or was asked to stop), are released and the reservation
is tried once more. An entry younger than ``GRACE_SECONDS`` whose Job or session record is not
written yet is kept (it is being made). Over the cap: :class:`~chalicelib.errors.QuotaExceeded`
(HTTP 429 on every surface).

No boto3 here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chalicelib.config import settings
from chalicelib.errors import QuotaExceeded
from chalicelib.store import quotas as quota_store

#: An entry this young whose Job / session record does not exist yet is still being made.
GRACE_SECONDS = 30.0
_FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")
_LIVE = ("starting", "running", "stopping")


def _jobs_ended(held: dict[str, float], now: float) -> dict[str, float]:
    found = quota_store.items_by_pk([f"JOB#{m}" for m in held], "JOB", ("status",))
    ended = {}
    for member, epoch in held.items():
        item = found.get(f"JOB#{member}")
        if (item is None and now - epoch > GRACE_SECONDS) or (item is not None and item.get("status") in _FINAL):
            ended[member] = epoch
    return ended


def _sessions_ended(held: dict[str, float], now: float) -> dict[str, float]:
    found = quota_store.items_by_pk([f"SESSION#{m}" for m in held], "SESSION", ("state", "stop_requested"))
    ended = {}
    for member, epoch in held.items():
        item = found.get(f"SESSION#{member}")
        live = item is not None and item.get("state") in _LIVE and not item.get("stop_requested")
        if not live and now - epoch > GRACE_SECONDS:
            ended[member] = epoch
    return ended


def _reserve(
    kind: quota_store.Kind,
    user_id: str,
    member: str,
    cap: int,
    ended: Callable[[dict[str, float], float], dict[str, float]],
    message: Callable[[int], str],
) -> None:
    if cap <= 0:
        return
    now = time.time()
    held = quota_store.reserve(user_id, kind, member, cap, now)
    if held is None:
        return
    gone = ended(held, now)
    if gone:
        quota_store.release(user_id, kind, gone)
        held = quota_store.reserve(user_id, kind, member, cap, now)
        if held is None:
            return
    raise QuotaExceeded(message(len(held)))


def jobs_message(held: int, cap: int) -> str:
    """The refusal at the Job cap (also a failed run's ``error``)."""
    return (
        f"too many queued or running Jobs: you have {held}, at most {cap} are allowed "
        "(SPARKGATE_MAX_ACTIVE_JOBS_PER_USER); wait for one to end or kill one, then retry"
    )


def sessions_message(held: int, cap: int) -> str:
    """The refusal at the session cap."""
    return (
        f"too many live Spark sessions: you have {held}, at most {cap} are allowed "
        "(SPARKGATE_MAX_SESSIONS_PER_USER; geo sessions and the entrance's session count); "
        "delete a scope (DELETE /scope/<scope>) or wait for an idle session to end, then retry"
    )


def reserve_job(user_id: str, exec_id: str) -> None:
    """Count Job ``exec_id`` against its owner's cap; QuotaExceeded at the cap."""
    cap = settings().max_active_jobs_per_user
    _reserve("jobs", user_id, exec_id, cap, _jobs_ended, lambda held: jobs_message(held, cap))


def reserve_session(user_id: str, session_id: str) -> None:
    """Count session ``session_id`` (again: renewing is free) against its owner's cap; QuotaExceeded at the cap."""
    cap = settings().max_sessions_per_user
    _reserve("sessions", user_id, session_id, cap, _sessions_ended, lambda held: sessions_message(held, cap))


def release_session(user_id: str, session_id: str) -> None:
    """Stop counting ``session_id`` (it was asked to stop)."""
    held = quota_store.holdings(user_id, "sessions")
    if session_id in held:
        quota_store.release(user_id, "sessions", {session_id: held[session_id]})
