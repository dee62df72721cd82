"""Tasks API on moto: start, list, detail, cancel, retry, one active task per work, artefact checks.

The compute is replaced by a fake ``dispatch`` (jobs stay queued or are moved by the test), so these
tests are about the domain and its conditional writes; tests/engine/test_work_runs.py runs real Spark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import Api

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch, api: Api) -> list[dict[str, Any]]:
    """Record dispatched jobs instead of starting drivers; artefacts come from tests/fixtures."""
    from chalicelib import submit

    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(FIXTURES))
    monkeypatch.delenv("SPARKGATE_FLINK_HOME", raising=False)
    monkeypatch.setattr("chalicelib.runners.flink.packaged_home", lambda: None)  # as if apache-flink were absent
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(submit, "dispatch", seen.append)
    return seen


def _work(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": fields.pop("name", "w"),
        "description": "d",
        "type": "BATCH",
        "category": "SPARK_SQL",
        "work_directory": "count_trips.sql",
        "extra_params": ["-Dcsv=/tmp/x.csv", "-Dmin_fare=2"],
        **fields,
    }
    status, got, _ = api.call("POST", "/api/v1/works", body, token)
    assert status == 201, got
    work: dict[str, Any] = got["data"]
    return work


def _finish(exec_id: str, status: str, error: str | None = None) -> None:
    from chalicelib.store import jobs as job_store

    assert job_store.transition(exec_id, ("Scheduled",), "Running", {"started_at": "2024-01-01T00:00:00Z"})
    fields: dict[str, Any] = {"ended_at": "2024-01-01T00:01:30Z"}
    if error:
        fields["error"] = error
    assert job_store.transition(exec_id, ("Running",), status, fields)


def test_start_list_detail(api: Api, dispatched: list[dict[str, Any]]) -> None:
    token = api.new_user("alice")
    work = _work(api, token)
    status, got, _ = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)
    assert status == 201, got
    task = got["data"]
    assert task["status"] == 2 and task["trigger"] == "manual" and task["attempt"] == 1
    assert task["exec_id"] and task["job_task_id"] >= 1 and task["retry_of"] is None
    # the job runs the file's SQL with ${...} substituted
    assert (
        len(dispatched) == 1
        and "path '/tmp/x.csv'" in dispatched[0]["code"]
        and "2 AS min_fare" in dispatched[0]["code"]
    )
    assert dispatched[0]["mode"] == "batch" and dispatched[0]["run_type"] == "sql"

    _finish(task["exec_id"], "Succeed")
    status, got, headers = api.call("GET", f"/api/v1/works/{work['work_id']}/tasks?limit=10&offset=0", None, token)
    assert status == 200 and headers["X-Total-Count"] == "1"
    assert got["data"] == [
        {
            "task_id": task["task_id"],
            "work_id": work["work_id"],
            "status": 0,
            "started_at": "2024-01-01T00:00:00Z",
            "ended_at": "2024-01-01T00:01:30Z",
            "run_time": 90,
            "error": None,
            "exec_id": task["exec_id"],
            "job_task_id": task["job_task_id"],
        }
    ]
    # the work is free again: a second run starts, and the list is newest first
    status, got2, _ = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)
    assert status == 201, got2
    status, got, _ = api.call("GET", f"/api/v1/works/{work['work_id']}/tasks?limit=1", None, token)
    assert [t["task_id"] for t in got["data"]] == [got2["data"]["task_id"]]
    # owner isolation
    bob = api.new_user("bob")
    assert api.call("GET", f"/api/v1/tasks/{task['task_id']}", None, bob)[0] == 404
    assert api.call("POST", f"/api/v1/tasks/{task['task_id']}/cancel", None, bob)[0] == 404
    assert api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, bob)[0] == 404


def test_idempotency_key_returns_same_task(api: Api, dispatched: list[dict[str, Any]]) -> None:
    token = api.new_user("alice")
    work = _work(api, token)
    url = f"/api/v1/works/{work['work_id']}/tasks"
    first = api.call("POST", url, None, token, headers={"Idempotency-Key": "k1"})
    again = api.call("POST", url, None, token, headers={"Idempotency-Key": "k1"})
    assert first[0] == again[0] == 201
    assert first[1]["data"]["task_id"] == again[1]["data"]["task_id"]
    assert len(dispatched) == 1


def test_streaming_one_active_task_cancel_and_delete(api: Api, dispatched: list[dict[str, Any]]) -> None:
    token = api.new_user("alice")
    work = _work(api, token, type="STREAMING")
    url = f"/api/v1/works/{work['work_id']}/tasks"
    # Two starts racing: the second loses the conditional write on active_task_id. (moto's in-process
    # backend is not thread-safe, so the race is played out in order here; the condition is what decides.)
    results = [api.call("POST", url, None, token), api.call("POST", url, None, token)]
    assert [r[0] for r in results] == [201, 409], results
    assert results[1][1]["code"] == 409102
    winner = next(r[1]["data"] for r in results if r[0] == 201)
    assert api.call("GET", url, None, token)[2]["X-Total-Count"] == "1"
    # a work with an active task cannot be deleted
    status, got, _ = api.call("DELETE", f"/api/v1/works/{work['work_id']}", None, token)
    assert status == 409, got
    # the running streaming task is cancelled (the compute stop is requested) ...
    from chalicelib.store import jobs as job_store

    job_store.transition(winner["exec_id"], ("Scheduled",), "Running", {"started_at": "2024-01-01T00:00:00Z"})
    status, got, _ = api.call("POST", f"/api/v1/tasks/{winner['task_id']}/cancel", None, token)
    assert status == 200 and got["data"]["status"] == 4 and got["data"]["ended_at"]
    assert job_store.get_job(winner["exec_id"])["cancel_requested"] is True  # type: ignore[index]
    again = api.call("POST", f"/api/v1/tasks/{winner['task_id']}/cancel", None, token)
    assert again[0] == 200 and again[1]["data"]["status"] == 4
    # ... which frees the work: a new task may start, and the work may be deleted once that one ends
    status, got, _ = api.call("POST", url, None, token)
    assert status == 201, got
    api.call("POST", f"/api/v1/tasks/{got['data']['task_id']}/cancel", None, token)
    assert api.call("DELETE", f"/api/v1/works/{work['work_id']}", None, token)[0] == 200
    # deleted works cannot start tasks, but keep their list
    assert api.call("POST", url, None, token)[0] == 404
    assert api.call("GET", url, None, token)[2]["X-Total-Count"] == "2"


def test_failed_task_keeps_error_and_retries(api: Api, dispatched: list[dict[str, Any]]) -> None:
    token = api.new_user("alice")
    work = _work(api, token)
    task = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)[1]["data"]
    status, got, _ = api.call("POST", f"/api/v1/tasks/{task['task_id']}/retry", None, token)
    assert status == 409, got  # still queued: not retryable
    _finish(task["exec_id"], "Failed", "AnalysisException: boom")
    detail = api.call("GET", f"/api/v1/tasks/{task['task_id']}", None, token)[1]["data"]
    assert detail["status"] == 3 and detail["error"] == "AnalysisException: boom" and detail["run_time"] == 90
    status, got, _ = api.call("POST", f"/api/v1/tasks/{task['task_id']}/retry", None, token)
    assert status == 201, got
    retry = got["data"]
    assert retry["trigger"] == "retry" and retry["attempt"] == 2 and retry["retry_of"] == task["task_id"]
    assert retry["task_id"] != task["task_id"] and retry["status"] == 2


def test_runs_that_cannot_start_fail_at_once(
    api: Api, dispatched: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "fake.jar").write_bytes(b"PK")
    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", f"{FIXTURES}:{tmp_path}")
    token = api.new_user("alice")
    cases = {
        "flink": ({"category": "FLINK_SQL"}, "SPARKGATE_FLINK_HOME"),
        "wrongext": ({"category": "PYSPARK"}, "runs a .py file"),
        "nomain": ({"category": "SPARK_JAR", "work_directory": "fake.jar"}, "main_class_name"),
        "undefined": ({"extra_params": ["-Dcsv=x"]}, "min_fare"),
        "java": (
            {"category": "SPARK_JAR", "work_directory": "fake.jar", "main_class_name": "Hello", "java_version": "8"},
            "java_version 8",
        ),
    }
    for name, (fields, needle) in cases.items():
        work = _work(api, token, name=name, **fields)
        status, got, _ = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)
        assert status == 201, got
        assert got["data"]["status"] == 3 and needle in got["data"]["error"], (name, got["data"]["error"])
        # a failed start does not keep the work busy
        assert api.call("DELETE", f"/api/v1/works/{work['work_id']}", None, token)[0] == 200
    assert dispatched == []


def test_python_argv_and_s3_artefact(api: Api, dispatched: list[dict[str, Any]]) -> None:
    from chalicelib.config import settings
    from chalicelib.store.aws import client
    from chalicelib.tokens import verify_token

    token = api.new_user("alice")
    key = f"uploads/{verify_token(token).user_id}/job.py"  # an artefact in the bucket is one of the owner's uploads
    client("s3").put_object(Bucket=settings().bucket_name, Key=key, Body=b"print(sys.argv)\n")
    work = _work(
        api,
        token,
        category="PYSPARK",
        work_directory=f"s3://{settings().bucket_name}/{key}",
        extra_params=["a", "-Db=c"],
    )
    status, got, _ = api.call("POST", f"/api/v1/works/{work['work_id']}/tasks", None, token)
    assert status == 201 and got["data"]["status"] == 2, got
    code = dispatched[0]["code"]
    assert dispatched[0]["run_type"] == "python" and code.endswith("print(sys.argv)\n")
    namespace: dict[str, Any] = {}
    exec(code.replace("print(sys.argv)", "import sys\nresult = list(sys.argv)"), namespace)
    assert namespace["result"] == [f"s3://{settings().bucket_name}/{key}", "a", "-Db=c"]


@pytest.fixture
def cluster(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A moto EMR cluster the stage is configured to run on (``SPARKGATE_RUNNER=emr``)."""
    from chalicelib.store.aws import client

    cluster_id: str = client("emr").run_job_flow(
        Name="c",
        ReleaseLabel="emr-7.0.0",
        Instances={"InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True, "MasterInstanceType": "m5.xlarge"},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    monkeypatch.setenv("SPARKGATE_RUNNER", "emr")
    monkeypatch.setenv("SPARKGATE_EMR_CLUSTER_ID", cluster_id)
    return cluster_id


def test_emr_flink_and_jar_steps(cluster: str) -> None:
    from chalicelib.runners.jar import start_artefact_run
    from chalicelib.store import jobs as job_store
    from chalicelib.store.aws import client

    emr = client("emr")
    job = {
        "exec_id": "e1",
        "task_id": 1,
        "owner": "u",
        "status": "Scheduled",
        "code": "-",
        "run_type": "flink",
        "artefact_run": {
            "engine": "flink",
            "artefact": "s3://b/app.jar",
            "main_class": "com.x.Main",
            "args": ["--p", "1"],
            "sql": False,
        },
    }
    job_store.insert_job(job)
    handle = start_artefact_run(job)
    assert handle["runner"] == "emr" and job_store.get_job("e1")["runner_handle"] == handle  # type: ignore[index]
    step = emr.describe_step(ClusterId=cluster, StepId=handle["step_id"])["Step"]
    assert step["Config"]["Jar"] == "command-runner.jar"
    assert step["Config"]["Args"] == [
        "flink",
        "run",
        "-m",
        "yarn-cluster",
        "-c",
        "com.x.Main",
        "s3://b/app.jar",
        "--p",
        "1",
    ]


def test_emr_artefact_runs_follow_their_step(cluster: str) -> None:
    """On EMR nothing in the step writes to the table: the tick's sweep moves the Job from the step's state."""
    from botocore.stub import Stubber

    from chalicelib import tasks, works
    from chalicelib.config import settings
    from chalicelib.store import jobs as job_store
    from chalicelib.store.aws import client
    from chalicelib.tokens import Principal

    emr = client("emr")
    client("s3").put_object(Bucket=settings().bucket_name, Key="uploads/u-emr/app.jar", Body=b"PK")
    owner = Principal("u-emr", "emr")
    body = {
        "name": "jar",
        "description": "d",
        "type": "BATCH",
        "category": "SPARK_JAR",
        "work_directory": f"s3://{settings().bucket_name}/uploads/u-emr/app.jar",
        "main_class_name": "com.x.Main",
    }
    work_id = works.create_work(owner, body)["work_id"]

    def run(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
        task = tasks.start_task(owner, works.get_owned_work(owner, work_id))
        handle = job_store.get_job(task["exec_id"])["runner_handle"]  # type: ignore[index]
        assert handle["runner"] == "emr", handle
        seen = []
        with Stubber(emr) as stub:
            for state in states:
                stub.add_response(
                    "describe_step",
                    {"Step": {"Id": handle["step_id"], "Status": state}},
                    {"ClusterId": cluster, "StepId": handle["step_id"]},
                )
                tasks.sweep_active()
                seen.append(tasks.owned_task(owner, task["task_id"]))
            stub.assert_no_pending_responses()
        return seen

    failing = run(
        [
            {"State": "PENDING"},
            {"State": "RUNNING"},
            {"State": "FAILED", "FailureDetails": {"Reason": "Unknown error", "LogFile": "s3://logs/step/stderr.gz"}},
        ]
    )
    assert [t["status"] for t in failing] == [2, 1, 3]
    assert "Unknown error" in failing[-1]["error"] and "s3://logs/step/stderr.gz" in failing[-1]["error"]
    assert failing[-1]["ended_at"] and failing[-1]["run_time"] is not None

    succeeding = run([{"State": "RUNNING"}, {"State": "COMPLETED"}])  # the failure freed the work
    assert [t["status"] for t in succeeding] == [1, 0]
    assert succeeding[-1]["error"] is None
