"""The Runner interface: how an engine driver process is started, probed and cancelled.

A handle is a small JSON-able dict the runner understands (stored on the session and job items),
so any process (a Lambda handler, the schedule tick, the local stack) can probe or cancel a
driver that another process started.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.records import JobRecord, SessionRecord

Probe = Literal["running", "finished", "failed", "unknown"]
PROBES: tuple[Probe, ...] = ("running", "finished", "failed", "unknown")


@dataclass(frozen=True)
class RunState:
    """What a runner knows about one run: its probe, whether it has begun, and its own verdict."""

    probe: Probe
    started: bool
    #: ``Succeed`` / ``Failed`` / ``Cancelled`` when the runner itself knows how the run ended (an EMR
    #: step's final state); None when only the process's end is known (its outcome is the Job's to record).
    outcome: str | None = None
    reason: str | None = None


class RunnerError(RuntimeError):
    """A driver could not be started (bad configuration, the cluster refused the step...)."""


class Runner(ABC):
    """Starts engine drivers (and artefact runs) somewhere (this machine, an EMR cluster).

    Callers get one through ``chalicelib.runners.runner``, never by constructing one themselves."""

    #: Name stored in every handle (``handle["runner"]``).
    name: str = "base"

    @abstractmethod
    def start_session(self, session: SessionRecord) -> dict[str, Any]:
        """Start a session-mode driver for ``session`` (a session item); answers its handle."""

    @abstractmethod
    def start_batch(self, job: JobRecord) -> dict[str, Any]:
        """Start a batch-mode driver that runs ``job`` and exits; answers its handle."""

    def start_pool(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Start a warm pool driver for ``entry`` (``chalicelib.pool``); runners without a pool refuse."""
        raise RunnerError(f"the {self.name} runner keeps no warm pool")

    def start_artefact(self, job: JobRecord) -> dict[str, Any]:
        """Start ``job``'s artefact run (SPARK_JAR, FLINK_*: ``job["artefact_run"]``, see ``runners.jar``);
        answers its handle. Runners that run no artefacts refuse."""
        raise RunnerError(f"the {self.name} runner runs no artefacts")

    def wake(self, handle: dict[str, Any]) -> None:  # noqa: B027 - a hint most runners cannot give
        """Tell the driver behind ``handle`` to look at the store now (a hint; drivers also poll)."""

    @abstractmethod
    def probe(self, handle: dict[str, Any]) -> Probe:
        """Where the driver behind ``handle`` is: running, finished, failed, or unknown."""

    def state(self, handle: dict[str, Any]) -> RunState:
        """The run behind ``handle`` in more detail than :meth:`probe` (runners that know more override it)."""
        probe = self.probe(handle)
        return RunState(probe=probe, started=probe != "unknown")

    @abstractmethod
    def cancel(self, handle: dict[str, Any]) -> None:
        """Stop the driver behind ``handle`` (idempotent; a finished driver is left alone)."""


def session_args(session: SessionRecord) -> list[str]:
    """The engine's command-line arguments for a session driver."""
    return ["session", "--session-id", str(session["session_id"]), "--generation", str(int(session["generation"]))]


def pool_args(entry: dict[str, Any]) -> list[str]:
    """The engine's command-line arguments for a warm pool driver."""
    return ["pool", "--pool-id", str(entry["pool_id"])]


def batch_args(job: JobRecord) -> list[str]:
    """The engine's command-line arguments for a batch driver."""
    return ["batch", "--exec-id", str(job["exec_id"])]
