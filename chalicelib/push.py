"""Job changes -> the Linkis pushed messages (spec 000, "任务状态、日志、进度主动推送").

The table's stream hands every change of a Job item or a log chunk item here (as plain images,
already decoded by the stream handler); this module decides what to push and to whom:

- ``/api/rest_j/v1/entrance/{execID}/status`` on every status change (the insert of a Job counts:
  it is the Job's first status),
- ``/api/rest_j/v1/entrance/{execID}/progress`` when ``progress`` or ``progress_info`` changes,
- ``/api/rest_j/v1/entrance/{execID}/log`` with the lines of a new log chunk only, in the
  ``log = [error, warn, info, all]`` shape plus ``fromLine``, the cursor to resume from (the same
  cursor ``GET .../log`` answers, so a client that loses its socket continues over HTTP with it),
- ``/api/rest_j/v1/entrance/{execID}/waitingSize`` ``{execID, taskID, waitingSize}`` while a Job waits
  in its session's queue, as Linkis pushes its queue position: when the Job joins the queue (after its
  ``Scheduled`` status), and to every Job behind one that leaves the queue (it started or ended), with
  the new count of Jobs ahead of it (0: it runs next).

Recipients are the connection that submitted the Job (when it is still the owner's), the owner's
connections subscribed to it, and, for a Job submitted over HTTP (no submitting connection), every
connection of the owner, as Linkis does. A connection of another user never receives anything.

No boto3 here: storage and delivery come in through :class:`PushPorts`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from chalicelib.entrance import log_data, progress, status
from chalicelib.records import JobRecord
from chalicelib.store import item_keys

METHOD_PREFIX = "/api/rest_j/v1/entrance/"
#: API Gateway's per-message limit, and the head room kept for the recipient's ``websocketTag``.
MAX_MESSAGE_BYTES = 128 * 1024
TAG_HEADROOM = 1024
MAX_TAG_CHARS = 256
TRUNCATED = " ...[line truncated in the push; read it in full with GET .../log]"

STATUS_MESSAGE = "status"
PROGRESS_MESSAGE = "progress"
LOG_MESSAGE = "log"
WAITING_MESSAGE = "waitingSize"
#: how many queued Jobs of a session one change reads (and pushes positions to)
MAX_QUEUE_READ = 100


@dataclass(frozen=True)
class Change:
    """One stream record, decoded: ``event_name`` is INSERT, MODIFY or REMOVE; images are plain dicts."""

    event_name: str
    keys: dict[str, Any]
    new: dict[str, Any] | None = None
    old: dict[str, Any] | None = None

    @property
    def exec_id(self) -> str | None:
        """The Job this record belongs to, or None for any other item."""
        return item_keys.exec_id_of(self.keys)

    @property
    def is_job(self) -> bool:
        """True for the Job item itself."""
        return item_keys.is_job(self.keys)

    @property
    def is_session(self) -> bool:
        """True for a session (driver) item."""
        return item_keys.is_session(self.keys)

    @property
    def job(self) -> JobRecord | None:
        """The new image of a Job item as its record (the record plus its key and index attributes,
        which the queue positions read: see :func:`queue_of`)."""
        return cast(JobRecord, self.new) if self.is_job and self.new is not None else None

    @property
    def is_log(self) -> bool:
        """True for a log chunk item."""
        return item_keys.is_log(self.keys)


@dataclass(frozen=True)
class Push:
    """One message to send: the Linkis envelope without the recipient's ``websocketTag``."""

    method: str
    message: str
    data: dict[str, Any]

    def frame(self, websocket_tag: str | None) -> dict[str, Any]:
        """The complete frame for one recipient."""
        return {
            "method": self.method,
            "status": 0,
            "message": self.message,
            "data": self.data,
            "websocketTag": websocket_tag,
        }

    def encode(self, websocket_tag: str | None) -> bytes:
        """The frame as compact UTF-8 JSON."""
        return encode(self.frame(websocket_tag))


@dataclass(frozen=True)
class Subscriber:
    """A connection subscribed to a Job, the user it belongs to and the tag its pushes echo."""

    connection_id: str
    user_id: str
    websocket_tag: str | None


class PushPorts(Protocol):
    """What the push logic needs from storage and the management API."""

    def get_job(self, exec_id: str) -> JobRecord | None:
        """The Job record (plain values), or None."""

    def connection_user(self, connection_id: str) -> str | None:
        """The user id a live connection belongs to, or None."""

    def user_connections(self, user_id: str) -> list[str]:
        """Ids of the user's live connections."""

    def job_subscribers(self, exec_id: str) -> list[Subscriber]:
        """Live subscriptions to the Job."""

    def queued_jobs(self, session_id: str, limit: int) -> list[JobRecord]:
        """Up to ``limit`` Jobs waiting in a session's queue, oldest first."""

    def post(self, connection_id: str, data: bytes) -> bool:
        """Deliver one message; False when the connection is gone. Raises on other failures."""


