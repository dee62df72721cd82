"""Works run as tasks on a real local Spark: every local category to Succeed, failure, retry, streaming cancel.

One moto server (reachable from the driver processes) serves the whole module; each test uses its
own user so works and tasks never collide. Every run starts a real batch driver (a JVM of its own).
"""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import NYC_CSV, planted_secrets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


pytestmark = pytest.mark.usefixtures("jdk")

SQL_JOB = """\
-- SPARK_SQL work: a view over the CSV named by -Dcsv=..., then a count and a group-by
CREATE OR REPLACE TEMPORARY VIEW trips USING csv OPTIONS (path '${csv}', header 'true');
SELECT COUNT(*) AS trips FROM trips;
SELECT VendorID AS vendor, COUNT(*) AS trips FROM trips GROUP BY VendorID ORDER BY vendor;
"""

PYSPARK_JOB = """\
import sys

if "fail" in sys.argv[2:]:
    raise RuntimeError("the job was asked to fail")
rows = spark.read.option("header", "true").csv(sys.argv[1]).count()
print(f"pyspark argv={sys.argv[1:]} rows={rows}")
"""

STREAMING_JOB = """\
query = (
    spark.readStream.format("rate").option("rowsPerSecond", 5).load()
    .writeStream.format("memory").queryName("ticks").trigger(processingTime="1 second").start()
)
print("stream started", flush=True)
query.awaitTermination()
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A moto server (reachable from driver processes) with the table and bucket; answers the work root."""
    from moto.server import ThreadedMotoServer

    from chalicelib.local.aws import serialize_dynamodb

    root = tmp_path_factory.mktemp("work_runs")
    serialize_dynamodb()  # conditional writes atomic, as in DynamoDB (the concurrent-start test relies on it)
    server = ThreadedMotoServer(port=0)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        mp.setenv("SPARKGATE_STATE_DIR", str(root / "state"))
        mp.setenv("SPARKGATE_WORK_ROOTS", str(root))
        mp.setenv("SPARKGATE_SPARK_MASTER", "local[1]")
        from chalicelib.config import settings
        from chalicelib.store.aws import reset
        from chalicelib.store.provision import ensure_table_and_bucket

        reset()
        ensure_table_and_bucket(settings())
        classes = root / "classes"
        subprocess.run(["javac", "-d", str(classes), str(FIXTURES / "jar" / "Hello.java")], check=True)
        subprocess.run(["jar", "cf", str(root / "hello.jar"), "-C", str(classes), "."], check=True)
        (root / "trips.sql").write_text(SQL_JOB)
        (root / "job.py").write_text(PYSPARK_JOB)
        (root / "stream.py").write_text(STREAMING_JOB)
        yield root
        reset()
    server.stop()


def _wait(
    principal: Any, task_id: str, timeout: float = 180, statuses: tuple[int, ...] = (0, 3, 4, 5)
) -> dict[str, Any]:
    from chalicelib import tasks

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = tasks.owned_task(principal, task_id)
        if task["status"] in statuses:
            return task
        time.sleep(0.25)
    raise AssertionError(f"task {task_id} did not reach {statuses}: {tasks.owned_task(principal, task_id)}")


def _log(exec_id: str) -> str:
    from chalicelib.store import logs as log_store

    return "\n".join(text for _, text in log_store.read_log(exec_id))


def _result_sets(owner: str, exec_id: str) -> list[dict[str, Any]]:
    import json

    from chalicelib.store import results as result_store

    return [json.loads(result_store.get_object(key)) for key in result_store.list_result_keys(owner, exec_id)]


def _work(owner: Any, **fields: Any) -> dict[str, Any]:
    from chalicelib import works

    body = {"description": "d", "type": "BATCH", **fields}
    created = works.create_work(owner, body)
    return works.get_owned_work(owner, created["work_id"])


