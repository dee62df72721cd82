"""Stored items as plain Python records: the one decoder every store module (and the stream handler) uses.

Pure Python (no boto3), so code outside the store that receives raw images (``api.stream``) can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

#: The table's key and index attributes: how an item is found, not part of the record it holds.
INTERNAL_KEYS = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"})


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-ready Python values.

    Decimals (also nested) become ints when integral, floats otherwise; sets become sorted lists;
    tuples lists; bytes their hex.
    """
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def decode(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored item as its record: the key and index attributes dropped, every value :func:`plain`."""
    return {k: plain(v) for k, v in item.items() if k not in INTERNAL_KEYS}
