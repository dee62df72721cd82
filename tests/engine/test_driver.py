"""The engine on a real local Spark, against a moto server (so driver subprocesses share its state).

In-process drivers (a thread running ``SessionDriver`` on the shared ``spark`` fixture) cover the
statement, log, result, progress, kill and timeout paths without another JVM; one test starts a real
driver process through ``LocalRunner`` and SIGKILLs it mid-job.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from chalicelib.runners.base import Probe, Runner
from tests.engine.conftest import NYC_CSV

OWNER = "u-engine"


@pytest.fixture(scope="module")
def moto_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server holding the table and bucket; AWS_ENDPOINT_URL points this process (and children) at it."""
    from moto.server import ThreadedMotoServer

    from chalicelib.config import settings
    from chalicelib.store.aws import reset
    from chalicelib.store.provision import ensure_table_and_bucket

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address[:2]
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "SPARKGATE_STATE_DIR", "SPARKGATE_STAGE")}
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    os.environ["SPARKGATE_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    os.environ["SPARKGATE_STAGE"] = "local"
    reset()
    ensure_table_and_bucket(settings())
    yield os.environ["AWS_ENDPOINT_URL"]
    reset()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


class ThreadRunner(Runner):
    """Runs session drivers as threads of this process on the shared SparkSession."""

    name = "thread"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.threads: dict[str, threading.Thread] = {}

    def start_session(self, session: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.engine.supervisor import SessionDriver

        driver = SessionDriver(session["session_id"], int(session["generation"]), spark=self.spark)
        key = f"{session['session_id']}/{session['generation']}"
        self.threads[key] = threading.Thread(target=driver.serve, name=key, daemon=True)
        self.threads[key].start()
        return {"runner": self.name, "key": key}

    def start_batch(self, job: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.engine.supervisor import run_batch

        key = f"batch/{job['exec_id']}"
        self.threads[key] = threading.Thread(target=run_batch, args=(job["exec_id"], self.spark), daemon=True)
        self.threads[key].start()
        return {"runner": self.name, "key": key}

    def probe(self, handle: dict[str, Any]) -> Probe:
        thread = self.threads.get(str(handle.get("key")))
        return "unknown" if thread is None else ("running" if thread.is_alive() else "finished")

    def cancel(self, handle: dict[str, Any]) -> None:
        return None

    def join_all(self, timeout: float = 15) -> None:
        """Wait for every driver thread (they exit once their session is stopped)."""
        deadline = time.monotonic() + timeout
        for thread in self.threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture(scope="module")
def thread_runner(moto_env: str, spark: SparkSession) -> Iterator[ThreadRunner]:
    from chalicelib import sessions

    runner = ThreadRunner(spark)
    sessions.use_runner(runner)
    yield runner
    runner.join_all()
    sessions.use_runner(None)


def submit(code: str, run_type: str = "sql", session_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """``jobs.new_job`` + ``sessions.dispatch``, as a surface does."""
    from chalicelib import jobs, sessions
    from chalicelib.tokens import Principal

    runtime = extra.pop("runtime_seconds", None)
    request = jobs.JobRequest(
        owner=Principal(OWNER, "engine"),
        code=code,
        run_type=run_type,
        session_id=session_id,
        runtime_seconds=runtime,
        extra=extra,
    )
    job = jobs.new_job(request)
    sessions.dispatch(job)
    return job


def wait_for(exec_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    """Poll the job until ``predicate`` holds (fails the test after ``timeout`` s)."""
    from chalicelib.store import jobs as job_store

    deadline = time.monotonic() + timeout
    while True:
        job = job_store.get_job(exec_id)
        assert job is not None
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {exec_id} stuck: {job['status']} {job.get('error')}")
        time.sleep(0.05)


def finished(exec_id: str, timeout: float = 60) -> dict[str, Any]:
    from chalicelib.jobs import FINAL

    return wait_for(exec_id, lambda j: j["status"] in FINAL, timeout)


#: Linkis's line prefix the engine stores before every log line (``yyyy-MM-dd HH:mm:ss.SSS LEVEL ``)
LINKIS_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (?:INFO|WARN|ERROR) ")


def log_of(exec_id: str, raw: bool = False) -> list[tuple[str, str]]:
    """The Job's stored log lines; their text without Linkis's time-and-level prefix unless ``raw``."""
    from chalicelib.store import logs as log_store

    lines = log_store.read_log(exec_id)
    return lines if raw else [(level, LINKIS_PREFIX.sub("", text, count=1)) for level, text in lines]


@pytest.fixture
def session_id(thread_runner: ThreadRunner) -> Iterator[str]:
    """A fresh session (its driver starts on the first job) that is stopped after the test."""
    from chalicelib import sessions

    sid = f"s-{uuid.uuid4().hex[:8]}"
    sessions.ensure_session_driver(sid, OWNER, {"heartbeat_seconds": 1, "idle_timeout_seconds": 120})
    yield sid
    sessions.stop_session(sid)


def test_sql_over_the_taxi_csv_gives_typed_result_sets(session_id: str) -> None:
    from chalicelib.store import results as result_store

    view = submit(
        f"spark.read.option('header', True).option('inferSchema', True).csv({str(NYC_CSV)!r})"
        ".createOrReplaceTempView('taxi')",
        "python",
        session_id,
    )
    query = submit(
        "select count(*) as n, round(max(fare_amount), 2) as max_fare from taxi;\n"
        "-- a comment; with a semicolon\n"
        "select VendorID, count(*) as trips from taxi group by VendorID order by VendorID",
        "sql",
        session_id,
    )
    assert finished(view["exec_id"])["status"] == "Succeed"
    done = finished(query["exec_id"])
    assert done["status"] == "Succeed", done.get("error")
    assert done["result_sets"] == 2
    assert done["result_location"].endswith(f"/results/{OWNER}/{query['exec_id']}/")
    assert done["progress"] == 1.0 and done["progress_info"]
    assert all(i["succeedTasks"] == i["totalTasks"] > 0 for i in done["progress_info"])
    keys = result_store.list_result_keys(OWNER, query["exec_id"])
    import json

    first = json.loads(result_store.get_object(keys[0]))
    assert [(c["columnName"], c["dataType"]) for c in first["metadata"]] == [("n", "bigint"), ("max_fare", "double")]
    assert first["rows"][0][0] == 9999
    second = json.loads(result_store.get_object(keys[1]))
    assert second["metadata"][0] == {"columnName": "VendorID", "dataType": "string", "comment": ""}
    assert sum(r[1] for r in second["rows"]) == 9999
    assert done["result_preview"]["rows"][0][0] == 9999
    log = log_of(query["exec_id"], raw=True)
    assert len(log) == done["log_lines"] and any("statement 2/2" in t for _, t in log)
    # as Linkis writes them: ``yyyy-MM-dd HH:mm:ss.SSS LEVEL text``, closing with what linkis-cli waits for
    assert all(re.match(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} {level} ", t) for level, t in log), log[:3]
    assert log[-1][1].endswith("INFO Congratulations. Your job completed with status Success.")


def test_large_results_are_stored_in_pages_and_read_back_in_any_page_size(session_id: str) -> None:
    from chalicelib import entrance
    from chalicelib.engine.config import RESULT_PAGE_ROWS
    from chalicelib.store import results as result_store
    from chalicelib.tokens import Principal

    rows = 2 * RESULT_PAGE_ROWS + 345
    query = submit(f"select id, id * 2 as twice from range({rows})", "sql", session_id)
    done = finished(query["exec_id"], timeout=120)
    assert done["status"] == "Succeed", done.get("error")
    assert done["result_preview"]["total_rows"] == rows and done["result_preview"]["truncated"]
    principal = Principal(OWNER, "engine")
    tree = entrance.dir_file_trees(principal, done["result_location"])
    assert [c["name"] for c in tree["dirFileTrees"]["children"]] == ["_0.json"]  # pages are not extra files
    path = tree["dirFileTrees"]["children"][0]["path"]
    assert len(result_store.get_result_page(OWNER, query["exec_id"], 0, 2)) == 345

    every = [row for page in range(1, 4) for row in entrance.open_file(principal, path, page, 5000)["fileContent"]]
    assert every == [[str(i), str(2 * i)] for i in range(rows)]  # as Linkis sends cells: text
    spanning = entrance.open_file(principal, path, 2, 3000, typed="true")  # rows 3000..5999 cross stored pages
    assert spanning["fileContent"] == [[i, 2 * i] for i in range(3000, 6000)]
    assert (spanning["totalLine"], spanning["totalPage"]) == (rows, -(-rows // 3000))
    assert entrance.open_file(principal, path, 99, 5000)["fileContent"] == []


def test_max_result_rows_cuts_a_paged_result_and_says_so(thread_runner: ThreadRunner) -> None:
    from chalicelib import sessions
    from chalicelib.engine.config import RESULT_PAGE_ROWS

    sid = f"s-{uuid.uuid4().hex[:8]}"
    limit = RESULT_PAGE_ROWS + 10
    sessions.ensure_session_driver(sid, OWNER, {"heartbeat_seconds": 1, "max_result_rows": limit})
    try:
        done = finished(submit(f"select id from range({3 * RESULT_PAGE_ROWS})", "sql", sid)["exec_id"], timeout=120)
    finally:
        sessions.stop_session(sid)
    assert done["status"] == "Succeed", done.get("error")
    assert done["result_preview"]["total_rows"] == limit and done["result_preview"]["truncated"]
    assert any(level == "WARN" and "truncated" in text for level, text in log_of(done["exec_id"]))


def test_entrance_sql_gets_the_st_functions_and_their_rewrites(session_id: str) -> None:
    import json

    from chalicelib.store import results as result_store

    polygon = "POLYGON((9.5 0, 20.5 0, 20.5 1, 9.5 1, 9.5 0))"
    query = submit(
        f"select count(*) as n from range(100) where ST_Within(ST_Point(cast(id as double), 0.5), "
        f"ST_GeomFromText('{polygon}'));\n"
        f"select id from range(3) where ST_Contains(ST_GeomFromText('{polygon}'), ST_Point(id + 10.0, 0.5))"
        " order by id",
        "sql",
        session_id,
    )
    done = finished(query["exec_id"], timeout=120)
    assert done["status"] == "Succeed", done.get("error")
    keys = result_store.list_result_keys(OWNER, query["exec_id"])
    assert json.loads(result_store.get_object(keys[0]))["rows"] == [[11]]
    assert json.loads(result_store.get_object(keys[1]))["rows"] == [[0], [1], [2]]


def test_python_prints_to_the_log_and_variables_persist(session_id: str) -> None:
    first = submit(
        "total = 40 + 1\nprint('hello from', 'python')\nfor i in range(3):\n    print('line', i)", "py", session_id
    )
    second = submit("total + 1", "python", session_id)
    assert finished(first["exec_id"])["status"] == "Succeed"
    done = finished(second["exec_id"])
    assert done["status"] == "Succeed"
    assert ("INFO", "hello from python") in log_of(first["exec_id"])
    assert [t for _, t in log_of(first["exec_id"]) if t.startswith("line")] == ["line 0", "line 1", "line 2"]
    assert ("INFO", "42") in log_of(second["exec_id"])
    df = finished(submit("spark.range(3).selectExpr('id * 2 as twice')", "python", session_id)["exec_id"])
    assert df["result_preview"]["rows"] == [[0], [2], [4]]


def test_python_output_is_a_text_result_set_before_the_table(session_id: str) -> None:
    """As Linkis's Python engines write it: printed lines are a TEXT result set (``type: "1"``, metadata
    ``"NULL"``, one ``[line]`` per row), the final DataFrame a TABLE set after it; the log keeps the lines."""
    from chalicelib import entrance, result_export
    from chalicelib.tokens import Principal

    code = "print('first line')\nprint('a', 1, end='')\nprint('')\nspark.range(2).selectExpr('id as n')"
    done = finished(submit(code, "python", session_id)["exec_id"])
    assert done["status"] == "Succeed", done.get("error")
    assert int(done["result_sets"]) == 2
    principal = Principal(OWNER, "engine")
    children = entrance.dir_file_trees(principal, done["result_location"])["dirFileTrees"]["children"]
    assert [c["name"] for c in children] == ["_0.json", "_1.json"]
    text = entrance.open_file(principal, children[0]["path"])
    assert (text["type"], text["metadata"], text["totalLine"]) == ("1", "NULL", 2)
    assert text["fileContent"] == [["first line"], ["a 1"]]
    table = entrance.open_file(principal, children[1]["path"])
    assert table["type"] == "2" and table["metadata"][0]["columnName"] == "n"
    assert table["fileContent"] == [["0"], ["1"]]
    assert [t for _, t in log_of(done["exec_id"]) if t in ("first line", "a 1")] == ["first line", "a 1"]
    csv_text = result_export.export(principal, {"path": children[0]["path"]}).body
    assert csv_text == "first line\na 1\n"
    with pytest.raises(Exception, match="non-table result sets cannot be downloaded as excel"):
        result_export.export(principal, {"path": children[0]["path"], "outputFileType": "xlsx"})
    # a value that is not a DataFrame is printed: the one TEXT set; nothing printed: no TEXT set
    quiet = finished(submit("x = 2\nx * 21", "python", session_id)["exec_id"])
    path = entrance.dir_file_trees(principal, quiet["result_location"])["dirFileTrees"]["children"][0]["path"]
    assert entrance.open_file(principal, path)["fileContent"] == [["42"]]
    silent = finished(submit("y = 1", "python", session_id)["exec_id"])
    assert silent["status"] == "Succeed" and int(silent["result_sets"]) == 0


def test_result_sets_are_listed_in_numeric_order(session_id: str) -> None:
    from chalicelib import entrance
    from chalicelib.tokens import Principal

    code = ";\n".join(f"select {i} as n" for i in range(12))
    done = finished(submit(code, "sql", session_id)["exec_id"])
    assert done["status"] == "Succeed", done.get("error")
    principal = Principal(OWNER, "engine")
    children = entrance.dir_file_trees(principal, done["result_location"])["dirFileTrees"]["children"]
    assert [c["name"] for c in children] == [f"_{i}.json" for i in range(12)]  # _10 after _9, not after _1
    assert [entrance.open_file(principal, c["path"])["fileContent"] for c in children] == [
        [[str(i)]] for i in range(12)
    ]


def test_a_job_without_result_sets_still_has_its_result_location(session_id: str) -> None:
    """Linkis clients read ``resultLocation`` of every Job: a DDL-only Job answers a folder with no files."""
    from chalicelib import entrance
    from chalicelib.tokens import Principal

    done = finished(submit("create or replace temporary view ddl_only as select 1 as a", "sql", session_id)["exec_id"])
    assert done["status"] == "Succeed" and int(done["result_sets"]) == 0
    assert done["result_location"].endswith(f"/results/{OWNER}/{done['exec_id']}/")
    tree = entrance.dir_file_trees(Principal(OWNER, "engine"), done["result_location"])
    assert tree["dirFileTrees"]["children"] == []


def test_failures_carry_the_error_text(session_id: str) -> None:
    bad_sql = submit("select * from no_such_table_here", "sql", session_id)
    bad_py = submit("def f():\n    return 1 / 0\nf()", "python", session_id)
    after = submit("select 1 as one", "sql", session_id)
    sql_done, py_done = finished(bad_sql["exec_id"]), finished(bad_py["exec_id"])
    assert sql_done["status"] == "Failed" and "no_such_table_here" in sql_done["error"]
    assert any(level == "ERROR" and "no_such_table_here" in t for level, t in log_of(bad_sql["exec_id"]))
    closing = "Sorry. Your job completed with a status Failed. You can view logs for the reason."
    last = log_of(bad_sql["exec_id"], raw=True)[-1][1]
    assert LINKIS_PREFIX.match(last) and last.endswith(f"INFO {closing}")  # Linkis's last line
    assert py_done["status"] == "Failed"
    assert "ZeroDivisionError" in py_done["error"] and 'File "<code>", line 2, in f' in py_done["error"]
    assert "kernel.py" not in py_done["error"] and "supervisor.py" not in py_done["error"]
    assert finished(after["exec_id"])["status"] == "Succeed"  # the session survives its failures


def test_kill_cancels_a_running_spark_job_while_the_next_waits(session_id: str) -> None:
    from chalicelib import jobs

    slow = submit("select count(*) from range(0, 400000000000, 1, 2)", "sql", session_id)
    nxt = submit("select 2 as two", "sql", session_id)
    running = wait_for(slow["exec_id"], lambda j: j["status"] == "Running" and bool(j["progress_info"]))
    assert running["progress_info"][0]["totalTasks"] >= 1
    from chalicelib.store import jobs as job_store

    waiting = job_store.get_job(nxt["exec_id"])
    assert waiting is not None and waiting["status"] == "Scheduled"
    killed_at = time.monotonic()
    jobs.request_cancel(running)
    done = finished(slow["exec_id"], timeout=20)
    assert done["status"] == "Cancelled"
    assert time.monotonic() - killed_at < 10
    assert finished(nxt["exec_id"])["status"] == "Succeed"


def test_pure_python_loops_are_interrupted_by_kill_and_timeout(session_id: str) -> None:
    from chalicelib import jobs

    spin = submit("n = 0\nwhile True:\n    n += 1", "python", session_id)
    wait_for(spin["exec_id"], lambda j: j["status"] == "Running")
    from chalicelib.store import jobs as job_store

    jobs.request_cancel(job_store.get_job(spin["exec_id"]) or spin)
    assert finished(spin["exec_id"], timeout=15)["status"] == "Cancelled"
    slow = submit("import time\nwhile True:\n    time.sleep(0.05)", "python", session_id, runtime_seconds=2)
    done = finished(slow["exec_id"], timeout=20)
    assert done["status"] == "Timeout" and "2 s" in done["error"]
    assert finished(submit("n > 0", "python", session_id)["exec_id"])["status"] == "Succeed"


def test_batch_job_runs_once_on_its_own_driver(thread_runner: ThreadRunner) -> None:
    from chalicelib.engine.config import batch_driver_id
    from chalicelib.store import sessions as session_store

    job = submit("select 40 + 2 as answer", "sql")
    done = finished(job["exec_id"])
    assert done["status"] == "Succeed" and done["result_preview"]["rows"] == [[42]]
    assert done["runner_handle"]["runner"] == "thread"
    record = wait_for_session(batch_driver_id(job["exec_id"]), lambda s: s["state"] == "stopped")
    assert record["kind"] == "batch"
    assert all(s["session_id"] != record["session_id"] for s in session_store.live_sessions())


def wait_for_session(sid: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    from chalicelib.store import sessions as session_store

    deadline = time.monotonic() + timeout
    while True:
        session = session_store.get_session(sid)
        if session is not None and predicate(session):
            return session
        assert time.monotonic() < deadline, f"session {sid}: {session}"
        time.sleep(0.1)


def test_sigkilled_driver_process_fails_its_job_and_the_next_job_gets_a_new_driver(
    moto_env: str, tmp_path: Path
) -> None:
    """A real driver process (LocalRunner, local[1]) killed with SIGKILL mid-job."""
    from chalicelib import sessions
    from chalicelib.runners.local import LocalRunner

    sessions.use_runner(None)
    os.environ["SPARKGATE_RUNNER"] = "local"
    sid = f"proc-{uuid.uuid4().hex[:8]}"
    config = {
        "master": "local[1]",
        "heartbeat_seconds": 1,
        "idle_timeout_seconds": 60,
        "configs": {"spark.driver.memory": "512m"},
    }
    sessions.ensure_session_driver(sid, OWNER, config)
    handles: list[dict[str, Any]] = []
    try:
        slow = submit("import time\ntime.sleep(60)", "python", sid)
        nxt = submit("select 'second' as which", "sql", sid)
        wait_for(slow["exec_id"], lambda j: j["status"] == "Running", timeout=120)
        session = wait_for_session(sid, lambda s: bool(s.get("runner_handle")))
        handles.append(session["runner_handle"])
        assert kernel_processes(), "the driver's kernel is a process of its own"
        os.kill(int(session["runner_handle"]["pid"]), signal.SIGKILL)
        wait_until(lambda: LocalRunner().probe(session["runner_handle"]) != "running")
        wait_until(lambda: not kernel_processes())  # the kernel (and its JVM) die with their supervisor

        actions = sessions.check_heartbeats()
        [action] = [a for a in actions if a["session_id"] == sid]
        assert action["failed_exec_id"] == slow["exec_id"] and action["restarted_generation"] == 2
        failed = finished(slow["exec_id"], timeout=5)
        assert failed["status"] == "Failed" and "driver died" in failed["error"]
        done = finished(nxt["exec_id"], timeout=120)
        assert done["status"] == "Succeed" and done["result_preview"]["rows"] == [["second"]]
        assert done["driver_generation"] == 2
        handles.append(wait_for_session(sid, lambda s: int(s["generation"]) == 2)["runner_handle"])
    finally:
        sessions.stop_session(sid)
        for handle in handles:
            LocalRunner().cancel(handle)


def kernel_processes() -> list[int]:
    """Kernel processes (the sandbox entry, its namespace's reaper, the kernel) of this module's state dir."""
    state = os.environ["SPARKGATE_STATE_DIR"]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--state-dir" in cmdline and state.encode() in cmdline:
                found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_every_new_geo_driver_loads_its_catalog_before_its_first_job(
    thread_runner: ThreadRunner, spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A geo session's tables are temp views: each driver generation replays the stored catalog,
    including a generation started from the stored config (as the schedule tick restarts a dead one)."""
    import json

    from chalicelib import jobs, sessions
    from chalicelib.store import geo as geo_store
    from chalicelib.store import sessions as session_store
    from chalicelib.tokens import Principal

    sessions.use_runner(thread_runner)  # in-process drivers, whatever an earlier test chose
    monkeypatch.setenv("SPARKGATE_KERNEL_ROOTS", str(tmp_path))  # the folder the kernel may read
    suffix = uuid.uuid4().hex[:8]
    scope, t, u = f"scope{suffix}", f"t_{suffix}", f"u_{suffix}"
    assert geo_store.create_scope(OWNER, scope, "2026-11-21T00:00:00Z")
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    file_table = {"kind": "file", "name": t, "format": "csv", "path": str(csv), "options": {"header": "true"}}
    geo_store.append_catalog(OWNER, scope, "spark", {**file_table, "schema": "a INT, b INT"})
    geo_store.append_catalog(OWNER, scope, "spark", {"kind": "sql", "name": u, "sql": f"select a + b as s from {t}"})
    geo_store.append_catalog(OWNER, scope, "spark", {**file_table, "name": "gone", "path": str(tmp_path / "no.csv")})
    geo_store.append_catalog(OWNER, scope, "other", {**file_table, "name": "not_this_session"})
    sid = f"geo-{suffix}"
    ref = {"user_id": OWNER, "scope": scope, "session": "spark"}
    sessions.ensure_session_driver(
        sid, OWNER, {"heartbeat_seconds": 1, "idle_timeout_seconds": 120, "geo_catalog": ref}
    )
    query = {"op": "query", "sql": f"select sum(s) as total from {u}"}
    try:
        for generation in (1, 2):
            job = jobs.new_job(
                jobs.JobRequest(
                    owner=Principal(OWNER, "engine"),
                    code="query",
                    run_type="geo",
                    kind="geo",
                    session_id=sid,
                    extra={"geo_op": query, "scope": scope, "geo_session": "spark"},
                )
            )
            sessions.dispatch(job)
            done = finished(job["exec_id"], timeout=120)
            assert done["status"] == "Succeed", done.get("error")
            assert json.loads(done["result_preview"]["rows"][0][0])["result"] == [10]
            session = session_store.get_session(sid)
            assert session is not None and int(session["generation"]) == generation
            assert session["catalog_replayed"]["tables"] == [t, u]
            assert [f["name"] for f in session["catalog_replayed"]["failed"]] == ["gone"]
            sessions.stop_session(sid)
            wait_for_session(sid, lambda s: s["state"] not in sessions.LIVE_STATES)
            for view in (t, u):  # only a replay can bring them back to the shared SparkSession
                spark.catalog.dropTempView(view)
    finally:
        sessions.stop_session(sid)


def test_a_kernel_that_runs_out_of_memory_fails_its_job_with_the_reason_and_the_next_job_gets_a_fresh_one(
    moto_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real sandboxed kernel with a small quota: a JVM OutOfMemoryError and a Python MemoryError each end
    their Job Failed with the reason well inside 60 s; the session keeps serving on a new kernel."""
    from chalicelib import sessions
    from chalicelib.runners.local import LocalRunner

    sessions.use_runner(None)
    monkeypatch.setenv("SPARKGATE_RUNNER", "local")
    monkeypatch.setenv("SPARKGATE_KERNEL_MEMORY_MB", "900")  # inherited by the supervisor: a 540 MiB driver heap
    sid = f"oom-{uuid.uuid4().hex[:8]}"
    sessions.ensure_session_driver(sid, OWNER, {"master": "local[1]", "heartbeat_seconds": 1})
    try:
        warm = finished(submit("select 1 as one", "sql", sid)["exec_id"], timeout=180)
        assert warm["status"] == "Succeed", warm.get("error")

        started = time.monotonic()
        jvm = submit("rows = spark.sql(\"select id, repeat('x', 200) from range(6000000)\").collect()", "python", sid)
        failed = finished(jvm["exec_id"], timeout=60)
        assert failed["status"] == "Failed" and "out of memory" in failed["error"], failed.get("error")
        assert time.monotonic() - started < 60

        python = submit("hog = bytearray(4 * 1024 ** 3)", "python", sid)
        failed = finished(python["exec_id"], timeout=120)
        assert failed["status"] == "Failed" and "MemoryError" in failed["error"], failed.get("error")

        after = finished(submit("select 'alive' as s", "sql", sid)["exec_id"], timeout=120)
        assert after["status"] == "Succeed" and after["result_preview"]["rows"] == [["alive"]]
    finally:
        session = sessions.stop_session(sid)
        if session and session.get("runner_handle"):
            LocalRunner().cancel(session["runner_handle"])
