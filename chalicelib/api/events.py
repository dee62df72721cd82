"""Scheduled handlers: the per-minute tick (heartbeats of drivers; due works are added to ``schedule.tick``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib import schedule

blueprint = Blueprint(__name__)


@blueprint.schedule(Rate(1, unit=Rate.MINUTES))  # type: ignore[untyped-decorator]
def on_schedule(event: Any) -> dict[str, Any]:
    """Every minute: run the schedule tick."""
    return schedule.tick()
