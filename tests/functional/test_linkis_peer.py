"""Linkis routes the web console and linkis-cli call, as they call them (issue 15): ``jobhistory/list``,
``filesystem/openLog``, ``filesystem/getUserRootPath``, ``entrance/{id}/progressWithResource``,
``entrance/operation/metrics/{runningtask,taskinfo}``, the job history's ``QueryTaskVO`` fields, and
``openFile`` / ``resultsetToExcel`` values as Linkis sends them. Another user's ids answer like unknown ones."""

from __future__ import annotations

import io
import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.functional.conftest import Api

L = "/api/rest_j/v1"
EXECUTE = f"{L}/entrance/execute"
SUBMIT = f"{L}/entrance/submit"
SQL = {
    "executeApplicationName": "spark",
    "executionCode": "select 1",
    "runType": "sql",
    "params": {"variable": {"k": "v"}, "configuration": {}},
    "source": {"scriptPath": "/tmp/a.sql"},
    "requestApplicationName": "IDE",
}
METADATA = [
    {"columnName": "id", "dataType": "int", "comment": ""},
    {"columnName": "ok", "dataType": "boolean", "comment": ""},
    {"columnName": "price", "dataType": "double", "comment": ""},
    {"columnName": "name", "dataType": "string", "comment": ""},
    {"columnName": "big", "dataType": "bigint", "comment": ""},
    {"columnName": "tags", "dataType": "array<string>", "comment": ""},
]
ROWS: list[list[Any]] = [[1, True, 2.5, "a", 2**40, ["x", "y"]], [2, False, None, None, -1, []]]


@pytest.fixture
def api(fake_engine_api: Api) -> Api:
    return fake_engine_api


def ok(api: Api, token: str, path: str, body: Any = None, method: str = "GET") -> dict[str, Any]:
    status, answer, _ = api.call(method, path, body, token)
    assert status == 200 and answer["status"] == 0, answer
    data: dict[str, Any] = answer["data"]
    return data


def refused(api: Api, token: str, path: str) -> tuple[int, str]:
    status, answer, _ = api.call("GET", path, None, token)
    assert answer["status"] != 0, answer
    return status, str(answer["message"])


