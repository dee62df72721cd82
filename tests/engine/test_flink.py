"""FLINK_SQL and FLINK_JAR works on the real local Flink (the pip-installed ``pyflink``), sandboxed.

One moto server (reachable from the supervisor processes) serves the module; each test uses its own
user. Every run starts a sandboxed Flink (a JVM with a local mini-cluster) under its owner's uid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import NYC_CSV, planted_secrets
from tests.engine.test_work_runs import _log, _process_gone, _result_sets, _trips_by_vendor, _wait, _work

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.usefixtures("jdk")

COLUMNS = (
    "VendorID STRING, tpep_pickup_datetime STRING, tpep_dropoff_datetime STRING, passenger_count INT, "
    "trip_distance DOUBLE, pickup_longitude DOUBLE, pickup_latitude DOUBLE, dropoff_longitude DOUBLE, "
    "dropoff_latitude DOUBLE, fare_amount DOUBLE, tip_amount DOUBLE, total_amount DOUBLE, "
    "buildingid_pickup BIGINT, buildingid_dropoff BIGINT, buildingtext_pickup STRING, buildingtext_dropoff STRING"
)
#: The header row does not parse (passenger_count is an INT): with ignore-parse-errors it is all nulls.
TRIPS_TABLE = f"""CREATE TEMPORARY TABLE trips ({COLUMNS}) WITH (
  'connector' = 'filesystem', 'path' = '${{csv}}', 'format' = 'csv', 'csv.ignore-parse-errors' = 'true'
)"""
BATCH_SQL = f"""-- FLINK_SQL BATCH work over the NYC taxi CSV (-Dcsv=...)
{TRIPS_TABLE};
SELECT COUNT(*) AS trips FROM trips WHERE passenger_count IS NOT NULL;
SELECT VendorID AS vendor, COUNT(*) AS trips FROM trips WHERE passenger_count IS NOT NULL GROUP BY VendorID;
"""
STREAMING_SQL = """-- FLINK_SQL STREAMING work: datagen into blackhole, until cancelled
CREATE TEMPORARY TABLE ticks (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5');
CREATE TEMPORARY TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT id FROM ticks;
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A moto server with the table and bucket, the work files and the FLINK_JAR fixture; the work root."""
    from moto.server import ThreadedMotoServer

    from chalicelib.local.aws import serialize_dynamodb
    from chalicelib.runners.flink import packaged_home

    home = packaged_home()
    assert home is not None, "apache-flink is not installed (requirements-flink.txt)"
    root = tmp_path_factory.mktemp("flink_runs")
    serialize_dynamodb()
    server = ThreadedMotoServer(port=0)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        mp.setenv("SPARKGATE_STATE_DIR", str(root / "state"))
        mp.setenv("SPARKGATE_WORK_ROOTS", str(root))
        mp.delenv("SPARKGATE_FLINK_HOME", raising=False)  # the packaged Flink, as on `make run`
        from chalicelib.config import settings
        from chalicelib.store.aws import reset
        from chalicelib.store.provision import ensure_table_and_bucket

        reset()
        ensure_table_and_bucket(settings())
        classes = root / "classes"
        source = FIXTURES / "flink" / "FlinkHello.java"
        subprocess.run(["javac", "-cp", str(home / "lib" / "*"), "-d", str(classes), str(source)], check=True)
        subprocess.run(["jar", "cf", str(root / "flink-hello.jar"), "-C", str(classes), "."], check=True)
        (root / "trips.sql").write_text(BATCH_SQL)
        (root / "stream.sql").write_text(STREAMING_SQL)
        yield root
        reset()
    server.stop()


def _owner(name: str) -> Any:
    from chalicelib.tokens import Principal

    return Principal(f"u-flink-{name}", f"flink-{name}")


def test_flink_sql_batch_counts_nyc_trips(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.runners.flink import run_tmp
    from chalicelib.store import jobs as job_store

    owner = _owner("sql")
    work = _work(
        owner, name="trips", category="FLINK_SQL", work_directory="trips.sql", extra_params=[f"-Dcsv={NYC_CSV}"]
    )
    done = _wait(owner, tasks.start_task(owner, work)["task_id"])
    assert done["status"] == 0, (done, _log(done["exec_id"]))

    by_vendor = _trips_by_vendor()
    job = job_store.get_job(done["exec_id"])
    assert job is not None and job["result_sets"] == 2
    assert job["result_preview"]["rows"] == [[sum(by_vendor.values())]]
    count, grouped = _result_sets(owner.user_id, done["exec_id"])
    assert count["rows"] == [[sum(by_vendor.values())]] and count["metadata"][0]["columnName"] == "trips"
    assert [c["columnName"] for c in grouped["metadata"]] == ["vendor", "trips"]
    assert {vendor: n for vendor, n in grouped["rows"]} == dict(by_vendor)
    log = _log(done["exec_id"])
    assert "statement 3/3" in log and "isolation: uid+ns" in log
    assert "MiniCluster is not yet running" not in log  # Flink's shutdown noise is kept out of the log
    assert not run_tmp(owner.user_id, done["exec_id"]).exists()  # Flink's ~70 MB of temp files are gone


def test_flink_sql_streaming_runs_until_cancelled(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.runners.flink import run_tmp
    from chalicelib.store import jobs as job_store

    owner = _owner("stream")
    work = _work(owner, name="ticks", type="STREAMING", category="FLINK_SQL", work_directory="stream.sql")
    task = tasks.start_task(owner, work)
    running = _wait(owner, task["task_id"], statuses=(1, 0, 3, 4, 5))
    assert running["status"] == 1, running
    deadline = time.monotonic() + 120
    while "running until cancelled" not in _log(task["exec_id"]):
        assert time.monotonic() < deadline, _log(task["exec_id"])
        assert tasks.owned_task(owner, task["task_id"])["status"] == 1, _log(task["exec_id"])
        time.sleep(0.25)
    time.sleep(2)
    assert tasks.owned_task(owner, task["task_id"])["status"] == 1  # a stream does not end by itself

    handle = job_store.get_job(task["exec_id"])["runner_handle"]  # type: ignore[index]
    cancelled = tasks.cancel_task(owner, task["task_id"])
    assert cancelled["status"] == 4, cancelled
    assert _process_gone(handle), "the supervisor (or its Flink JVM) outlived the cancel"
    log = _log(task["exec_id"])
    assert "kill requested: cancelling the Flink job" in log and "submitted" in log
    assert not run_tmp(owner.user_id, task["exec_id"]).exists()
    assert not tasks.owned_task(owner, task["task_id"])["active"]


def test_flink_jar_succeeds_in_the_sandbox_then_fails_with_its_exception(stack: Path) -> None:
    from chalicelib import tasks, works

    owner, other = _owner("jar"), _owner("jar-other")
    secret, state_file = planted_secrets(other.user_id)
    probes = [f"probe:{secret}", f"probe:{state_file}", "probe:/etc/shadow", f"probe:{NYC_CSV}"]
    work = _work(
        owner,
        name="jar",
        category="FLINK_JAR",
        work_directory="flink-hello.jar",
        main_class_name="FlinkHello",
        extra_params=[*probes, "a"],
    )
    done = _wait(owner, tasks.start_task(owner, work)["task_id"])
    log = _log(done["exec_id"])
    assert done["status"] == 0, (done, log)
    assert f"flink hello sum=338350 args={','.join([*probes, 'a'])}" in log
    assert f"probe {secret}: denied" in log and f"probe {state_file}: denied" in log
    assert "probe /etc/shadow: denied" in log
    assert f"probe {NYC_CSV}: read" in log  # the shared data root stays readable

    works.update_work(owner, work["work_id"], {"extra_params": ["fail"]}, None)
    failed = _wait(owner, tasks.start_task(owner, works.get_owned_work(owner, work["work_id"]))["task_id"])
    assert failed["status"] == 3, failed
    assert "FlinkHello exited with code" in failed["error"]
    assert "IllegalStateException: flink hello was asked to fail at 50" in _log(failed["exec_id"])

    # main_class_name is a class name, never a JVM option for the sandboxed java
    marker = stack / "on-error-ran"
    option = {"main_class_name": f"-XX:OnError=touch {marker}", "extra_params": ["FlinkHello"]}
    works.update_work(owner, work["work_id"], option, None)
    refused = _wait(owner, tasks.start_task(owner, works.get_owned_work(owner, work["work_id"]))["task_id"])
    assert refused["status"] == 3 and "main_class_name must be a Java class name" in refused["error"], refused
    assert not marker.exists()


def test_flink_sql_reading_another_users_file_fails_refused(stack: Path) -> None:
    from chalicelib import tasks
    from chalicelib.user_files import user_area

    owner, other = _owner("nosy"), _owner("nosy-other")
    secret = user_area(other.user_id) / "trips.csv"
    secret.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(NYC_CSV, secret)
    (stack / "nosy.sql").write_text(f"{TRIPS_TABLE};\nSELECT COUNT(*) FROM trips;\n")
    work = _work(owner, name="nosy", category="FLINK_SQL", work_directory="nosy.sql", extra_params=[f"-Dcsv={secret}"])
    failed = _wait(owner, tasks.start_task(owner, work)["task_id"])
    assert failed["status"] == 3, failed
    assert "refused: path" in failed["error"] and "is not inside the allowed folders" in failed["error"]
    assert "statement 2/2" not in _log(failed["exec_id"])  # nothing ran after the refused statement


#: Checks statements with the guard on Flink's own parser, in a process of its own: PyFlink patches py4j
#: globally (its exception handler and JavaPackage hooks), which must not reach this process's Spark.
GUARD_SCRIPT = """
import json, os, sys
os.environ["_python_worker_execution_mode"] = "process"
from pyflink.table import EnvironmentSettings, TableEnvironment
from chalicelib.runners.flink_kernel import Refused, check_operation
cases, roots = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))
tenv = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
tenv.get_config().set("table.dynamic-table-options.enabled", "false")
tenv.execute_sql(sys.argv[3])
parser = tenv._j_tenv.getParser()
verdicts = {}
for case, statement in cases.items():
    try:
        check_operation(parser.parse(statement).get(0), roots)
        verdicts[case] = "allowed"
    except Refused as err:
        verdicts[case] = str(err)
    except Exception as err:
        verdicts[case] = "error: " + " ".join(str(err).splitlines()[:3])
