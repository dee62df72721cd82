"""The per-minute schedule tick: what the schedule handler (and the local stack's timer) runs.

Domain code: no boto3. Other parts (due works) add their steps here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib import sessions


def tick(now: datetime | None = None) -> dict[str, Any]:
    """One schedule pass at ``now`` (default: the current time); answers what each step did."""
    epoch = now.timestamp() if now is not None else None
    from chalicelib import pool
    from chalicelib.timeutil import now as utc_now
    from chalicelib.work_schedule import run_due_works

    done = {"heartbeats": sessions.check_heartbeats(epoch), "works": run_due_works(now or utc_now())}
    return {**done, "pool": pool.refill()}
