"""Runners: start, probe and cancel engine drivers and artefact runs (locally or as EMR steps).

:func:`runner` is the one place a runner is chosen, for every caller (sessions, batch and artefact
runs, the warm pool, a task's cancel and reconcile): the override set by :func:`use_runner` (tests,
the bench), else the runner a handle names, else the stage's configured one.
"""

from __future__ import annotations

from typing import Any

from chalicelib.config import Settings, settings
from chalicelib.runners.base import Probe, Runner, RunnerError

__all__ = ["Probe", "Runner", "RunnerError", "get_runner", "runner", "runner_for_handle", "use_runner"]

_override: Runner | None = None


def use_runner(chosen: Runner | None) -> None:
    """Use ``chosen`` instead of the configured runner everywhere (tests, the bench); None restores it."""
    global _override
    _override = chosen


def runner(handle: dict[str, Any] | None = None) -> Runner:
    """The runner for a new driver (no ``handle``) or for the driver behind ``handle``.

    The override of :func:`use_runner` wins; else a handle's own runner (:func:`runner_for_handle`),
    else the configured one (:func:`get_runner`).
    """
    if _override is not None:
        return _override
    return runner_for_handle(handle) if handle else get_runner()


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
