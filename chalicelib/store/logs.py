"""A Job's log: chunks of lines (``pk = JOB#<exec_id>``, ``sk = LOG#<first_line:09d>``,
``lines = [{"l": level, "t": text}, ...]``), each written once."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.store.aws import put_new, table
from chalicelib.store.item_keys import LOG_PREFIX, job_key, log_key


def append_log(exec_id: str, first_line: int, lines: list[tuple[str, str]]) -> bool:
    """Store log lines ``first_line ..`` as one chunk; False if that chunk already exists."""
    return put_new(
        {
            **log_key(exec_id, first_line),
            "exec_id": exec_id,
            "first": first_line,
            "lines": [{"l": level, "t": text} for level, text in lines],
        }
    )


def read_log(exec_id: str, from_line: int = 0, size: int | None = None) -> list[tuple[str, str]]:
    """Log lines from line ``from_line`` (0-based), at most ``size`` of them, in order."""
    out: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": Key("pk").eq(job_key(exec_id)["pk"]) & Key("sk").begins_with(LOG_PREFIX),
        "ConsistentRead": True,
    }
    while True:
        page = table().query(**kwargs)
        for chunk in page.get("Items", []):
            first = int(chunk["first"])
            for offset, line in enumerate(chunk["lines"]):
                if first + offset >= from_line:
                    out.append((str(line["l"]), str(line["t"])))
        if "LastEvaluatedKey" not in page or (size is not None and len(out) >= size):
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return out if size is None else out[:size]
