"""The Linkis and geo bodies are checked by their request models (chalicelib/models): the messages are the
ones the hand-written checks answered, in the surface's envelope; values the store cannot keep (found by
the stateful fuzz: numbers beyond DynamoDB's range in ``params``/``source``) are a 400, not a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.conftest import Api

EXECUTE = "/api/rest_j/v1/entrance/execute"
SUBMIT = "/api/rest_j/v1/entrance/submit"
SQL = {"executeApplicationName": "spark", "executionCode": "select 1", "runType": "sql"}


@pytest.fixture
def api(fake_engine_api: Api) -> Api:
    return fake_engine_api


def refused(api: Api, token: str, path: str, body: Any) -> str:
    status, answer, _ = api.call("POST", path, body, token)
    assert status == 400 and set(answer) == {"method", "status", "message", "data"}, answer
    assert answer["status"] == 1, answer
    return str(answer["message"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"executionCode": "select 1", "runType": "sql"}, "executeApplicationName is required (spark)"),
        ({**SQL, "executeApplicationName": "hive-2.3"}, "engine 'hive-2.3' is not supported; use spark"),
        ({**SQL, "params": []}, "params must be an object"),
        ({**SQL, "runType": "geo"}, "runType 'geo' is internal; use one of: sql, python (py, pyspark)"),
        ({**SQL, "executionCode": "  "}, "executionCode must be non-empty code"),
        ({"executeApplicationName": "spark", "runType": "sql"}, "executionCode must be non-empty code"),
        ({**SQL, "runType": "scala"}, "runType 'scala' is not supported; use one of: sql, python (py, pyspark)"),
        # several faults: the first in the order the checks always ran (engine, params, runType, code)
        ({"executeApplicationName": "x", "params": 1, "executionCode": ""}, "engine 'x' is not supported"),
        ({**SQL, "params": 1, "runType": "geo", "executionCode": ""}, "params must be an object"),
    ],
)
def test_execute_answers_the_messages_it_always_did(api: Api, body: dict[str, Any], message: str) -> None:
    assert refused(api, api.new_user("alice"), EXECUTE, body).startswith(message)


def test_submit_and_kill_jobs_messages(api: Api) -> None:
    alice = api.new_user("alice")
    assert refused(api, alice, SUBMIT, {"labels": {}}) == "executionContent {code, runType} is required"
    content = {"code": "select 1", "runType": "sql"}
    assert refused(api, alice, SUBMIT, {"executionContent": content, "labels": 3}) == "labels must be an object"
    bad_engine = {"executionContent": content, "labels": {"engineType": "flink-1.17"}}
    assert refused(api, alice, SUBMIT, bad_engine) == "engine 'flink-1.17' is not supported; use spark"
    assert (
        refused(api, alice, SUBMIT, {"executionContent": {"runType": "sql"}}) == "executionCode must be non-empty code"
    )
    status, answer, _ = api.call(
        "POST", SUBMIT, {"executionContent": content, "labels": {"userCreator": "bob-IDE"}}, alice
    )
    assert status == 403 and answer["message"] == "labels.userCreator names user 'bob', not you"
    kill = "/api/rest_j/v1/entrance/x/killJobs"
    assert refused(api, alice, kill, {"idList": "abc"}) == "idList and taskIDList must be lists"
    assert refused(api, alice, kill, {"idList": ["a"] * 60, "taskIDList": [1] * 41}) == (
        "at most 100 jobs per killJobs call"
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"params": {"a": 10**40}},
        {"params": {"variable": {"x": 1e308}}},
        {"params": {"configuration": {"small": 1.5e-300}}},
        {"source": {"nil": [], "y": [-(10**39)]}},
        {"source": {"deep": __import__("json").loads("[" * 40 + "1" + "]" * 40)}},
    ],
)
def test_values_the_store_cannot_keep_are_a_400_not_a_500(api: Api, extra: dict[str, Any]) -> None:
    alice = api.new_user("alice")
    message = refused(api, alice, EXECUTE, {**SQL, **extra})
    field = next(iter(extra))
    assert message.startswith(f"{field} holds a number that cannot be stored") or message.startswith(
        f"{field} nests deeper than"
    ), message
    content = {"code": "select 1", "runType": "sql"}
    assert refused(api, alice, SUBMIT, {"executionContent": content, **extra}) == message
    # the largest numbers the store keeps still run
    status, answer, _ = api.call("POST", EXECUTE, {**SQL, "params": {"a": 10**37, "b": 1e-120, "c": -0.0}}, alice)
    assert status == 200 and answer["status"] == 0, answer


def test_log_open_file_and_history_queries(api: Api) -> None:
    alice = api.new_user("alice")
    status, answer, _ = api.call("POST", EXECUTE, SQL, alice)
    exec_id, task_id = answer["data"]["execID"], answer["data"]["taskID"]
    for query, message in [
        ("fromLine=x", "fromLine must be an integer"),
        ("size=1e3", "size must be an integer"),
        ("distinctLevel=maybe", "distinctLevel must be true or false"),
        ("fromLine=99999999999", "fromLine must be from -1000000000 to 1000000000"),
    ]:
        status, answer, _ = api.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/log?{query}", None, alice)
        assert status == 400 and answer["message"] == message, (query, answer)
    for query, message in [
        ("pageNow=0", "pageNow must be from 1 to 1000000"),
        ("pageSize=101", "pageSize must be from 1 to 100"),
        ("startDate=abc", "startDate must be an integer"),
        ("taskID=-1", "taskID must be from 0 to 1000000000000000"),
    ]:
        status, answer, _ = api.call("GET", f"/api/rest_j/v1/jobhistory/list?{query}", None, alice)
        assert status == 400 and answer["message"] == message, (query, answer)
    fs = "/api/rest_j/v1/filesystem"
    for path, message in [
        (f"{fs}/openFile", "path is required"),
        (f"{fs}/openFile?path=", "path is required"),
        (f"{fs}/getDirFileTrees", "path is required"),
        (f"{fs}/openLog", "path is required"),
        (f"{fs}/getUserRootPath?pathType=ftp", "pathType must be file, hdfs or s3"),
    ]:
        status, answer, _ = api.call("GET", path, None, alice)
        assert status == 400 and answer["message"] == message, (path, answer)
    assert api.call("GET", f"/api/rest_j/v1/jobhistory/{task_id}/get", None, alice)[0] == 200


def test_the_document_requires_what_execute_requires(api: Api) -> None:
    """The stateful fuzz's valid executes were refused for the engine the document called optional."""
    from chalicelib import openapi

    schema = openapi.app_document()["components"]["schemas"]["ExecuteRequest"]
    assert set(schema["required"]) == {"executeApplicationName", "executionCode", "runType"}
    alice = api.new_user("alice")
    for field in schema["required"]:
        body = {key: value for key, value in SQL.items() if key != field}
        assert field in refused(api, alice, EXECUTE, body), field
