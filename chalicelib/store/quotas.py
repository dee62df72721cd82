"""Per-user quota reservations: one item per user holding what counts against their caps.

Item: ``pk = QUOTA#<user_id>``, ``sk = QUOTA``; maps ``jobs`` (exec_id -> epoch it was reserved)
and ``sessions`` (session_id -> epoch). A reservation is one ``UpdateItem`` that sets a map entry on
the condition that the entry is already there or the map holds fewer than ``cap`` entries, so two
writers can never both take the last slot (DynamoDB serialises conditional writes on one item).
Releasing an entry is conditional on the epoch the releaser saw, so an entry reserved again
meanwhile stays. What still counts (a Job not final, a session driver alive) is decided by
``chalicelib.quotas``; this module only reads and writes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError

from chalicelib.config import settings
from chalicelib.store.aws import table
from chalicelib.store.errors import is_condition_failure

Kind = Literal["jobs", "sessions"]


def quota_key(user_id: str) -> dict[str, str]:
    """The primary key of a user's quota item."""
    return {"pk": f"QUOTA#{user_id}", "sk": "QUOTA"}


def holdings(user_id: str, kind: Kind) -> dict[str, float]:
    """The user's reservations of ``kind``: member -> epoch reserved (empty when none)."""
    item = table().get_item(Key=quota_key(user_id), ConsistentRead=True).get("Item") or {}
    held = item.get(kind) or {}
    return {str(k): float(v) for k, v in held.items()}


def _ensure_map(user_id: str, kind: Kind) -> None:
    table().update_item(
        Key=quota_key(user_id),
        UpdateExpression="SET #m = if_not_exists(#m, :empty)",
        ExpressionAttributeNames={"#m": kind},
        ExpressionAttributeValues={":empty": {}},
    )


def reserve(user_id: str, kind: Kind, member: str, cap: int, now: float) -> dict[str, float] | None:
    """Reserve ``member`` (or renew it, when already held) unless ``cap`` entries are held.

    Answers None when reserved; else the current holdings (for the caller to find ended ones).
    """
    for _ in range(2):
        try:
            table().update_item(
                Key=quota_key(user_id),
                UpdateExpression="SET #m.#id = :now",
                ConditionExpression="attribute_exists(#m) AND (attribute_exists(#m.#id) OR size(#m) < :cap)",
                ExpressionAttributeNames={"#m": kind, "#id": member},
                ExpressionAttributeValues={":now": Decimal(str(round(now, 3))), ":cap": cap},
            )
            return None
        except ClientError as err:
            if not is_condition_failure(err):
                raise
        held = holdings(user_id, kind)
        if held:
            return held
        _ensure_map(user_id, kind)  # first reservation of this kind: make the map, then try again
    return holdings(user_id, kind)


def release(user_id: str, kind: Kind, seen: dict[str, float]) -> None:
    """Drop each entry of ``seen`` still holding the epoch it was seen with."""
    for member, epoch in seen.items():
        try:
            table().update_item(
                Key=quota_key(user_id),
                UpdateExpression="REMOVE #m.#id",
                ConditionExpression="#m.#id = :seen",
                ExpressionAttributeNames={"#m": kind, "#id": member},
                ExpressionAttributeValues={":seen": Decimal(str(round(epoch, 3)))},
            )
        except ClientError as err:
            if not is_condition_failure(err):
                raise


def items_by_pk(pks: list[str], sk: str, attributes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``attributes`` of the items ``(pk, sk)`` for each pk in ``pks`` (BatchGetItem, consistent);
    pk -> attributes, missing items left out."""
    found: dict[str, dict[str, Any]] = {}
    names = {f"#a{i}": name for i, name in enumerate(("pk", *attributes))}
    name = settings().table_name
    dynamo = table().meta.client  # the resource's client: plain Python values in and out
    for start in range(0, len(pks), 100):
        request: dict[str, Any] = {
            name: {
                "Keys": [{"pk": pk, "sk": sk} for pk in pks[start : start + 100]],
                "ProjectionExpression": ", ".join(names),
                "ExpressionAttributeNames": names,
                "ConsistentRead": True,
            }
        }
        for _ in range(5):
            got = dynamo.batch_get_item(RequestItems=request)
            for item in got.get("Responses", {}).get(name, []):
                found[str(item["pk"])] = item
            request = got.get("UnprocessedKeys") or {}
            if not request:
                break
    return found
