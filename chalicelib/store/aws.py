"""Shared boto3 handles, created once per process (and per endpoint, so tests can switch)."""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache
from typing import Any

import boto3
import boto3.dynamodb.types
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.config import settings
from chalicelib.store.errors import is_condition_failure

_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)
#: botocore HTTP sessions by endpoint URL, used instead of HTTP (the local stack's in-process embedded AWS)
_TRANSPORTS: dict[str, Any] = {}


def use_transport(endpoint: str, session: Any | None) -> None:
    """Send the requests of this process's clients for ``endpoint`` through ``session``; None: over HTTP again.

    ``session`` is a botocore HTTP session (``send(prepared_request) -> AWSResponse``). The
    clients and resources made so far are dropped, so every handle from now on uses it.
    """
    if session is None:
        _TRANSPORTS.pop(endpoint, None)
    else:
        _TRANSPORTS[endpoint] = session
    _table.cache_clear()
    _resource.cache_clear()
    _client.cache_clear()


def _attach(client: Any, endpoint: str | None) -> Any:
    session = _TRANSPORTS.get(endpoint) if endpoint else None
    if session is not None:
        client._endpoint.http_session = session
    return client


@lru_cache(maxsize=8)
def _resource(service: str, endpoint: str | None) -> Any:
    resource = boto3.resource(service, config=_CONFIG, endpoint_url=endpoint)  # type: ignore[call-overload]
    _attach(resource.meta.client, endpoint)
    return resource


@lru_cache(maxsize=16)
def _client(service: str, endpoint: str | None) -> Any:
    return _attach(boto3.client(service, config=_CONFIG, endpoint_url=endpoint), endpoint)  # type: ignore[call-overload]


def client(service: str) -> Any:
    """A boto3 client for ``service`` (honours ``AWS_ENDPOINT_URL`` for the local stack)."""
    return _client(service, os.environ.get("AWS_ENDPOINT_URL"))


@lru_cache(maxsize=8)
def _table(endpoint: str | None, name: str) -> Any:
    # boto3 builds a sub-resource's class on every ``.Table(...)`` call: build it once
    return _resource("dynamodb", endpoint).Table(name)


def table() -> Any:
    """The sparkgate DynamoDB table (boto3 ``Table`` resource)."""
    return _table(os.environ.get("AWS_ENDPOINT_URL"), settings().table_name)


def reset() -> None:
    """Forget cached handles and credentials (tests that start a fresh moto backend or switch stacks call this)."""
    boto3.DEFAULT_SESSION = None  # its botocore session keeps the credentials it first resolved
    _table.cache_clear()
    _resource.cache_clear()
    _client.cache_clear()


_SERIALIZER = boto3.dynamodb.types.TypeSerializer()
_DESERIALIZER = boto3.dynamodb.types.TypeDeserializer()


def to_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item in DynamoDB's typed JSON (for the low-level client and transactions)."""
    return {k: _SERIALIZER.serialize(v) for k, v in item.items()}


def from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_dynamo`."""
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def query_all(**kwargs: Any) -> list[dict[str, Any]]:
    """Every item ``Table.query(**kwargs)`` answers, following ``LastEvaluatedKey`` page by page."""
    items: list[dict[str, Any]] = []
    while True:
        page = table().query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def dynamo_value(value: Any) -> Any:
    """``value`` as the boto3 resource layer accepts it: floats (also nested) become Decimals.

    :func:`chalicelib.store.items.decode` turns them back.
    """
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [dynamo_value(v) for v in value]
    return value


def put_new(item: dict[str, Any]) -> bool:
    """Put ``item`` (floats converted, see :func:`dynamo_value`) only if no item has its key; False when one does."""
    try:
        table().put_item(Item=dynamo_value(item), ConditionExpression="attribute_not_exists(pk)")
    except ClientError as err:
        if is_condition_failure(err):
            return False
        raise
    return True


def update_request(
    key: dict[str, Any],
    fields: dict[str, Any],
    condition: str,
    *,
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    remove: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The UpdateItem arguments that set ``fields`` (and remove ``remove``) on ``key`` if ``condition`` holds.

    ``names``/``values`` are the condition's own placeholders (values as Python values).
    """
    names = {**(names or {}), **{f"#f{i}": k for i, k in enumerate(fields)}}
    values = {**(values or {}), **{f":v{i}": dynamo_value(v) for i, v in enumerate(fields.values())}}
    parts = []
    if fields:
        parts.append("SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))))
    if remove:
        parts.append("REMOVE " + ", ".join(remove))
    request: dict[str, Any] = {"Key": key, "UpdateExpression": " ".join(parts), "ConditionExpression": condition}
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        request["ExpressionAttributeValues"] = values
    return request


def update_if(
    key: dict[str, Any],
    fields: dict[str, Any],
    condition: str,
    *,
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    remove: tuple[str, ...] = (),
    return_item: bool = False,
) -> dict[str, Any] | None:
    """Set ``fields`` (and remove the attributes ``remove``) on item ``key`` only if ``condition`` holds.

    ``names``/``values`` are the condition's own placeholders. Answers the raw item after the
    write when ``return_item`` (else ``{}``), or None when the condition failed.
    """
    kwargs = update_request(key, fields, condition, names=names, values=values, remove=remove)
    if return_item:
        kwargs["ReturnValues"] = "ALL_NEW"
    try:
        got = table().update_item(**kwargs)
    except ClientError as err:
        if is_condition_failure(err):
            return None
        raise
    return dict(got.get("Attributes", {})) if return_item else {}


def update_all_if(requests: list[dict[str, Any]]) -> list[str]:
    """The :func:`update_request` updates in one transaction: all are applied or none.

    Answers ``[]`` when applied, else DynamoDB's cancellation reason code of each update, in order
    (``"ConditionalCheckFailed"`` for a failed condition, ``"None"`` for one that would have passed,
    ``"TransactionConflict"``...).
    """
    name = table().name
    items = []
    for request in requests:
        update = {**request, "TableName": name, "Key": to_dynamo(request["Key"])}
        if "ExpressionAttributeValues" in update:
            update["ExpressionAttributeValues"] = to_dynamo(update["ExpressionAttributeValues"])
        items.append({"Update": update})
    try:
        client("dynamodb").transact_write_items(TransactItems=items)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
        reasons = err.response.get("CancellationReasons") or [{}] * len(requests)
        return [str(r.get("Code") or "Unknown") for r in reasons]
    return []