class DeliveryFailed(Exception):
    """Nothing of a record could be delivered to anyone (every post failed, none was gone)."""


@dataclass
class Delivery:
    """What happened to one record's messages: counts of (message, connection) pairs."""

    messages: int = 0
    sent: int = 0
    gone: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def encode(frame: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as every frame is sent."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()


def method(exec_id: str, kind: str) -> str:
    """``/api/rest_j/v1/entrance/{execID}/{kind}``."""
    return f"{METHOD_PREFIX}{exec_id}/{kind}"


# ---- what to push -------------------------------------------------------------------------------


def job_pushes(change: Change) -> list[Push]:
    """Pushes for a change of the Job item: progress (if it moved), then status (if it changed)."""
    new, old = cast("JobRecord | None", change.new), change.old
    if new is None or change.event_name == "REMOVE":
        return []
    exec_id = str(new["exec_id"])
    out: list[Push] = []
    if old is not None and (
        new.get("progress") != old.get("progress") or new.get("progress_info") != old.get("progress_info")
    ):
        out.append(Push(method(exec_id, PROGRESS_MESSAGE), "progress", progress(new)))
    if old is None or new.get("status") != old.get("status"):
        out.append(Push(method(exec_id, STATUS_MESSAGE), "status", status(new)))
    return out


def queue_of(image: dict[str, Any] | None) -> str | None:
    """The session whose queue a Job item (a raw stream image) waits in, or None."""
    return item_keys.queued_session(image)


def waiting_push(job: JobRecord, ahead: int) -> Push:
    """``.../{execID}/waitingSize`` ``{execID, taskID, waitingSize}``: ``ahead`` Jobs wait before it."""
    data = {"execID": job["exec_id"], "taskID": job["task_id"], "waitingSize": ahead}
    return Push(method(str(job["exec_id"]), WAITING_MESSAGE), WAITING_MESSAGE, data)


def waiting_pushes(change: Change, queued: Callable[[str], list[JobRecord]]) -> list[tuple[JobRecord, Push]]:
    """(Job, push) pairs of queue positions a Job change causes: its own position when it joined a queue,
    the new positions of the Jobs behind it when it left one. ``queued(session)`` reads a queue oldest
    first; the index may lag the change, so the changed Job is placed by its task id, not looked up."""
    new, old = change.job, change.old
    if new is None or change.event_name == "REMOVE":
        return []
    joined, left = queue_of(change.new), queue_of(old)
    me, my_task = str(new["exec_id"]), int(new["task_id"])
    if joined and joined != left:
        ahead = sum(1 for j in queued(joined) if str(j["exec_id"]) != me and int(j["task_id"]) < my_task)
        return [(new, waiting_push(new, ahead))]
    if left and left != joined:
        others = sorted((j for j in queued(left) if str(j["exec_id"]) != me), key=lambda j: int(j["task_id"]))
        return [(j, waiting_push(j, i)) for i, j in enumerate(others) if int(j["task_id"]) > my_task]
    return []


def new_log_lines(change: Change) -> tuple[int, list[tuple[str, str]]]:
    """The first line number and the lines a log chunk record adds (none for a removal)."""
    new = change.new
    if new is None or change.event_name == "REMOVE":
        return 0, []
    lines = [(str(line.get("l", "INFO")), str(line.get("t", ""))) for line in new.get("lines", [])]
    first = int(new.get("first", 0))
    skip = len(change.old.get("lines", [])) if change.old else 0
    return first + skip, lines[skip:]


def log_pushes(
    job: JobRecord, first: int, lines: list[tuple[str, str]], limit: int = MAX_MESSAGE_BYTES - TAG_HEADROOM
) -> list[Push]:
    """Log pushes for ``lines`` starting at line ``first``, split so every frame stays under ``limit`` bytes.

    The parts carry consecutive cursors: part *k* covers ``[fromLine_{k-1}, fromLine_k)``. A single
    line too long for one frame is truncated in the push (the HTTP log keeps it whole).
    """
    if not lines:
        return []
    exec_id = str(job["exec_id"])

    def build(start: int, chunk: list[tuple[str, str]]) -> Push:
        return Push(method(exec_id, LOG_MESSAGE), "log", log_data(job, chunk, start))

    out: list[Push] = []

    def split(start: int, chunk: list[tuple[str, str]]) -> None:
        push = build(start, chunk)
        if len(push.encode(None)) <= limit:
            out.append(push)
        elif len(chunk) > 1:
            half = len(chunk) // 2
            split(start, chunk[:half])
            split(start + half, chunk[half:])
        else:
            out.append(_truncated(build, start, chunk[0], limit))

    split(first, lines)
    return out


def _truncated(
    build: Callable[[int, list[tuple[str, str]]], Push], start: int, line: tuple[str, str], limit: int
) -> Push:
    level, text = line
    keep = len(text)
    while True:
        keep = max(0, keep // 2 if keep > limit else int(keep * 0.9))
        push = build(start, [(level, text[:keep] + TRUNCATED)])
        if len(push.encode(None)) <= limit or keep == 0:
            return push


# ---- to whom ------------------------------------------------------------------------------------


def recipients(job: JobRecord, ports: PushPorts) -> dict[str, str | None]:
    """Connection id -> ``websocketTag`` for everyone who gets this Job's pushes (owner's sockets only)."""
    owner = str(job["owner"])
    out: dict[str, str | None] = {}
    submitter = job.get("submitter_connection")
    if submitter:
        if ports.connection_user(str(submitter)) == owner:
            out[str(submitter)] = None
    else:
        for connection_id in ports.user_connections(owner):
            out[connection_id] = None
    for sub in ports.job_subscribers(str(job["exec_id"])):
        if sub.user_id == owner:
            out[sub.connection_id] = sub.websocket_tag
    return out


# ---- the whole path -----------------------------------------------------------------------------


class PushBatch:
    """Turns a batch of changes into deliveries, caching Job and recipient look-ups for the batch."""

    def __init__(self, ports: PushPorts) -> None:
        self.ports = ports
        self._jobs: dict[str, JobRecord | None] = {}
        self._recipients: dict[str, dict[str, str | None]] = {}
        self._gone: set[str] = set()

    def _job(self, exec_id: str) -> JobRecord | None:
        if exec_id not in self._jobs:
            self._jobs[exec_id] = self.ports.get_job(exec_id)
        return self._jobs[exec_id]

    def _to(self, job: JobRecord) -> dict[str, str | None]:
        exec_id = str(job["exec_id"])
        if exec_id not in self._recipients:
            self._recipients[exec_id] = recipients(job, self.ports)
        return {c: t for c, t in self._recipients[exec_id].items() if c not in self._gone}

    def pushes(self, change: Change) -> tuple[JobRecord | None, list[Push]]:
        """The Job a change belongs to and the pushes it causes."""
        exec_id = change.exec_id
        if exec_id is None:
            return None, []
        if change.is_job:
            if change.job is not None:
                self._jobs[exec_id] = change.job  # the freshest image there is
            return change.job, job_pushes(change)
        if change.is_log:
            first, lines = new_log_lines(change)
            if not lines:
                return None, []
            job = self._job(exec_id)
            return job, log_pushes(job, first, lines) if job else []
        return None, []

    def deliver(self, change: Change) -> Delivery:
        """Push everything ``change`` causes; raises :class:`DeliveryFailed` if nothing got through.

        A post that fails for one connection while others succeed is counted, not raised: retrying
        the record would repeat the message to everyone else (the client still has HTTP).
        """
        job, pushes = self.pushes(change)
        pairs = [(job, push) for push in pushes] if job is not None else []
        pairs += waiting_pushes(change, lambda session: self.ports.queued_jobs(session, MAX_QUEUE_READ))
        report = Delivery(messages=len(pairs))
        for target_job, push in pairs:
            self._send(target_job, push, report)
        if report.failed and not report.sent and not report.gone:
            raise DeliveryFailed("; ".join(report.errors))
        return report

    def _send(self, job: JobRecord, push: Push, report: Delivery) -> None:
        """Post ``push`` to every recipient of ``job``, counting into ``report``."""
        targets = self._to(job)
        for connection_id, tag in targets.items():
            if connection_id in self._gone:
                continue
            try:
                delivered = self.ports.post(connection_id, push.encode(tag))
            except Exception as err:
                report.failed += 1
                report.errors.append(f"{connection_id}: {type(err).__name__}: {err}")
                continue
            if delivered:
                report.sent += 1
            else:
                report.gone += 1
                self._gone.add(connection_id)


def deliver_all(changes: Iterable[Change], ports: PushPorts) -> list[Delivery]:
    """Deliver a sequence of changes in order (a convenience for callers without failure tracking)."""
    batch = PushBatch(ports)
    return [batch.deliver(change) for change in changes]
