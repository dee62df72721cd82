"""Task records (runs of a work): ``pk = TASK#<task_id>``; ``gsi1`` = (``WORKTASKS#<work_id>``, start order)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.store.aws import table

_INTERNAL = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")


def list_work_tasks(work_id: str) -> list[dict[str, Any]]:
    """Every task of ``work_id``, newest first."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "IndexName": "gsi1",
        "KeyConditionExpression": Key("gsi1pk").eq(f"WORKTASKS#{work_id}"),
        "ScanIndexForward": False,
    }
    while True:
        page = table().query(**kwargs)
        items.extend({k: v for k, v in i.items() if k not in _INTERNAL} for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
