"""The Linkis log cursor as Linkis clients use it (issue 15): ``fromLine`` is 1-based (a value below 1 is
the first line), ``size`` <= 0 means all (the web console sends ``size=-1``), the answer's ``fromLine`` is
the next line to ask for, ``distinctLevel=false`` answers one string; pushed frames carry the same cursor."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.conftest import Api

EXECUTE = "/api/rest_j/v1/entrance/execute"
SQL = {"executeApplicationName": "spark", "executionCode": "select 1", "runType": "sql", "params": {}}
LINES = [("INFO", "one"), ("WARN", "two"), ("INFO", "three"), ("ERROR", "four"), ("INFO", "five")]


@pytest.fixture
def api(fake_engine_api: Api) -> Api:
    return fake_engine_api


@pytest.fixture
def job(api: Api) -> tuple[str, str]:
    """A Job of a new user whose log holds exactly :data:`LINES`; (token, execID)."""
    from chalicelib.store import jobs as job_store
    from chalicelib.store import logs as log_store

    token = api.new_user("reader")
    status, body, _ = api.call("POST", EXECUTE, SQL, token)
    assert status == 200, body
    exec_id = str(body["data"]["execID"])
    have = int((job_store.get_job(exec_id) or {}).get("log_lines") or 0)  # a cold start's opening line
    log_store.append_log(exec_id, have, LINES)
    assert int((job_store.get_job(exec_id) or {}).get("log_lines") or 0) in (have, have + len(LINES))
    return token, exec_id


def _log(api: Api, token: str, exec_id: str, query: str) -> dict[str, Any]:
    status, body, _ = api.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/log?{query}", None, token)
    assert status == 200, body
    data: dict[str, Any] = body["data"]
    return data


def _all_lines(api: Api, token: str, exec_id: str, start: int, size: int) -> list[str]:
    """Page through the log as a client does: pass back the answered ``fromLine`` until a page is empty."""
    seen: list[str] = []
    cursor = start
    for _ in range(50):
        got = _log(api, token, exec_id, f"fromLine={cursor}&size={size}")
        page = got["log"][3].split("\n") if got["log"][3] else []
        if not page:
            assert got["fromLine"] == max(cursor, 1)  # nothing read: ask for the same line again
            return seen
        assert got["fromLine"] == max(cursor, 1) + len(page)
        seen += page
        cursor = got["fromLine"]
    raise AssertionError("the cursor never reached the end")


@pytest.mark.parametrize("start", [0, 1, -3])
@pytest.mark.parametrize("size", [1, 2, 10_000])
def test_a_client_starting_at_0_or_1_reads_every_line_exactly_once(
    api: Api, job: tuple[str, str], start: int, size: int
) -> None:
    token, exec_id = job
    lines = _all_lines(api, token, exec_id, start, size)
    assert lines[-len(LINES) :] == [text for _, text in LINES]
    assert len(lines) == len(set(lines))  # nothing repeated


def test_fromline_is_1_based(api: Api, job: tuple[str, str]) -> None:
    token, exec_id = job
    whole = _log(api, token, exec_id, "fromLine=1")["log"][3].split("\n")
    second = _log(api, token, exec_id, "fromLine=2&size=1")
    assert second["log"][3] == whole[1] and second["fromLine"] == 3


@pytest.mark.parametrize("size", ["-1", "0", ""])
def test_size_zero_or_negative_means_all(api: Api, job: tuple[str, str], size: str) -> None:
    token, exec_id = job
    got = _log(api, token, exec_id, f"fromLine=1&size={size}")
    text = got["log"][3].split("\n")
    assert text[-len(LINES) :] == [t for _, t in LINES] and got["fromLine"] == len(text) + 1
    assert got["log"][0] == "four" and got["log"][1] == "two"


def test_distinct_level_false_answers_one_string(api: Api, job: tuple[str, str]) -> None:
    token, exec_id = job
    got = _log(api, token, exec_id, "fromLine=1&size=-1&distinctLevel=false")
    assert isinstance(got["log"], str) and got["log"].endswith("\n".join(t for _, t in LINES))
    assert _log(api, token, exec_id, "distinctLevel=true")["log"][3] == got["log"]


@pytest.mark.parametrize("query", ["fromLine=x", "size=ten", "distinctLevel=maybe", "fromLine=99999999999"])
def test_bad_cursor_values_answer_the_linkis_error_envelope(api: Api, job: tuple[str, str], query: str) -> None:
    token, exec_id = job
    status, body, _ = api.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/log?{query}", None, token)
    assert status == 400 and body["status"] != 0 and body["message"], body


def test_pushed_frames_carry_the_cursor_http_answers(api: Api, job: tuple[str, str]) -> None:
    """A client that read pushed lines continues over HTTP from the frame's ``fromLine``: nothing lost or repeated."""
    from chalicelib import push
    from chalicelib.store import jobs as job_store

    token, exec_id = job
    record = job_store.get_job(exec_id)
    assert record is not None
    frames = push.log_pushes(record, 0, [("INFO", "a"), ("INFO", "b")])
    assert frames[-1].data["fromLine"] == 3
    rest = _log(api, token, exec_id, f"fromLine={frames[-1].data['fromLine']}&size=-1")["log"][3].split("\n")
    whole = _log(api, token, exec_id, "fromLine=1&size=-1")["log"][3].split("\n")
    assert rest == whole[2:]
