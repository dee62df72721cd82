"""``on_dynamodb_record``: the table's stream -> WebSocket pushes.

A plain Lambda function taking the raw DynamoDB stream event. The event source mapping (built in
``infra/``) must enable ``ReportBatchItemFailures``: the answer names the first record that failed
(``{"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}]}``). Lambda resumes the shard from
that record, so the records after it are not processed in this invocation (they would otherwise be
pushed twice). A record fails only when nothing of it could be delivered (a look-up failed, or every
post failed); a connection that is gone (410) is forgotten and is not a failure.
"""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib import pool, push
from chalicelib.observability import logger
from chalicelib.records import JobRecord
from chalicelib.store import connections, wsapi
from chalicelib.store import jobs as job_store
from chalicelib.store.aws import from_dynamo
from chalicelib.store.items import plain

blueprint = Blueprint(__name__)


def _image(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    return plain(from_dynamo(raw)) if raw else None


def change_from_record(record: dict[str, Any]) -> push.Change:
    """Decode one stream record (typed DynamoDB JSON) into a :class:`push.Change`."""
    body = record.get("dynamodb", {})
    return push.Change(
        event_name=str(record.get("eventName", "")),
        keys=_image(body.get("Keys")) or {},
        new=_image(body.get("NewImage")),
        old=_image(body.get("OldImage")),
    )


class StorePorts:
    """:class:`push.PushPorts` over the table and the ``@connections`` API."""

    def get_job(self, exec_id: str) -> JobRecord | None:
        """The Job record."""
        return job_store.get_job(exec_id)

    def connection_user(self, connection_id: str) -> str | None:
        """The user of a live connection."""
        found = connections.get_connection(connection_id)
        return found.user_id if found else None

    def user_connections(self, user_id: str) -> list[str]:
        """A user's live connection ids."""
        return [c.connection_id for c in connections.user_connections(user_id)]

    def job_subscribers(self, exec_id: str) -> list[push.Subscriber]:
        """A Job's live subscriptions."""
        return [
            push.Subscriber(s.connection_id, s.user_id, s.websocket_tag) for s in connections.job_subscriptions(exec_id)
        ]

    def queued_jobs(self, session_id: str, limit: int) -> list[JobRecord]:
        """The Jobs waiting in a session's queue, oldest first."""
        return job_store.queued_jobs(session_id, limit)

    def post(self, connection_id: str, data: bytes) -> bool:
        """Post to a connection (False when gone; the record is then deleted)."""
        return wsapi.post(connection_id, data)


def _identifier(record: dict[str, Any]) -> str:
    sequence = record.get("dynamodb", {}).get("SequenceNumber")
    return str(sequence or record.get("eventID", ""))


def handle_stream_event(event: dict[str, Any], ports: push.PushPorts | None = None) -> dict[str, Any]:
    """Process a stream batch in order; answer the partial-batch-failure response."""
    batch = push.PushBatch(ports or StorePorts())
    for record in event.get("Records", []):
        try:
            change = change_from_record(record)
            report = batch.deliver(change)
            pool.refill_after(change)
        except Exception as err:
            logger.warning(
                "stream record failed; the shard resumes from it",
                extra={"sequence": _identifier(record), "error": f"{type(err).__name__}: {err}"},
            )
            return {"batchItemFailures": [{"itemIdentifier": _identifier(record)}]}
        if report.failed:
            logger.warning("some pushes failed", extra={"exec_id": change.exec_id, "errors": report.errors[:5]})
    return {"batchItemFailures": []}


@blueprint.lambda_function(name="on_dynamodb_record")  # type: ignore[untyped-decorator]
def on_dynamodb_record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for the table's stream (event source mapping with ReportBatchItemFailures)."""
    return handle_stream_event(event)