print(json.dumps(verdicts))
sys.stdout.flush()
os._exit(0)
"""


def test_guard_refuses_paths_outside_the_roots_and_code_loading() -> None:
    import json
    import sys

    from chalicelib.config import settings
    from chalicelib.user_files import user_area

    own, other = user_area("u-flink-guard"), user_area("u-flink-guard-other")
    data = str(NYC_CSV.parent.resolve())
    own.mkdir(parents=True, exist_ok=True)
    link = own / "link.csv"
    link.unlink(missing_ok=True)
    link.symlink_to(other / "trips.csv")

    def table(path: str, connector: str = "filesystem") -> str:
        options = f"'connector' = '{connector}', 'path' = '{path}', 'format' = 'csv'"
        return f"CREATE TEMPORARY TABLE t (a STRING) WITH ({options})"

    refused = {
        "another user's file": table(str(other / "trips.csv")),
        "a host path": table("/etc/passwd"),
        "file: URI": table("file:///etc/shadow"),
        "traversal": table(f"{data}/../../../etc/passwd"),
        "a symlink out of the own area": table(str(link)),
        "a glob": table(f"{data}/*.csv"),
        "the state dir": table(str(settings().state_dir / "sparkgate.json")),
        "another connector": table(data, connector="kafka"),
        "ADD JAR": "ADD JAR '/tmp/evil.jar'",
        "CREATE FUNCTION": "CREATE TEMPORARY FUNCTION f AS 'org.example.Evil'",
        "LOAD MODULE": "LOAD MODULE hive",
        "SET a path": "SET 'execution.checkpointing.dir' = 'file:///etc'",
        "SET the hints back on": "SET 'table.dynamic-table-options.enabled' = 'true'",
        "RESET all": "RESET",
    }
    allowed = {
        "the shared CSV": table(str(NYC_CSV)),
        "the own area": table(str(own / "out")),
        "datagen": "CREATE TEMPORARY TABLE g (a BIGINT) WITH ('connector' = 'datagen')",
        "a tuning SET": "SET 'parallelism.default' = '2'",
    }
    hint = {"an OPTIONS hint": "SELECT * FROM trips /*+ OPTIONS('path' = '/etc/passwd') */"}
    trips = table(str(NYC_CSV)).replace("TABLE t ", "TABLE trips ")
    roots = [data, str(own)]
    got = subprocess.run(
        [sys.executable, "-c", GUARD_SCRIPT, json.dumps({**refused, **allowed, **hint}), json.dumps(roots), trips],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert got.returncode == 0, got.stderr[-3000:]
    verdicts = json.loads(got.stdout.strip().splitlines()[-1])
    for case in refused:
        assert verdicts[case].startswith("refused: "), (case, verdicts[case])
    for case in allowed:
        assert verdicts[case] == "allowed", (case, verdicts[case])
    assert "is not inside the allowed folders" in verdicts["another user's file"]
    assert "connector 'kafka' is not allowed" in verdicts["another connector"]
    # a table hint cannot re-point a table at another path: Flink refuses the hint itself
    assert verdicts["an OPTIONS hint"].startswith("error: ") and "OPTIONS" in verdicts["an OPTIONS hint"]


def test_results_from_the_sandbox_are_checked_and_bounded(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.runners.flink import _Results
    from chalicelib.store import results as result_store

    monkeypatch.setenv("SPARKGATE_MAX_RESULT_BYTES", "2000")
    results = _Results("u-flink-bounds", "b" * 32)
    metadata = [{"columnName": "n", "dataType": "bigint", "evil": "x"}]
    results.result({"t": "result", "index": -1, "metadata": metadata, "rows": [[1]]})  # out of range
    results.result({"t": "result", "index": 0, "metadata": "no", "rows": [[1]]})  # not a list
    results.result({"t": "result", "index": 1, "metadata": metadata, "rows": [1, 2]})  # rows not lists
    results.page({"t": "page", "index": 0, "page": 0, "rows": [[1]]})  # page 0 is the document's
    results.result({"t": "result", "index": 0, "metadata": metadata, "rows": [[1], [2]]})
    assert list(results.documents) == [0] and results.over is None
    assert results.documents[0]["metadata"] == [{"columnName": "n", "dataType": "bigint", "comment": ""}]
    results.page({"t": "page", "index": 0, "page": 1, "rows": [["x" * 3000]]})  # beyond the byte budget
    assert results.over and "SPARKGATE_MAX_RESULT_BYTES" in results.over
    assert result_store.list_result_keys("u-flink-bounds", "b" * 32) == []  # nothing of it was stored