def execute(api: Api, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return ok(api, token, EXECUTE, body or SQL, "POST")


def finish(exec_id: str, status: str = "Succeed", rows: list[list[Any]] | None = None) -> None:
    """End a Job as the engine would: Running, then final with one result set."""
    from chalicelib.config import settings
    from chalicelib.store import jobs as job_store
    from chalicelib.store import logs as log_store
    from chalicelib.store import results as result_store
    from chalicelib.timeutil import now_iso

    job = job_store.get_job(exec_id)
    assert job is not None
    started = job_store.transition(
        exec_id, ("Scheduled",), "Running", {"started_at": now_iso(), "driver_generation": 1, "driver_host": "h1"}
    )
    assert started is not None
    fields: dict[str, Any] = {"ended_at": now_iso(), "progress": 1.0}
    if status == "Succeed":
        document: dict[str, Any] = {"metadata": METADATA, "rows": rows if rows is not None else ROWS}
        document["total_rows"] = len(document["rows"])
        result_store.put_result_set(job["owner"], exec_id, 0, document)
        location = f"s3://{settings().bucket_name}/{result_store.result_prefix(job['owner'], exec_id)}"
        fields.update({"result_sets": 1, "result_location": location})
    log_store.append_log(exec_id, int(job.get("log_lines") or 0), [("INFO", "ran"), ("ERROR", "oops")])
    assert job_store.transition(exec_id, ("Running",), status, fields) is not None


# ---- jobhistory/list -------------------------------------------------------------------------------


def test_jobhistory_list_answers_the_callers_jobs_newest_first_with_linkis_fields(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    first = execute(api, alice)
    second = ok(
        api,
        alice,
        SUBMIT,
        {
            "executionContent": {"code": "print(1)", "runType": "python"},
            "labels": {"engineType": "spark-3.4.1", "userCreator": "alice-nbclient"},
        },
        "POST",
    )
    execute(api, bob)
    finish(str(first["execID"]))
    got = ok(api, alice, f"{L}/jobhistory/list?pageNow=1&pageSize=20")
    assert got["totalPage"] == 2  # Linkis's totalPage is the count of matching tasks
    assert [t["taskID"] for t in got["tasks"]] == [second["taskID"], first["taskID"]]
    done = got["tasks"][1]
    for field in (
        "instance",
        "engineInstance",
        "logPath",
        "executeApplicationName",
        "requestApplicationName",
        "paramsJson",
        "sourceJson",
        "labels",
        "strongerExecId",
        "engineStartTime",
    ):
        assert done.get(field) not in (None, ""), field
    assert done["execId"] == first["execID"] and done["umUser"] == "alice" and done["status"] == "Succeed"
    assert done["progress"] == "1.0"  # a string, as Linkis's job history stores it
    assert json.loads(done["paramsJson"]) == SQL["params"] and json.loads(done["sourceJson"]) == SQL["source"]
    assert "engineType:spark" in done["labels"] and "userCreator:alice-IDE" in done["labels"]
    assert done["executeApplicationName"] == "spark" and done["requestApplicationName"] == "IDE"
    assert done["engineInstance"].startswith("h1:") and isinstance(done["engineStartTime"], int)
    assert got["tasks"][0]["requestApplicationName"] == "nbclient" and got["tasks"][0]["progress"] == "0.0"
    # the single-task route answers the same fields
    one = ok(api, alice, f"{L}/jobhistory/{first['taskID']}/get")["task"]
    assert {k: one[k] for k in done} == done


def test_jobhistory_list_filters_and_pages_as_linkis(api: Api) -> None:
    alice = api.new_user("alice")
    ids = [execute(api, alice) for _ in range(5)]
    finish(str(ids[0]["execID"]))
    finish(str(ids[1]["execID"]), "Failed")
    lst = f"{L}/jobhistory/list"
    assert ok(api, alice, f"{lst}?status=Succeed")["totalPage"] == 1
    assert ok(api, alice, f"{lst}?status=Succeed,Failed")["totalPage"] == 2
    assert ok(api, alice, f"{lst}?status=Scheduled")["totalPage"] == 3
    assert ok(api, alice, f"{lst}?executeApplicationName=spark")["totalPage"] == 5
    assert ok(api, alice, f"{lst}?executeApplicationName=hive")["totalPage"] == 0
    assert ok(api, alice, f"{lst}?creator=IDE")["totalPage"] == 5
    now = int(time.time() * 1000)
    assert ok(api, alice, f"{lst}?startDate={now - 600_000}&endDate={now + 600_000}")["totalPage"] == 5
    assert ok(api, alice, f"{lst}?startDate={now + 600_000}&endDate={now + 700_000}")["totalPage"] == 0
    page2 = ok(api, alice, f"{lst}?pageNow=2&pageSize=2")
    assert page2["totalPage"] == 5 and [t["taskID"] for t in page2["tasks"]] == [ids[2]["taskID"], ids[1]["taskID"]]
    assert ok(api, alice, f"{lst}?pageNow=9&pageSize=2")["tasks"] == []
    assert ok(api, alice, f"{lst}?taskID={ids[3]['taskID']}")["tasks"][0]["execId"] == ids[3]["execID"]
    status, _ = refused(api, alice, f"{lst}?pageSize=zero")
    assert status == 400


def test_jobhistory_list_never_shows_other_users_jobs(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    mine = execute(api, alice)
    execute(api, bob)
    got = ok(api, bob, f"{L}/jobhistory/list?taskID={mine['taskID']}")
    assert got == {"tasks": [], "totalPage": 0}


# ---- openLog, getUserRootPath --------------------------------------------------------------------


def test_open_log_reads_the_whole_log_at_jobhistorys_log_path(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    job = execute(api, alice)
    finish(str(job["execID"]))
    path = ok(api, alice, f"{L}/jobhistory/{job['taskID']}/get")["task"]["logPath"]
    log = ok(api, alice, f"{L}/filesystem/openLog?path={quote(path)}")["log"]
    assert isinstance(log, list) and len(log) == 4
    assert log[0] == "oops" and log[3].endswith("ran\noops") and "ran" in log[2]
    # another user's log path, an unknown one and a made-up one answer alike
    other = refused(api, bob, f"{L}/filesystem/openLog?path={quote(path)}")
    unknown = refused(api, alice, f"{L}/filesystem/openLog?path={quote(path.replace(job['execID'], 'f' * 32))}")
    assert other[0] == unknown[0] == 400  # NotFound is status 1 / HTTP 400, as for unknown execIDs
    assert other[1].replace(path, "P") == unknown[1].replace(path.replace(job["execID"], "f" * 32), "P")
    bob_view = path.replace(path.split("/")[-2], "x")
    assert refused(api, alice, f"{L}/filesystem/openLog?path={quote(bob_view)}")[0] == 400
    assert refused(api, alice, f"{L}/filesystem/openLog")[0] == 400


def test_get_user_root_path_answers_linkis_keys(api: Api) -> None:
    alice = api.new_user("alice")
    assert ok(api, alice, f"{L}/filesystem/getUserRootPath")["userLocalRootPath"].startswith("file:///")
    assert ok(api, alice, f"{L}/filesystem/getUserRootPath?pathType=file")["userLocalRootPath"].startswith("file://")
    hdfs = ok(api, alice, f"{L}/filesystem/getUserRootPath?pathType=hdfs")["userHDFSRootPath"]
    assert hdfs.startswith("s3://") and "/uploads/" in hdfs
    assert "userS3RootPath" in ok(api, alice, f"{L}/filesystem/getUserRootPath?pathType=s3")
    assert refused(api, alice, f"{L}/filesystem/getUserRootPath?pathType=ftp")[0] == 400


# ---- progressWithResource, metrics ---------------------------------------------------------------


def test_progress_with_resource(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    job = execute(api, alice)
    got = ok(api, alice, f"{L}/entrance/{job['execID']}/progressWithResource")
    assert got["execID"] == job["execID"] and got["progress"] == 0.0 and got["progressInfo"] == []
    assert "yarnResource" in got and got["yarnResource"] is None and got["personalResource"] is None
    other = refused(api, bob, f"{L}/entrance/{job['execID']}/progressWithResource")
    unknown = refused(api, bob, f"{L}/entrance/{'e' * 32}/progressWithResource")
    assert other[0] == unknown[0] and other[1].replace(str(job["execID"]), "X") == unknown[1].replace("e" * 32, "X")


def test_metrics_runningtask_and_taskinfo_count_the_callers_unfinished_jobs(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    metrics = f"{L}/entrance/operation/metrics"
    assert ok(api, alice, f"{metrics}/runningtask") == {"runningTaskNumber": 0, "isCompleted": True}
    jobs = [execute(api, alice) for _ in range(3)]
    execute(api, bob)
    finish(str(jobs[0]["execID"]))
    from chalicelib.store import jobs as job_store

    job_store.transition(str(jobs[1]["execID"]), ("Scheduled",), "Running")
    assert ok(api, alice, f"{metrics}/runningtask") == {"runningTaskNumber": 2, "isCompleted": False}
    info = ok(api, alice, f"{metrics}/taskinfo?user=alice&creator=IDE&engineTypeLabel=spark-3.4.1")
    assert info == {"taskNumber": 2, "runningNumber": 1, "queuedNumber": 1}
    assert ok(api, alice, f"{metrics}/taskinfo?user=bob")["taskNumber"] == 0  # not other users' Jobs
    assert ok(api, alice, f"{metrics}/taskinfo?engineTypeLabel=hive-2.3")["taskNumber"] == 0


# ---- openFile as Linkis sends it -----------------------------------------------------------------


def _result_path(api: Api, token: str, task_id: Any) -> str:
    location = ok(api, token, f"{L}/jobhistory/{task_id}/get")["task"]["resultLocation"]
    tree = ok(api, token, f"{L}/filesystem/getDirFileTrees?path={quote(location)}")["dirFileTrees"]
    path: str = tree["children"][0]["path"]
    return path


def test_open_file_answers_strings_null_marks_and_linkis_type_names(api: Api) -> None:
    alice = api.new_user("alice")
    job = execute(api, alice)
    finish(str(job["execID"]), rows=[*ROWS, [3, True, float("nan"), "", 0, None]])
    path = _result_path(api, alice, job["taskID"])
    got = ok(api, alice, f"{L}/filesystem/openFile?path={quote(path)}&page=1&pageSize=5000")
    assert [m["dataType"] for m in got["metadata"]] == ["int", "boolean", "double", "string", "long", "array"]
    assert [m["columnName"] for m in got["metadata"]] == ["id", "ok", "price", "name", "big", "tags"]
    assert got["fileContent"] == [
        ["1", "true", "2.5", "a", str(2**40), '["x","y"]'],
        ["2", "false", "NULL", "NULL", "-1", "[]"],
        ["3", "true", "NaN", "", "0", "NULL"],
    ]
    # a client that maps only strings (as Linkis's console does) reads every cell
    assert all(isinstance(v, str) for row in got["fileContent"] for v in row)
    assert (got["type"], got["totalLine"], got["page"], got["totalPage"]) == ("2", 3, 1, 1)


def test_open_file_typed_values_behind_the_typed_parameter(api: Api) -> None:
    alice = api.new_user("alice")
    job = execute(api, alice)
    finish(str(job["execID"]))
    path = _result_path(api, alice, job["taskID"])
    got = ok(api, alice, f"{L}/filesystem/openFile?path={quote(path)}&typed=true")
    assert got["fileContent"] == ROWS and got["metadata"] == METADATA
    assert refused(api, alice, f"{L}/filesystem/openFile?path={quote(path)}&typed=maybe")[0] == 400


def test_open_file_of_a_text_result_set_as_linkis_answers_it(api: Api) -> None:
    """A Python job's printed output (a TEXT set, as the engine stores it): Linkis's ``FileSplit`` answers
    the LineMetaData's ``"NULL"`` as metadata, each line a row of one string, ``type: "1"``."""
    from chalicelib.store import jobs as job_store
    from chalicelib.store import results as result_store

    alice = api.new_user("alice")
    job = execute(api, alice, {**SQL, "executionCode": "print('hello')", "runType": "python"})
    finish(str(job["execID"]))
    owner = str(job_store.get_job(str(job["execID"]))["owner"])  # type: ignore[index]
    text = {"type": "1", "metadata": [], "rows": [["hello"], [""], ["world"]], "total_rows": 3}
    result_store.put_result_set(owner, str(job["execID"]), 0, text)
    path = _result_path(api, alice, job["taskID"])
    got = ok(api, alice, f"{L}/filesystem/openFile?path={quote(path)}&page=1&pageSize=5000")
    assert (got["type"], got["metadata"], got["totalLine"]) == ("1", "NULL", 3)
    assert got["fileContent"] == [["hello"], [""], ["world"]]
    # how Linkis's console shows a TEXT set: its lines joined
    assert "\n".join(row[0] for row in got["fileContent"]) == "hello\n\nworld"
    assert ok(api, alice, f"{L}/filesystem/openFile?path={quote(path)}&typed=true")["metadata"] == "NULL"


def test_linkis_type_names() -> None:
    from chalicelib.entrance import linkis_type, linkis_value

    names = ["decimal(10,2)", "map<string,int>", "struct<a:int>", "smallint", "tinyint", "void", "date"]
    assert [linkis_type(n) for n in names] == ["decimal", "map", "struct", "short", "tinyint", "null", "date"]
    assert linkis_value("2024-01-02T03:04:05.123000", "timestamp") == "2024-01-02 03:04:05.123000"
    assert linkis_value("Infinity", "double") == "Infinity" and linkis_value(float("-inf"), "double") == "-Infinity"


# ---- resultsetToExcel ----------------------------------------------------------------------------


def _download(api: Api, token: str, query: str) -> tuple[int, bytes, dict[str, str]]:
    response = api.client.http.get(
        f"{L}/filesystem/resultsetToExcel?{query}",
        headers={"Authorization": f"Token {token}", "Accept": "*/*"},  # what a browser download sends
    )
    body = response.body if isinstance(response.body, bytes) else str(response.body).encode()
    return response.status_code, body, dict(response.headers)


def test_resultset_to_excel_csv_as_linkis(api: Api) -> None:
    alice = api.new_user("alice")
    job = execute(api, alice)
    finish(str(job["execID"]), rows=[*ROWS, [3, True, 1.0, 'say "hi", ok', 7, None]])
    path = quote(_result_path(api, alice, job["taskID"]))
    status, body, headers = _download(api, alice, f"path={path}&outputFileType=csv&outputFileName=taxi")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == "attachment;filename=taxi.csv"
    lines = body.decode().splitlines()
    assert lines[0] == "id,ok,price,name,big,tags"
    assert lines[1] == f'1,true,2.5,a,{2**40},"[""x"",""y""]"'
    assert lines[2] == "2,false,NULL,NULL,-1,[]"
    assert lines[3] == '3,true,1.0,"say ""hi"", ok",7,NULL'
    status, body, _ = _download(api, alice, f"path={path}&csvSeperator=%09&nullValue=&limit=1")
    assert status == 200 and body.decode().splitlines() == [
        "id\tok\tprice\tname\tbig\ttags",
        f'1\ttrue\t2.5\ta\t{2**40}\t"[""x"",""y""]"',  # CSV quoting
    ]


def test_resultset_to_excel_xlsx_opens_in_openpyxl(api: Api) -> None:
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    alice = api.new_user("alice")
    job = execute(api, alice)
    finish(str(job["execID"]))
    path = quote(_result_path(api, alice, job["taskID"]))
    status, body, headers = _download(api, alice, f"path={path}&outputFileType=xlsx&sheetName=taxi")
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert headers["Content-Disposition"] == "attachment;filename=result.xlsx"
    book = load_workbook(io.BytesIO(body))
    rows = [list(r) for r in book["taxi"].iter_rows(values_only=True)]
    assert rows == [
        ["id", "ok", "price", "name", "big", "tags"],
        [1, True, 2.5, "a", 2**40, '["x","y"]'],
        [2, False, "NULL", "NULL", -1, "[]"],
    ]


def test_resultset_to_excel_refuses_what_openfile_refuses(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    job = execute(api, alice)
    finish(str(job["execID"]))
    path = _result_path(api, alice, job["taskID"])
    theirs = _download(api, bob, f"path={quote(path)}")
    unknown = _download(api, bob, f"path={quote(path.replace(str(job['execID']), 'a' * 32))}")
    assert theirs[0] == unknown[0] == 403 and json.loads(theirs[1]) == json.loads(unknown[1])
    for query in ("outputFileType=pdf", "outputFileName=../x", "charset=gbk", "limit=x", "csvSeparator=ab"):
        status, body, _ = _download(api, alice, f"path={quote(path)}&{query}")
        assert status == 400 and json.loads(body)["status"] == 1, query


# ---- log lines as Linkis writes them -------------------------------------------------------------


def test_log_lines_and_the_closing_line_as_linkis_writes_them(api: Api) -> None:
    import re

    from chalicelib.engine.joblog import JobLog
    from chalicelib.logformat import FINISH_INDICATOR, closing_line
    from chalicelib.store import jobs as job_store

    alice = api.new_user("alice")
    job = execute(api, alice)
    exec_id = str(job["execID"])
    have = int((job_store.get_job(exec_id) or {}).get("log_lines") or 0)
    log = JobLog(exec_id, have)
    log.info("reading taxi")
    log.error("boom\nat line 2")
    log.info(closing_line("Failed"))
    log.flush()
    got = ok(api, alice, f"{L}/entrance/{exec_id}/log?fromLine=1&size=-1")["log"]
    lines = got[3].split("\n")[have:]
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "
    assert [re.sub(stamp, "", line) for line in lines] == [
        "INFO reading taxi",
        "ERROR boom",
        "ERROR at line 2",
        "INFO Sorry. Your job completed with a status Failed. You can view logs for the reason.",
    ]
    assert all(re.match(stamp, line) for line in lines)
    assert got[0].split("\n") == lines[1:3]  # the error bucket holds the ERROR lines, formatted
    assert FINISH_INDICATOR in lines[-1]  # what linkis-cli waits for
    assert closing_line("Succeed") == "Congratulations. Your job completed with status Success."
    assert closing_line("Cancelled").startswith("Sorry. Your job completed with a status Cancelled.")
