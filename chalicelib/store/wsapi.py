"""The API Gateway management API (``@connections``): how pushes reach a socket.

The endpoint is ``settings().ws_endpoint`` (env ``SPARKGATE_WS_ENDPOINT``), e.g.
``https://<api-id>.execute-api.<region>.amazonaws.com/<stage>`` in the cloud and the local
gateway's ``http://127.0.0.1:<port>`` on the local stack. A stream handler has no WebSocket event
to derive it from, so it is configuration. Inside an ``on_ws_*`` handler the event's domain and
stage are the fallback when the setting is empty.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.config import settings
from chalicelib.observability import logger
from chalicelib.store import connections

#: API Gateway's limit for one message posted to a connection.
MAX_MESSAGE_BYTES = 128 * 1024

# Pushes are latency-sensitive: short timeouts, few retries (a 410 is never retried).
_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)


class MessageTooLarge(ValueError):
    """A message over :data:`MAX_MESSAGE_BYTES`; the caller must split it."""


@lru_cache(maxsize=8)
def _management_client(endpoint: str) -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=_CONFIG)


def endpoint_from_event(domain_name: str, stage: str) -> str:
    """The ``@connections`` endpoint API Gateway implies for a WebSocket event."""
    return f"https://{domain_name}/{stage}"


def management_client(endpoint: str | None = None) -> Any:
    """The ``apigatewaymanagementapi`` client for ``endpoint`` (default: the configured one)."""
    url = endpoint or settings().ws_endpoint
    if not url:
        raise RuntimeError("SPARKGATE_WS_ENDPOINT is not set: pushes have nowhere to go")
    return _management_client(url)


def is_gone(err: ClientError) -> bool:
    """True for the management API's answer to a closed or unknown connection."""
    code = err.response.get("Error", {}).get("Code")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "GoneException" or status == 410


def post(connection_id: str, data: bytes, endpoint: str | None = None) -> bool:
    """Post one message; False when the connection is gone (its record is then deleted).

    Raises :class:`MessageTooLarge` for messages over 128 KB and ``ClientError`` for other failures.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        management_client(endpoint).post_to_connection(ConnectionId=connection_id, Data=data)
    except ClientError as err:
        if not is_gone(err):
            raise
        logger.info("connection gone; forgetting it", extra={"connection_id": connection_id})
        connections.delete_connection(connection_id)
        return False
    return True


def disconnect(connection_id: str, endpoint: str | None = None) -> None:
    """Close a connection from the server side (ignored when it is already gone)."""
    try:
        management_client(endpoint).delete_connection(ConnectionId=connection_id)
    except ClientError as err:
        if not is_gone(err):
            raise
    connections.delete_connection(connection_id)


def reset() -> None:
    """Forget cached clients (tests switching endpoints call this)."""
    _management_client.cache_clear()