def _process_gone(handle: dict[str, Any], timeout: float = 15) -> bool:
    """True once the driver's whole process group (the Python driver and its JVM) has exited."""
    from chalicelib.runners.local import LocalRunner

    runner = LocalRunner()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner.probe(handle)  # reaps the child if it is ours, so a zombie does not count as alive
        try:
            os.killpg(int(handle["pid"]), 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _trips_by_vendor() -> Counter[str]:
    with open(NYC_CSV, newline="") as handle:
        return Counter(row["VendorID"] for row in csv.DictReader(handle))


def _succeeded(task: dict[str, Any]) -> None:
    assert task["status"] == 0, task
    assert task["run_time"] is not None and task["run_time"] >= 0
    assert task["started_at"] and task["ended_at"] and task["error"] is None


def test_spark_sql_work_counts_nyc_trips(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.store import jobs as job_store
    from chalicelib.tokens import Principal

    owner = Principal("u-sql", "sql")
    work = _work(
        owner, name="trips", category="SPARK_SQL", work_directory="trips.sql", extra_params=[f"-Dcsv={NYC_CSV}"]
    )
    task = tasks.start_task(owner, work)
    done = _wait(owner, task["task_id"])
    _succeeded(done)

    by_vendor = _trips_by_vendor()
    job = job_store.get_job(done["exec_id"])
    assert job is not None and job["result_sets"] == 2
    assert job["result_preview"]["rows"] == [[sum(by_vendor.values())]]
    count, grouped = _result_sets(owner.user_id, done["exec_id"])
    assert count["rows"] == [[sum(by_vendor.values())]]
    assert [c["columnName"] for c in grouped["metadata"]] == ["vendor", "trips"]
    assert {vendor: n for vendor, n in grouped["rows"]} == dict(by_vendor)
    assert "statement 3/3" in _log(done["exec_id"])


def test_pyspark_work_prints_with_extra_params_as_argv(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.tokens import Principal

    owner = Principal("u-py", "py")
    work = _work(owner, name="py", category="PYSPARK", work_directory="job.py", extra_params=[str(NYC_CSV), "tag=1"])
    done = _wait(owner, tasks.start_task(owner, work)["task_id"])
    _succeeded(done)
    rows = sum(_trips_by_vendor().values())
    argv = [str(stack / "job.py"), str(NYC_CSV), "tag=1"]
    assert f"pyspark argv={argv[1:]!r} rows={rows}" in _log(done["exec_id"])


def test_failed_pyspark_task_keeps_error_and_retry_is_a_new_linked_task(stack: Path) -> None:
    from chalicelib import tasks, works
    from chalicelib.tokens import Principal

    owner = Principal("u-retry", "retry")
    work = _work(owner, name="flaky", category="PYSPARK", work_directory="job.py", extra_params=[str(NYC_CSV), "fail"])
    failing = tasks.start_task(owner, work)
    failed = _wait(owner, failing["task_id"])
    assert failed["status"] == 3 and failed["run_time"] is not None and failed["ended_at"]
    assert "RuntimeError: the job was asked to fail" in failed["error"]
    assert "the job was asked to fail" in _log(failed["exec_id"])

    # the cause is fixed in the work, then the failed task is retried: a new task, linked, attempt 2
    works.update_work(owner, work["work_id"], {"extra_params": [str(NYC_CSV), "ok"]}, None)
    retry = tasks.retry_task(owner, failing["task_id"])
    assert retry["task_id"] != failing["task_id"]
    assert (retry["trigger"], retry["attempt"], retry["retry_of"]) == ("retry", 2, failing["task_id"])
    assert retry["exec_id"] != failed["exec_id"]
    _succeeded(_wait(owner, retry["task_id"]))
    listed = tasks.list_tasks(owner, work["work_id"], {})
    assert [t["task_id"] for t in listed.items] == [retry["task_id"], failing["task_id"]]
    assert [t["status"] for t in listed.items] == [0, 3]


def test_spark_jar_succeeds_then_fails_and_retries(stack: Path) -> None:
    from chalicelib import tasks, works
    from chalicelib.tokens import Principal

    owner = Principal("u1", "alice")
    work = _work(
        owner,
        name="jar",
        category="SPARK_JAR",
        work_directory="hello.jar",
        main_class_name="Hello",
        extra_params=["a", "b"],
    )
    task = tasks.start_task(owner, work)
    done = _wait(owner, task["task_id"])
    _succeeded(done)
    assert "hello from jar a,b" in _log(done["exec_id"])

    works.update_work(owner, work["work_id"], {"extra_params": ["fail"]}, None)
    failing = tasks.start_task(owner, works.get_owned_work(owner, work["work_id"]))
    failed = _wait(owner, failing["task_id"])
    assert failed["status"] == 3 and "exited with code 3" in failed["error"]
    retry = tasks.retry_task(owner, failing["task_id"])
    assert retry["retry_of"] == failing["task_id"] and retry["attempt"] == 2
    assert _wait(owner, retry["task_id"])["status"] == 3


def test_spark_jar_runs_in_the_owners_sandbox_without_credentials(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A jar's main is user code: it runs under the owner's uid, reads neither another user's files nor
    the platform state, and gets no credential in its environment (spark-submit ran as root before)."""
    from chalicelib import tasks
    from chalicelib.engine import sandbox
    from chalicelib.runners.spark_jar import run_tmp
    from chalicelib.tokens import Principal

    owner, other = Principal("u-jar-box", "jarbox"), Principal("u-jar-other", "jarother")
    secret, state_file = planted_secrets(other.user_id)
    probes = [f"probe:{secret}", f"probe:{state_file}", "probe:/etc/shadow", f"probe:{NYC_CSV}"]
    names = ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "SPARKGATE_JWT_SECRET"]
    for name in names:
        monkeypatch.setenv(name, f"platform-{name.lower()}")  # what the supervisor holds, as root
    work = _work(
        owner,
        name="boxed-jar",
        category="SPARK_JAR",
        work_directory="hello.jar",
        main_class_name="Hello",
        extra_params=[*probes, *(f"env:{n}" for n in names), "x"],
    )
    done = _wait(owner, tasks.start_task(owner, work)["task_id"])
    log = _log(done["exec_id"])
    _succeeded(done)
    assert "hello from jar x" in log, log
    assert sandbox.isolated(), "CI runs as root: the jar must run under the owner's uid"
    assert f"probe {secret}: denied" in log and f"probe {state_file}: denied" in log, log
    assert "probe /etc/shadow: denied" in log, log
    assert f"probe {NYC_CSV}: read" in log, log  # the shared data root stays readable
    for name in names:
        assert f"env {name}: unset" in log, log
    assert not run_tmp(owner.user_id, done["exec_id"]).exists()  # the run's own folder is removed

    # main_class_name is a class name, never an option for spark-submit
    marker = stack / "jar-conf-ran"
    refused = _work(
        owner,
        name="option-jar",
        category="SPARK_JAR",
        work_directory="hello.jar",
        main_class_name=f"--conf spark.driver.extraJavaOptions=-XX:OnError=touch {marker}",
    )
    failed = _wait(owner, tasks.start_task(owner, refused)["task_id"])
    assert failed["status"] == 3 and "main_class_name must be a Java class name" in failed["error"], failed
    assert not marker.exists()


def test_streaming_task_runs_until_cancelled(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.errors import StateConflict
    from chalicelib.store import jobs as job_store
    from chalicelib.tokens import Principal

    owner = Principal("u-stream", "stream")
    work = _work(owner, name="ticks", type="STREAMING", category="PYSPARK", work_directory="stream.py")
    task = tasks.start_task(owner, work)
    running = _wait(owner, task["task_id"], statuses=(1, 0, 3, 4, 5))
    assert running["status"] == 1, running
    deadline = time.monotonic() + 120
    while "stream started" not in _log(task["exec_id"]):
        assert time.monotonic() < deadline, _log(task["exec_id"])
        time.sleep(0.25)
    time.sleep(2)  # a few micro-batches
    still = tasks.owned_task(owner, task["task_id"])
    assert still["status"] == 1 and still["ended_at"] is None  # a stream does not end by itself
    with pytest.raises(StateConflict):  # ... and holds the work
        tasks.start_task(owner, work)

    handle = job_store.get_job(task["exec_id"])["runner_handle"]  # type: ignore[index]
    asked = time.monotonic()
    cancelled = tasks.cancel_task(owner, task["task_id"])
    took = time.monotonic() - asked
    assert cancelled["status"] == 4, cancelled
    assert cancelled["ended_at"] and cancelled["run_time"] is not None
    assert took < 20, took
    assert _process_gone(handle), "the driver process (or its JVM) outlived the cancel"
    assert tasks.owned_task(owner, task["task_id"])["status"] == 4
    assert tasks.cancel_task(owner, task["task_id"])["status"] == 4  # idempotent
    assert not tasks.owned_task(owner, task["task_id"])["active"]  # the work is free again


def test_two_concurrent_starts_of_a_streaming_work_leave_one_active_task(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.errors import StateConflict
    from chalicelib.store import jobs as job_store
    from chalicelib.store import works as work_store
    from chalicelib.tokens import Principal

    owner = Principal("u-race", "race")
    work = _work(owner, name="race", type="STREAMING", category="PYSPARK", work_directory="stream.py")
    barrier = threading.Barrier(2)
    outcomes: list[dict[str, Any] | BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            outcomes.append(tasks.start_task(owner, work))
        except BaseException as err:  # collected and asserted below
            outcomes.append(err)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    started = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert isinstance(refused[0], StateConflict) and refused[0].code == 409102
    winner = started[0]
    assert (work_store.get_work(work["work_id"]) or {}).get("active_task_id") == winner["task_id"]
    listed = tasks.list_tasks(owner, work["work_id"], {})
    assert [t["task_id"] for t in listed.items] == [winner["task_id"]]

    # cancelling the queued winner also stops the driver already started for it
    handle = job_store.get_job(winner["exec_id"])["runner_handle"]  # type: ignore[index]
    assert tasks.cancel_task(owner, winner["task_id"])["status"] == 4
    assert _process_gone(handle)
    assert (work_store.get_work(work["work_id"]) or {}).get("active_task_id") is None
