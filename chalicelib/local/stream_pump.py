"""The local stand-in for the Lambda event source mapping on the table's stream.

Reads the stream from the embedded AWS (``dynamodbstreams``: ``describe_stream``,
``get_shard_iterator`` LATEST, ``get_records``) and calls the stream handler with a Lambda-shaped
event (``{"Records": [...]}``, each record with the ``eventSourceARN`` moto leaves out). Like a
mapping with ``ReportBatchItemFailures``, a reported failure resumes from that record: it and the
records after it are retried (backing off) up to ``max_retries`` times, then dropped with a warning.

It reads at once again after a non-empty batch. Between batches it waits for ``wake``, an event the
embedded AWS sets after every table write (``aws.TABLE_WRITTEN``), with a read every
``IDLE_READ_SECONDS`` in case; without ``wake`` it polls every ``SPARKGATE_STREAM_POLL_MS`` (default 20 ms).
Pushes reach a socket within milliseconds of the write, and an idle stack reads the stream once a
second instead of fifty times (each read is a request the stack's one GIL serves beside the users').
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from chalice.local import LambdaContext

from chalicelib.store.aws import client

Handler = Callable[[dict[str, Any], Any], Any]
#: with a ``wake`` event: the longest wait between two reads of the stream
IDLE_READ_SECONDS = 1.0


class StreamPump(threading.Thread):
    """Polls every shard of ``table_name``'s stream and dispatches batches to ``handler`` in order."""

    def __init__(
        self,
        handler: Handler,
        table_name: str,
        *,
        poll_seconds: float | None = None,
        batch_size: int = 100,
        max_retries: int = 5,
        trim: Callable[[str, int | None], Any] | None = None,
        wake: threading.Event | None = None,
        read: Callable[[str, int], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(name="stream-pump", daemon=True)
        self.handler = handler
        self.table_name = table_name
        default_poll = float(os.environ.get("SPARKGATE_STREAM_POLL_MS", "20")) / 1000
        self.poll_seconds = poll_seconds if poll_seconds is not None else default_poll
        self.batch_size, self.max_retries = batch_size, max_retries
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self.stream_arn = ""
        self.dispatched = 0
        self.dropped = 0
        self._iterators: dict[str, str | None] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._attempts: dict[str, int] = {}
        self._moto_iterators: dict[str, Any] | None = None
        #: called with (table, first sequence number not yet consumed) once a batch is done, so the
        #: embedded AWS can drop what was consumed (the stack passes ``aws.trim_consumed_stream``)
        self.trim = trim
        self._consumed: int | None = None
        self._trimmed: int | None = None
        self.wake = wake
        #: ``read(iterator, limit)`` answers ``GetRecords`` (default: the stream API); the stack passes
        #: ``aws.read_stream_records``, which asks the in-process moto backend directly
        self.read = read or (lambda iterator, limit: self._streams().get_records(ShardIterator=iterator, Limit=limit))

    def _streams(self) -> Any:
        return client("dynamodbstreams")

    def _open(self) -> None:
        described = client("dynamodb").describe_table(TableName=self.table_name)["Table"]
        self.stream_arn = described["LatestStreamArn"]
        shards = self._streams().describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                got = self._streams().get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="LATEST"
                )
                self._iterators[shard_id] = got["ShardIterator"]

    def run(self) -> None:
        """Open the stream, then poll until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                self._open()
                break
            except Exception as err:
                print(f"sparkgate: stream pump cannot open the stream yet: {err}", file=sys.stderr, flush=True)
                self._stopping.wait(0.5)
        self.ready.set()
        while not self._stopping.is_set():
            if self.wake is not None:
                self.wake.clear()  # before the read: a write after it rings again
            try:
                busy = self.poll_once()
            except Exception as err:
                print(f"sparkgate: stream pump error: {err!r}", file=sys.stderr, flush=True)
                busy = False
                self._stopping.wait(0.5)
            if not busy:
                if self.wake is not None:
                    self.wake.wait(IDLE_READ_SECONDS)
                else:
                    self._stopping.wait(self.poll_seconds)

    def poll_once(self) -> bool:
        """Read and dispatch one batch per shard; True when anything was read or is waiting for a retry."""
        busy = False
        for shard_id, iterator in list(self._iterators.items()):
            if self._pending.get(shard_id):
                busy = True
                self._dispatch(shard_id)
                continue
            if iterator is None:
                continue
            try:
                got = self.read(iterator, self.batch_size)
            except Exception:
                self._reopen(shard_id)
                raise
            self._iterators[shard_id] = got.get("NextShardIterator")
            self._forget_iterator(iterator)
            records = got.get("Records", [])
            if records:
                busy = True
                for record in records:
                    record.setdefault("eventSourceARN", self.stream_arn)
                    record.get("dynamodb", {}).pop("ApproximateCreationDateTime", None)
                self._pending[shard_id] = records
                self._dispatch(shard_id)
        self._trim()
        return busy

    def _reopen(self, shard_id: str) -> None:
        """A fresh iterator for ``shard_id`` just after the last record consumed (LATEST if none)."""
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if self._consumed is None:
            kwargs["ShardIteratorType"] = "LATEST"
        else:
            kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=str(self._consumed))
        try:
            self._iterators[shard_id] = self._streams().get_shard_iterator(**kwargs)["ShardIterator"]
        except Exception as err:
            print(f"sparkgate: stream pump cannot reopen shard {shard_id}: {err!r}", file=sys.stderr, flush=True)

    def _consume(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            seq = record.get("dynamodb", {}).get("SequenceNumber")
            if seq is not None and (self._consumed is None or int(seq) >= self._consumed):
                self._consumed = int(seq) + 1

    def _trim(self) -> None:
        if self.trim is None or any(self._pending.values()) or self._consumed == self._trimmed:
            return
        try:
            self.trim(self.table_name, self._consumed)
            self._trimmed = self._consumed
        except Exception as err:  # only memory is at stake
            print(f"sparkgate: stream pump cannot trim the stream: {err!r}", file=sys.stderr, flush=True)

    def _dispatch(self, shard_id: str) -> None:
        records = self._pending[shard_id]
        context = LambdaContext("on_dynamodb_record", memory_size=256, max_runtime_ms=60_000)
        try:
            result = self.handler({"Records": records}, context)
            failures = (result or {}).get("batchItemFailures") or [] if isinstance(result, dict) else []
        except Exception as err:
            print(f"sparkgate: stream handler raised: {err!r}", file=sys.stderr, flush=True)
            failures = [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
        if not failures:
            self._consume(records)
            self.dispatched += len(records)
            self._pending[shard_id] = []
            self._attempts.pop(shard_id, None)
            return
        failed = {str(f.get("itemIdentifier")) for f in failures}
        index = next(
            (i for i, r in enumerate(records) if {r["dynamodb"].get("SequenceNumber"), r.get("eventID")} & failed),
            0,
        )
        self.dispatched += index
        attempt = self._attempts.get(shard_id, 0) + 1
        if attempt > self.max_retries:
            print(
                f"sparkgate: dropping stream record {records[index]['dynamodb'].get('SequenceNumber')} "
                f"after {self.max_retries} retries",
                file=sys.stderr,
                flush=True,
            )
            self.dropped += 1
            self._consume(records[: index + 1])
            self._pending[shard_id] = records[index + 1 :]
            self._attempts.pop(shard_id, None)
            return
        self._attempts[shard_id] = attempt
        self._pending[shard_id] = records[index:]
        self._stopping.wait(min(2.0, 0.05 * 2**attempt))

    def _forget_iterator(self, iterator_arn: str) -> None:
        """Drop a used shard iterator from the in-process moto backend (moto keeps every one forever)."""
        try:
            if self._moto_iterators is None:
                from moto.dynamodbstreams.models import dynamodbstreams_backends

                for account in dynamodbstreams_backends.values():
                    for backend in account.values():
                        if iterator_arn in backend.shard_iterators:
                            self._moto_iterators = backend.shard_iterators
            if self._moto_iterators is not None:
                self._moto_iterators.pop(iterator_arn, None)
        except Exception:  # moto in another process, or its internals moved: only memory is at stake
            self._moto_iterators = {}

    def stop(self) -> None:
        """Stop polling (returns once the thread ended)."""
        self._stopping.set()
        if self.wake is not None:
            self.wake.set()
        if self.is_alive():
            self.join(timeout=10)
