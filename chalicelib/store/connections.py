"""WebSocket connections and their Job subscriptions (single table).

Items:

- connection:   ``pk = CONN#<connection_id>``, ``sk = CONN``; ``user_id``, ``username``, ``connected_at``,
                ``expiration``; ``gsi1 = (USERCONNS#<user_id>, <connection_id>)`` (a user's sockets)
- subscription: ``pk = CONN#<connection_id>``, ``sk = SUB#<exec_id>``; ``user_id``, ``exec_id``,
                ``websocket_tag``, ``expiration``; ``gsi2 = (JOBSUBS#<exec_id>, <connection_id>)`` (a Job's sockets)

``expiration`` (epoch seconds, the table's TTL attribute) is two hours after connect, API Gateway's
longest connection life: a connection whose ``$disconnect`` was lost ages out. TTL deletion is lazy
(and never happens in moto), so readers also skip expired items themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.store.aws import query_all, table
from chalicelib.store.definition import TTL_ATTRIBUTE

#: API Gateway closes every WebSocket connection after two hours.
CONNECTION_TTL_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Connection:
    """One open socket and the user it was authenticated as at ``$connect``."""

    connection_id: str
    user_id: str
    username: str
    connected_at: int
    expiration: int
    #: the claims of the token it connected with (id, version, expiry): every frame re-checks them
    token_id: str = ""
    token_version: int = 0
    token_expires: int = 0

    def claims(self) -> dict[str, Any]:
        """The token claims :func:`chalicelib.tokens.principal_of` re-checks."""
        return {"sub": self.user_id, "name": self.username, "jti": self.token_id, "ver": self.token_version}


@dataclass(frozen=True)
class Subscription:
    """A socket that asked for a Job's pushes, with the ``websocketTag`` its pushes echo."""

    connection_id: str
    user_id: str
    exec_id: str
    websocket_tag: str | None


def connection_key(connection_id: str) -> dict[str, str]:
    """The primary key of a connection item."""
    return {"pk": f"CONN#{connection_id}", "sk": "CONN"}


def _live(item: dict[str, Any], now: float) -> bool:
    return int(item.get(TTL_ATTRIBUTE, 0)) > now


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=str(item["connection_id"]),
        user_id=str(item["user_id"]),
        username=str(item.get("username", "")),
        connected_at=int(item.get("connected_at", 0)),
        expiration=int(item.get(TTL_ATTRIBUTE, 0)),
        token_id=str(item.get("token_id", "")),
        token_version=int(item.get("token_version", 0)),
        token_expires=int(item.get("token_expires", 0)),
    )


def put_connection(
    connection_id: str,
    user_id: str,
    username: str,
    *,
    now: float | None = None,
    claims: dict[str, Any] | None = None,
) -> Connection:
    """Record an authenticated connection (``$connect``) with the claims of its token; it lives no longer
    than the token does."""
    stamp = int(now if now is not None else time.time())
    claims = claims or {}
    expires = int(claims.get("exp") or 0)
    until = stamp + CONNECTION_TTL_SECONDS
    item: dict[str, Any] = {
        **connection_key(connection_id),
        "gsi1pk": f"USERCONNS#{user_id}",
        "gsi1sk": connection_id,
        "connection_id": connection_id,
        "user_id": user_id,
        "username": username,
        "connected_at": stamp,
        "token_id": str(claims.get("jti") or ""),
        "token_version": int(claims.get("ver") or 0),
        "token_expires": expires,
        TTL_ATTRIBUTE: min(until, expires) if expires else until,
    }
    table().put_item(Item=item)
    return _connection(item)


def get_connection(connection_id: str) -> Connection | None:
    """The live connection record, or None (unknown, deleted or expired)."""
    item = table().get_item(Key=connection_key(connection_id), ConsistentRead=True).get("Item")
    if not item or not _live(item, time.time()):
        return None
    return _connection(item)


def delete_connection(connection_id: str) -> None:
    """Forget a connection and every subscription it holds (``$disconnect``, or a 410 from ``@connections``)."""
    tbl = table()
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": Key("pk").eq(f"CONN#{connection_id}"),
        "ProjectionExpression": "pk, sk",
    }
    keys = [{"pk": i["pk"], "sk": i["sk"]} for i in query_all(**kwargs)]
    if not keys:
        return
    with tbl.batch_writer() as batch:
        for key in keys:
            batch.delete_item(Key=key)


def user_connections(user_id: str) -> list[Connection]:
    """Every live connection of ``user_id``."""
    now = time.time()
    kwargs: dict[str, Any] = {"IndexName": "gsi1", "KeyConditionExpression": Key("gsi1pk").eq(f"USERCONNS#{user_id}")}
    return [_connection(i) for i in query_all(**kwargs) if _live(i, now)]


def subscribe(connection: Connection, exec_id: str, websocket_tag: str | None) -> Subscription:
    """Subscribe ``connection`` to a Job's pushes (idempotent; the latest tag wins).

    The caller has checked that the Job belongs to the connection's user.
    """
    item: dict[str, Any] = {
        "pk": f"CONN#{connection.connection_id}",
        "sk": f"SUB#{exec_id}",
        "gsi2pk": f"JOBSUBS#{exec_id}",
        "gsi2sk": connection.connection_id,
        "connection_id": connection.connection_id,
        "user_id": connection.user_id,
        "exec_id": exec_id,
        TTL_ATTRIBUTE: connection.expiration,
    }
    if websocket_tag is not None:
        item["websocket_tag"] = websocket_tag
    table().put_item(Item=item)
    return Subscription(connection.connection_id, connection.user_id, exec_id, websocket_tag)


def unsubscribe(connection_id: str, exec_id: str) -> None:
    """Stop a connection's pushes for one Job."""
    table().delete_item(Key={"pk": f"CONN#{connection_id}", "sk": f"SUB#{exec_id}"})


def job_subscriptions(exec_id: str) -> list[Subscription]:
    """Every live subscription to ``exec_id``."""
    now = time.time()
    kwargs: dict[str, Any] = {"IndexName": "gsi2", "KeyConditionExpression": Key("gsi2pk").eq(f"JOBSUBS#{exec_id}")}
    return [
        Subscription(
            str(item["connection_id"]),
            str(item["user_id"]),
            exec_id,
            str(item["websocket_tag"]) if item.get("websocket_tag") is not None else None,
        )
        for item in query_all(**kwargs)
        if _live(item, now)
    ]
