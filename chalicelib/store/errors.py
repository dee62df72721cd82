"""Helpers that turn botocore errors into the project's exception family."""

from __future__ import annotations

from botocore.exceptions import ClientError


def is_condition_failure(err: ClientError) -> bool:
    """True when a conditional write (or one in a transaction) lost its condition."""
    code = err.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = err.response.get("CancellationReasons", [])
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons
    return False


def cancelled_indexes(err: ClientError) -> list[int]:
    """Indexes of the transaction items whose condition failed."""
    reasons = err.response.get("CancellationReasons", [])
    return [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
