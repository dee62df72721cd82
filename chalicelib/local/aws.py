"""The embedded AWS: a moto server on loopback that every boto3 client of the process uses.

It answers only requests signed (SigV4, verified in full) with the stack's platform credential,
which :func:`start_embedded_aws` generates for each run and exports as ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``: the processes the stack starts inherit it; anything else on loopback
gets 403 in AWS's error shape and changes nothing.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from xml.sax.saxutils import escape

import boto3
from moto import backends as moto_backends
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.models import dynamodbstreams_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import ThreadedWSGIServer

from chalicelib.local import moto_fixes, query_index
from chalicelib.local.credentials import Credentials
from chalicelib.local.inprocess import InProcessSession
from chalicelib.local.journal import DYNAMODB_WRITES, Journal, Journaled, read_wsgi_body, replay
from chalicelib.local.keepalive import ConnectionTracker, KeepAliveHandler
from chalicelib.local.sigv4 import Refusal, SigV4Verifier

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_DYNAMODB_LOCK = threading.RLock()
#: set after every DynamoDB write the embedded AWS applies: the stream pump waits on it instead of
#: polling the stream (:class:`~chalicelib.local.stream_pump.StreamPump`'s ``wake``)
TABLE_WRITTEN = threading.Event()
#: orders the bucket's writes in the write-ahead log as moto applies them
_S3_LOCK = threading.RLock()


def serialize_dynamodb() -> None:
    """Make every moto DynamoDB request atomic, as each request is in DynamoDB itself.

    moto evaluates a condition and applies the write in separate steps without a lock, so two
    threads can both pass the same ``ConditionExpression``. The product's concurrency control rests on conditional
    writes; this restores the guarantee they need. It also installs :mod:`moto_fixes`
    (transactions that roll back only the items they touched) and :mod:`query_index` (a Query reads
    its key's items, not the whole table), which this lock keeps current. Safe to call more than once.
    """
    moto_fixes.install()
    query_index.install()
    if getattr(DynamoHandler.call_action, "_sparkgate_serialized", False):
        return
    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: DynamoHandler, *args: Any, **kwargs: Any) -> Any:
        with _DYNAMODB_LOCK:
            try:
                answer = original(self, *args, **kwargs)
            finally:
                query_index.after_request(self._get_action(), self.body, self.dynamodb_backend.tables.get)
        with contextlib.suppress(Exception):
            if self._get_action() in DYNAMODB_WRITES:
                TABLE_WRITTEN.set()
        return answer

    call_action._sparkgate_serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def trim_consumed_stream(table_name: str, before_sequence: int | None) -> int:
    """Drop the in-process table's stream records below ``before_sequence`` (consumed) or older than 24 h."""
    with _DYNAMODB_LOCK:
        return sum(moto_fixes.trim_stream(table, before_sequence) for table in moto_fixes.tables(table_name))


def read_stream_records(iterator_arn: str, limit: int) -> dict[str, Any]:
    """``GetRecords`` answered by this process's moto backend itself, as the stream API answers it
    (``Records``, ``NextShardIterator``): no request to sign, serialize and parse for a reader in the
    same process (the stack's stream pump reads after every table write). The records are copies.
    An iterator this process's backend does not hold (the stream is elsewhere) is read over the API."""
    with _DYNAMODB_LOCK:
        for account in dynamodbstreams_backends.values():
            for backend in account.values():
                if iterator_arn in backend.shard_iterators:
                    return copy.deepcopy(backend.get_records(iterator_arn, limit))  # type: ignore[no-any-return]
    from chalicelib.store.aws import client

    answer: dict[str, Any] = client("dynamodbstreams").get_records(ShardIterator=iterator_arn, Limit=limit)
    return answer


def dump_table(table_name: str) -> list[dict[str, Any]]:
    """Every item of the in-process table in DynamoDB's typed JSON; call it under :func:`write_locks`.

    It also drops the empty partitions moto leaves behind (a lookup of a missing key creates one).
    """
    items: list[dict[str, Any]] = []
    for table in moto_fixes.tables(table_name):
        if table.range_key_attr is not None:
            for hash_value in [h for h, partition in table.items.items() if not partition]:
                del table.items[hash_value]
        items.extend(item.to_json()["Attributes"] for item in table.all_items())
    return items


@contextlib.contextmanager
def write_locks() -> Iterator[None]:
    """Hold both write locks: no DynamoDB or S3 request is being applied (or logged) inside."""
    with _S3_LOCK, _DYNAMODB_LOCK:
        yield


def _cache_service_lookup() -> None:
    """moto's server lists its package directory on every request to route it; the list never changes."""
    if getattr(moto_backends.list_of_moto_modules, "_sparkgate_cached", False):
        return
    modules = tuple(moto_backends.list_of_moto_modules())

    def cached() -> tuple[str, ...]:
        return modules

    cached._sparkgate_cached = True  # type: ignore[attr-defined]
    moto_backends.list_of_moto_modules = cached


# AWS's names for a refusal, per protocol family (JSON services, S3's REST-XML, the query services)
_JSON_CODES = {
    "MissingAuthenticationToken": "MissingAuthenticationTokenException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
}
_S3_CODES = {
    "MissingAuthenticationToken": "AccessDenied",
    "UnrecognizedClientException": "InvalidAccessKeyId",
    "IncompleteSignatureException": "AuthorizationHeaderMalformed",
    "InvalidSignatureException": "RequestTimeTooSkewed",
}


def _wsgi_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _error_body(refusal: Refusal, headers: dict[str, str], query: str) -> tuple[bytes, str]:
    content_type = headers.get("content-type", "")
    if "x-amz-target" in headers or "amz-json" in content_type:
        code = _JSON_CODES.get(refusal.code, refusal.code)
        doc = {"__type": f"com.amazon.coral.service#{code}", "message": refusal.message}
        return json.dumps(doc).encode(), "application/x-amz-json-1.0"
    if "x-www-form-urlencoded" in content_type or "Action=" in query:
        xml = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message>"
            "</Error><RequestId>0</RequestId></ErrorResponse>"
        )
        return xml.encode(), "text/xml"
    code = _S3_CODES.get(refusal.code, refusal.code)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(refusal.message)}</Message></Error>"
    )
    return xml.encode(), "application/xml"


