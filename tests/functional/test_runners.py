"""Runners: EmrRunner against moto (Stubber for cancel_steps), LocalRunner with real processes."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from chalicelib.config import settings
from chalicelib.runners import RunnerError, get_runner
from chalicelib.runners.emr import EmrRunner
from chalicelib.runners.local import LocalRunner

SESSION = {"session_id": "s-1", "generation": 3, "config": {"master": "yarn", "configs": {"spark.executor.cores": 2}}}


@pytest.fixture
def cluster(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    from chalicelib.store.aws import client

    got = client("emr").run_job_flow(
        Name="sparkgate",
        ReleaseLabel="emr-7.5.0",
        Instances={"InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True, "MasterInstanceType": "m5.xlarge"},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )
    monkeypatch.setenv("SPARKGATE_EMR_CLUSTER_ID", got["JobFlowId"])
    monkeypatch.setenv("SPARKGATE_ENGINE_URI", "s3://bucket/engine/sparkgate-engine.zip")
    monkeypatch.setenv("SPARKGATE_RUNNER", "emr")
    return str(got["JobFlowId"])


def test_get_runner_picks_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(get_runner(replace(settings(), runner="local")), LocalRunner)
    assert isinstance(get_runner(replace(settings(), runner="emr")), EmrRunner)
    with pytest.raises(RunnerError):
        get_runner(replace(settings(), runner="yarn"))


def test_emr_session_step_is_a_spark_submit_of_the_engine(cluster: str) -> None:
    from chalicelib.store.aws import client

    runner = get_runner()
    handle = runner.start_session(SESSION)
    assert handle["runner"] == "emr" and handle["cluster_id"] == cluster
    step = client("emr").describe_step(ClusterId=cluster, StepId=handle["step_id"])["Step"]
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["Config"]["Jar"] == "command-runner.jar"
    args = step["Config"]["Args"]
    assert args[:5] == ["spark-submit", "--deploy-mode", "client", "--master", "yarn"]
    assert "spark.executor.cores=2" in args
    zip_at = args.index("--py-files")
    assert args[zip_at + 1 : zip_at + 7] == [
        "s3://bucket/engine/sparkgate-engine.zip",
        "s3://bucket/engine/engine_main.py",
        "session",
        "--session-id",
        "s-1",
        "--generation",
    ]
    assert args[args.index("--env") + 1] == "AWS_DEFAULT_REGION=us-east-1"  # the stage reaches the driver
    assert runner.probe(handle) == "running"
    batch = runner.start_batch({"exec_id": "e-9"})
    batch_args = client("emr").describe_step(ClusterId=cluster, StepId=batch["step_id"])["Step"]["Config"]["Args"]
    assert batch_args[batch_args.index("batch") : batch_args.index("batch") + 3] == ["batch", "--exec-id", "e-9"]


def test_emr_probe_maps_step_states(cluster: str) -> None:
    from chalicelib.store.aws import client

    runner = EmrRunner()
    handle = {"runner": "emr", "cluster_id": cluster, "step_id": "s-XYZ"}
    emr = client("emr")
    for state, expected in [
        ("COMPLETED", "finished"),
        ("FAILED", "failed"),
        ("CANCELLED", "failed"),
        ("PENDING", "running"),
    ]:
        with Stubber(emr) as stub:
            stub.add_response(
                "describe_step",
                {"Step": {"Id": "s-XYZ", "Status": {"State": state}}},
                {"ClusterId": cluster, "StepId": "s-XYZ"},
            )
            assert runner.probe(handle) == expected
    assert runner.probe({"runner": "local", "pid": 1}) == "unknown"


def test_emr_cancel_uses_cancel_steps(cluster: str) -> None:
    from chalicelib.store.aws import client

    runner = EmrRunner()
    handle = runner.start_session(SESSION)
    with Stubber(client("emr")) as stub:
        stub.add_response(
            "cancel_steps",
            {"CancelStepsInfoList": [{"StepId": handle["step_id"], "Status": "SUBMITTED"}]},
            {"ClusterId": cluster, "StepIds": [handle["step_id"]], "StepCancellationOption": "SEND_INTERRUPT"},
        )
        runner.cancel(handle)
        stub.assert_no_pending_responses()
    with Stubber(client("emr")) as stub:
        stub.add_client_error("cancel_steps", "InvalidRequestException", "no such step")
        with pytest.raises(RunnerError):
            runner.cancel(handle)


def test_emr_without_cluster_refuses(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_ENGINE_URI", "s3://b/e.zip")
    monkeypatch.delenv("SPARKGATE_EMR_CLUSTER_ID", raising=False)
    with pytest.raises(RunnerError, match="CLUSTER_ID"):
        EmrRunner().start_session(SESSION)


def _local(tmp_path: Path, script: str, term_grace: float = 5.0) -> LocalRunner:
    cfg = replace(settings(), state_dir=tmp_path)
    return LocalRunner(cfg, command=[sys.executable, "-c", script], term_grace=term_grace)


def _wait(runner: LocalRunner, handle: dict[str, Any], state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while runner.probe(handle) != state:
        assert time.monotonic() < deadline, runner.probe(handle)
        time.sleep(0.02)


def _wait_for_output(handle: dict[str, Any], text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in Path(handle["log_path"]).read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_local_runner_starts_probes_and_cancels_a_process(tmp_path: Path) -> None:
    script = "import sys, time; print('args', sys.argv[1:], flush=True); time.sleep(60)"
    runner = _local(tmp_path, script)
    handle = runner.start_session({"session_id": "s-9", "generation": 2, "config": {"master": "local[1]"}})
    assert handle["runner"] == "local" and handle["start_time"] is not None
    assert runner.probe(handle) == "running"
    # another process (no Popen object) sees the same through /proc
    assert LocalRunner(replace(settings(), state_dir=tmp_path)).probe({**handle, "pid": handle["pid"]}) == "running"
    _wait_for_output(handle, "args")
    runner.cancel(handle)
    assert runner.probe(handle) in ("finished", "failed")
    log = Path(handle["log_path"]).read_text()
    assert "['session', '--session-id', 's-9', '--generation', '2', '--master', 'local[1]', '--doorbell']" in log
    # a recycled pid (different start time) is never taken for the driver, nor signalled
    assert runner.probe({**handle, "start_time": 1}) == "finished"


def test_local_runner_reports_exit_codes_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    ok = _local(tmp_path, "pass")
    handle = ok.start_batch({"exec_id": "e-1"})
    _wait(ok, handle, "finished")
    bad = _local(tmp_path, "raise SystemExit(3)")
    handle = bad.start_batch({"exec_id": "e-2"})
    _wait(bad, handle, "failed")
    stubborn = _local(
        tmp_path,
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(60)",
        term_grace=0.5,
    )
    handle = stubborn.start_batch({"exec_id": "e-3"})
    _wait_for_output(handle, "ready")
    stubborn.cancel(handle)
    assert stubborn.probe(handle) == "failed"  # SIGKILL after the grace period
