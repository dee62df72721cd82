"""Powertools' idempotency records, kept in the sparkgate table (``pk``/``sk``, TTL ``expiration``)."""

from __future__ import annotations

from functools import lru_cache

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from chalicelib.config import settings
from chalicelib.store.aws import client


@lru_cache(maxsize=4)
def _layer(table_name: str, endpoint_marker: int) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(
        table_name=table_name,
        key_attr="pk",
        sort_key_attr="sk",
        expiry_attr="expiration",
        boto3_client=client("dynamodb"),
    )


def persistence_layer() -> DynamoDBPersistenceLayer:
    """The persistence layer for this stage's table."""
    return _layer(settings().table_name, id(client("dynamodb")))
