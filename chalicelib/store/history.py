"""The Linkis job history's reads: a user's Jobs newest first, over every page of the index."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.records import JobRecord
from chalicelib.store.aws import table
from chalicelib.store.item_keys import user_jobs_pk
from chalicelib.store.jobs import from_item


def recent_user_jobs(owner: str, cap: int) -> list[JobRecord]:
    """At most ``cap`` of the owner's most recent Jobs (``gsi2 = USERJOBS#<owner>``), newest first."""
    out: list[JobRecord] = []
    kwargs: dict[str, Any] = {
        "IndexName": "gsi2",
        "KeyConditionExpression": Key("gsi2pk").eq(user_jobs_pk(owner)),
        "ScanIndexForward": False,
        "Limit": min(cap, 1000),
    }
    while len(out) < cap:
        page = table().query(**kwargs)
        out.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return out[:cap]