class SignedOnly:
    """WSGI middleware: the wrapped app sees only requests signed with the platform credential."""

    def __init__(self, app: WsgiApp, verifier: SigV4Verifier) -> None:
        self.app = app
        self.verifier = verifier

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = _wsgi_headers(environ)
        target = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        if "?" not in target and environ.get("QUERY_STRING"):
            target = f"{target}?{environ['QUERY_STRING']}"
        body: list[bytes] = []

        def read_body() -> bytes:
            if not body:
                body.append(read_wsgi_body(environ))
            return body[0]

        refusal = self.verifier.verify(environ.get("REQUEST_METHOD", "GET"), target, headers, read_body)
        if refusal is None:
            return self.app(environ, start_response)
        raw, content_type = _error_body(refusal, headers, environ.get("QUERY_STRING", ""))
        start_response(
            f"{refusal.status} {'Forbidden' if refusal.status == 403 else 'Bad Request'}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(raw))),
                ("x-amzn-ErrorType", refusal.code),
                ("Connection", "close"),
            ],
        )
        return [raw]


class _KeepAliveServer(ConnectionTracker, ThreadedWSGIServer):  # type: ignore[misc]
    """werkzeug's threaded server on persistent connections (:class:`KeepAliveHandler`), closed with it."""


class SignedMotoServer(ThreadedMotoServer):  # type: ignore[misc]
    """moto's threaded server behind :class:`SignedOnly` and the write-ahead log (:class:`Journaled`).

    ``journal`` logs nothing until it is opened (after the state is restored and replayed).
    ``app`` is that whole WSGI stack (SigV4 check, log, moto), which this process's own clients
    call directly (:mod:`chalicelib.local.inprocess`); HTTP connections are kept alive
    (:mod:`chalicelib.local.keepalive`).
    """

    def __init__(
        self,
        credentials: Credentials,
        ip_address: str = "127.0.0.1",
        port: int = 0,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.credentials = credentials
        self.verifier = SigV4Verifier(credentials)
        self.journal = journal
        self.dispatcher = DomainDispatcherApplication(create_backend_app)
        inner: WsgiApp = self.dispatcher
        if journal is not None:
            inner = Journaled(inner, journal, _DYNAMODB_LOCK, _S3_LOCK)
        self.app: WsgiApp = SignedOnly(inner, self.verifier)

    def replay(self, generations: list[int]) -> tuple[int, int]:
        """Apply the journal's logs of ``generations`` to moto in order, unlogged; answers (applied, refused)."""
        applied = refused = 0
        if self.journal is None:
            return applied, refused
        for generation in generations:
            done, failed = replay(self.dispatcher, self.journal.read(generation))
            applied, refused = applied + done, refused + failed
        return applied, refused

    def _server_entry(self) -> None:
        self._server = _KeepAliveServer(self._ip_address, self._port, self.app, handler=KeepAliveHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    def serve_in_process(self, endpoint: str) -> None:
        """Let this process's clients of ``endpoint`` call :attr:`app` directly (until :meth:`stop`)."""
        from chalicelib.store import aws as store_aws

        host, port = self.get_host_and_port()
        store_aws.use_transport(endpoint, InProcessSession(self.app, (host, port)))
        self._in_process_endpoint: str | None = endpoint

    def stop(self) -> None:
        """Stop listening, close the kept-alive connections and end the in-process path."""
        endpoint = getattr(self, "_in_process_endpoint", None)
        if endpoint is not None:
            from chalicelib.store import aws as store_aws

            store_aws.use_transport(endpoint, None)
            self._in_process_endpoint = None
        server = getattr(self, "_server", None)
        super().stop()
        if server is not None:
            server.close_connections()
            server.server_close()


def export_credentials(credentials: Credentials) -> None:
    """Make ``credentials`` this process's (and its future children's) AWS credential."""
    os.environ["AWS_ACCESS_KEY_ID"] = credentials.access_key_id
    os.environ["AWS_SECRET_ACCESS_KEY"] = credentials.secret_access_key
    for stale in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(stale, None)
    boto3.DEFAULT_SESSION = (
        None  # it caches the credential it resolved first; clients made from now on sign with this one
    )


def start_embedded_aws(
    port: int = 0, credentials: Credentials | None = None, journal: Journal | None = None
) -> tuple[SignedMotoServer, str]:
    """Start moto on 127.0.0.1 and point this process (and its children) at it.

    ``credentials`` (default: a fresh random one) is the only credential it accepts; it is
    exported to this process's environment and kept in ``server.credentials``. Any AWS
    credential the environment held before is replaced: a real one never reaches the stand-in.
    """
    credentials = credentials or Credentials.generate()
    export_credentials(credentials)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialize_dynamodb()
    _cache_service_lookup()
    server = SignedMotoServer(credentials, ip_address="127.0.0.1", port=port, journal=journal)
    server.start()
    host, real_port = server.get_host_and_port()
    endpoint = f"http://{host}:{real_port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    if os.environ.get("SPARKGATE_AWS_IN_PROCESS", "1") != "0":
        server.serve_in_process(endpoint)  # this process's own clients skip the socket; children sign over HTTP
    return server, endpoint
