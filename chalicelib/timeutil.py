"""Timestamps as the specs want them: UTC ``YYYY-MM-DDTHH:MM:SSZ``."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current UTC time (second precision)."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return iso(now())


def parse_iso(value: str) -> datetime:
    """Inverse of :func:`iso`."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
