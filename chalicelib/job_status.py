"""A Job's life cycle: its statuses (Linkis's names) and the one table of legal moves.

Every status write is a compare-and-set (``store.jobs.transition``): it names the statuses it may move
the Job from, and the write only happens if the Job is still in one of them. This module says which
moves exist at all, as Livy's ``StatementState`` does; ``transition`` refuses (ValueError: a bug, not
a race) a move the table does not allow, and :func:`sources` gives the from-statuses of a move
(``store.jobs.move``). Pure: the domain, the engine and the store all import it.

- ``Inited``: made, not yet queued (reserved for Linkis's vocabulary; today Jobs are born Scheduled).
- ``WaitForRetry``: waiting to be queued again (reserved; a lost Job is Failed today, see docs/engine.md).
- ``Scheduled``: queued for a driver. ``Running``: a driver claimed it.
- ``Succeed``, ``Failed``, ``Cancelled``, ``Timeout``: final; a final Job never moves again.

A queued Job may end without ever being seen Running: cancelled or failed before a driver took it, or
an artefact run (a work's jar/SQL step) whose runner reports its outcome after it already ended.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A Job's status, as stored and as Linkis clients read it."""

    INITED = "Inited"
    WAIT_FOR_RETRY = "WaitForRetry"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEED = "Succeed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMEOUT = "Timeout"


FINAL: tuple[JobStatus, ...] = (JobStatus.SUCCEED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT)
QUEUED: tuple[JobStatus, ...] = (JobStatus.INITED, JobStatus.WAIT_FOR_RETRY, JobStatus.SCHEDULED)
ACTIVE: tuple[JobStatus, ...] = (*QUEUED, JobStatus.RUNNING)

#: status -> the statuses it may move to.
MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.INITED: frozenset({JobStatus.SCHEDULED, JobStatus.RUNNING, *FINAL}),
    JobStatus.WAIT_FOR_RETRY: frozenset({JobStatus.SCHEDULED, JobStatus.RUNNING, *FINAL}),
    JobStatus.SCHEDULED: frozenset({JobStatus.RUNNING, *FINAL}),
    JobStatus.RUNNING: frozenset({JobStatus.WAIT_FOR_RETRY, *FINAL}),
    **{final: frozenset() for final in FINAL},
}


def is_legal(from_status: str, to_status: str) -> bool:
    """Whether the table allows ``from_status -> to_status`` (unknown names never move)."""
    try:
        return JobStatus(to_status) in MOVES[JobStatus(from_status)]
    except ValueError:
        return False


def check(from_statuses: tuple[str, ...], to_status: str) -> None:
    """Raise ValueError unless every ``from -> to`` is legal (a caller naming an impossible move is a bug)."""
    illegal = [f for f in from_statuses if not is_legal(f, to_status)]
    if illegal or not from_statuses:
        raise ValueError(f"no legal move to {to_status} from {', '.join(illegal) or '(nothing)'}")


def sources(to_status: str, only: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The statuses a Job may move to ``to_status`` from (narrowed to ``only`` when given), table order."""
    target = JobStatus(to_status)
    allowed = [str(s) for s, nexts in MOVES.items() if target in nexts]
    return tuple(s for s in allowed if only is None or s in only)
