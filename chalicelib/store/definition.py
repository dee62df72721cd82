"""The one definition of sparkgate's DynamoDB table and S3 bucket.

Pure data, no boto3: the local stack creates its embedded table and bucket from it and the
CDK app in ``infra/`` builds the cloud resources from it, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any, Final

PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "expiration"

#: Global secondary indexes: name -> (partition key, sort key). All project every attribute.
INDEXES: Final[dict[str, tuple[str, str]]] = {
    "gsi1": ("gsi1pk", "gsi1sk"),
    "gsi2": ("gsi2pk", "gsi2sk"),
}

STREAM_VIEW_TYPE: Final = "NEW_AND_OLD_IMAGES"

#: S3 key prefixes in the bucket and how many days objects under them are kept (None: forever).
BUCKET_PREFIXES: Final[dict[str, int | None]] = {
    "results/": 30,
    "logs/": 30,
    "uploads/": None,
    "engine/": None,
}


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for DynamoDB ``CreateTable`` that build the table as the cloud stages have it."""
    attributes = {PARTITION_KEY, SORT_KEY}
    for pk, sk in INDEXES.values():
        attributes.update((pk, sk))
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in sorted(attributes)],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": name,
                "KeySchema": [
                    {"AttributeName": pk, "KeyType": "HASH"},
                    {"AttributeName": sk, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for name, (pk, sk) in INDEXES.items()
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
    }
