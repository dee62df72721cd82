"""Create the table and bucket from ``definition.py`` (the local stack and tests use this)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from chalicelib.config import Settings
from chalicelib.store import definition
from chalicelib.store.aws import client


def ensure_table_and_bucket(cfg: Settings) -> None:
    """Create the stage's table (with TTL) and bucket unless they exist."""
    ddb = client("dynamodb")
    try:
        ddb.create_table(**definition.create_table_kwargs(cfg.table_name))
        ddb.get_waiter("table_exists").wait(TableName=cfg.table_name)
        ddb.update_time_to_live(
            TableName=cfg.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.TTL_ATTRIBUTE},
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":
            raise
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket=cfg.bucket_name)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
