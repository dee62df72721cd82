"""Runners: start, probe and cancel engine drivers (locally or as EMR steps)."""

from __future__ import annotations

from chalicelib.config import Settings, settings
from chalicelib.runners.base import Probe, Runner, RunnerError

__all__ = ["Probe", "Runner", "RunnerError", "get_runner", "runner_for_handle"]


def get_runner(cfg: Settings | None = None) -> Runner:
    """The runner the stage is configured for (``settings.runner``: ``local`` or ``emr``)."""
    cfg = cfg or settings()
    if cfg.runner == "local":
        from chalicelib.runners.local import LocalRunner

        return LocalRunner(cfg)
    if cfg.runner == "emr":
        from chalicelib.runners.emr import EmrRunner

        return EmrRunner(cfg)
    raise RunnerError(f"unknown runner {cfg.runner!r}; use 'local' or 'emr'")


def runner_for_handle(handle: dict[str, object], cfg: Settings | None = None) -> Runner:
    """The runner that understands ``handle`` (handles name their runner)."""
    cfg = cfg or settings()
    name = handle.get("runner")
    if name == "local":
        from chalicelib.runners.local import LocalRunner

        return LocalRunner(cfg)
    if name == "emr":
        from chalicelib.runners.emr import EmrRunner

        return EmrRunner(cfg)
    return get_runner(cfg)
