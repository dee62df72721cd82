"""EmrRunner: each driver is an EMR step (``command-runner.jar spark-submit ...``) on the configured cluster.

The engine ships as a zip (``settings.engine_uri``, e.g. ``s3://bucket/engine/sparkgate-engine.zip``)
passed with ``--py-files``; the entry script is ``engine_main.py`` next to it (a copy of
``chalicelib/engine/emr_entry.py``). The stage's table/bucket/region reach the driver as
``--env KEY=VALUE`` engine arguments (client deploy mode: the driver runs on the primary node).
EMR is compute, not a data service, so this module calls ``chalicelib.store.aws.client`` itself.
"""

from __future__ import annotations

import os
import time
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import Settings, settings
from chalicelib.runners.base import Probe, Runner, RunnerError, RunState, batch_args, session_args
from chalicelib.store.aws import client

ENTRY_SCRIPT = "engine_main.py"
_RUNNING = ("PENDING", "RUNNING", "CANCEL_PENDING")
_FAILED = ("CANCELLED", "FAILED", "INTERRUPTED")
_OUTCOMES = {"COMPLETED": "Succeed", "FAILED": "Failed", "CANCELLED": "Cancelled", "INTERRUPTED": "Cancelled"}
_FORWARDED_ENV = ("SPARKGATE_STAGE", "SPARKGATE_TABLE", "SPARKGATE_BUCKET", "AWS_REGION", "AWS_DEFAULT_REGION")


class EmrRunner(Runner):
    """Runs drivers as steps of an EMR cluster."""

    name = "emr"

    def __init__(self, cfg: Settings | None = None) -> None:
        self.cfg = cfg or settings()

    def _entry_uri(self) -> str:
        if not self.cfg.engine_uri:
            raise RunnerError("SPARKGATE_ENGINE_URI is not set (the engine zip on S3)")
        return self.cfg.engine_uri.rsplit("/", 1)[0] + "/" + ENTRY_SCRIPT

    def spark_submit_args(self, engine_args: list[str], config: dict[str, Any]) -> list[str]:
        """The ``command-runner.jar`` arguments: ``spark-submit --deploy-mode client ... <entry> <engine args>``."""
        args = ["spark-submit", "--deploy-mode", "client", "--master", str(config.get("master") or "yarn")]
        for key, value in sorted((config.get("configs") or {}).items()):
            args += ["--conf", f"{key}={value}"]
        for key, value in sorted((config.get("envs") or {}).items()):
            args += ["--conf", f"spark.executorEnv.{key}={value}"]
        args += ["--py-files", self.cfg.engine_uri, self._entry_uri(), *engine_args]
        env = {k: os.environ[k] for k in _FORWARDED_ENV if os.environ.get(k)}
        env.update({str(k): str(v) for k, v in (config.get("envs") or {}).items()})
        for key, value in sorted(env.items()):
            args += ["--env", f"{key}={value}"]
        return args

    def _add_step(self, name: str, engine_args: list[str], config: dict[str, Any]) -> dict[str, Any]:
        if not self.cfg.emr_cluster_id:
            raise RunnerError("SPARKGATE_EMR_CLUSTER_ID is not set")
        step = {
            "Name": name[:256],
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": self.spark_submit_args(engine_args, config)},
        }
        try:
            got = client("emr").add_job_flow_steps(JobFlowId=self.cfg.emr_cluster_id, Steps=[step])
        except ClientError as err:
            raise RunnerError(f"EMR refused the step: {err}") from err
        return {
            "runner": self.name,
            "cluster_id": self.cfg.emr_cluster_id,
            "step_id": got["StepIds"][0],
            "started_at": time.time(),
        }

    def start_session(self, session: dict[str, Any]) -> dict[str, Any]:
        """Add a session-driver step for ``session``."""
        name = f"sparkgate session {session['session_id']} g{int(session['generation'])}"
        return self._add_step(name, session_args(session), dict(session.get("config") or {}))

    def start_batch(self, job: dict[str, Any]) -> dict[str, Any]:
        """Add a batch-driver step for ``job``."""
        config = dict(job.get("session_config") or {})
        return self._add_step(f"sparkgate batch {job['exec_id']}", batch_args(job), config)

    def probe(self, handle: dict[str, Any]) -> Probe:
        """The step's state by ``describe_step``."""
        return self.state(handle).probe

    def state(self, handle: dict[str, Any]) -> RunState:
        """The step by ``describe_step``: PENDING is not started yet; a final state is the run's own verdict."""
        if handle.get("runner") != self.name:
            return RunState("unknown", started=False)
        try:
            step = client("emr").describe_step(ClusterId=handle["cluster_id"], StepId=handle["step_id"])["Step"]
        except ClientError:
            return RunState("unknown", started=False)
        status = step["Status"]
        state = status["State"]
        if state in _RUNNING:
            return RunState("running", started=state != "PENDING")
        failure = status.get("FailureDetails") or {}
        reason = "; ".join(str(failure[k]) for k in ("Reason", "Message", "LogFile") if failure.get(k)) or None
        if state in _OUTCOMES:
            probe: Probe = "finished" if state == "COMPLETED" else "failed"
            return RunState(probe, started=True, outcome=_OUTCOMES[state], reason=reason or f"EMR step {state}")
        return RunState("unknown", started=False)

    def cancel(self, handle: dict[str, Any]) -> None:
        """``cancel_steps`` with SEND_INTERRUPT (a pending step is removed, a running one interrupted)."""
        if handle.get("runner") != self.name:
            return
        try:
            client("emr").cancel_steps(
                ClusterId=handle["cluster_id"], StepIds=[handle["step_id"]], StepCancellationOption="SEND_INTERRUPT"
            )
        except ClientError as err:
            raise RunnerError(f"EMR could not cancel step {handle['step_id']}: {err}") from err
