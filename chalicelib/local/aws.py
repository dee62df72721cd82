"""The embedded AWS: a moto server on loopback that every boto3 client of the process uses."""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

from moto import backends as moto_backends
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.server import ThreadedMotoServer

_DYNAMODB_LOCK = threading.RLock()


def serialize_dynamodb() -> None:
    """Make every moto DynamoDB request atomic, as each request is in DynamoDB itself.

    moto evaluates a condition and applies the write in separate steps without a lock, and
    rolls a failed transaction back by swapping whole tables, so two threads can both pass
    the same ``ConditionExpression``. The product's concurrency control rests on conditional
    writes; this restores the guarantee they need. Safe to call more than once.
    """
    if getattr(DynamoHandler.call_action, "_sparkgate_serialized", False):
        return
    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: DynamoHandler, *args: Any, **kwargs: Any) -> Any:
        with _DYNAMODB_LOCK:
            return original(self, *args, **kwargs)

    call_action._sparkgate_serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _cache_service_lookup() -> None:
    """moto's server lists its package directory on every request to route it; the list never changes."""
    if getattr(moto_backends.list_of_moto_modules, "_sparkgate_cached", False):
        return
    modules = tuple(moto_backends.list_of_moto_modules())

    def cached() -> tuple[str, ...]:
        return modules

    cached._sparkgate_cached = True  # type: ignore[attr-defined]
    moto_backends.list_of_moto_modules = cached


def start_embedded_aws(port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start moto on 127.0.0.1 and point this process (and its children) at it."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialize_dynamodb()
    # headers and body leave in separate writes; without this each answer waits for a delayed ACK
    MotoRequestHandler.disable_nagle_algorithm = True
    _cache_service_lookup()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server._server.server_address[:2]
    endpoint = f"http://{host}:{real_port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    return server, endpoint
