"""Each user's own files (``/api/v1/files``): presigned upload and download under ``uploads/<user_id>/``,
list and delete, and the hostile cases: traversal and every path outside the caller's prefix, sizes over
the limit, another user's file answering exactly like a missing one. The uploaded file's ``uri`` is a
work's ``work_directory``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.functional.conftest import Api

SQL = b"select 1 as one"


def _upload(api: Api, token: str, path: str, data: bytes, content_type: str = "text/plain") -> dict[str, Any]:
    status, body, _ = api.call(
        "POST", "/api/v1/files", {"path": path, "size": len(data), "content_type": content_type}, token
    )
    assert status == 201, body
    got: dict[str, Any] = body["data"]
    answer = requests.put(got["url"], data=data, headers=got["headers"], timeout=30)
    assert answer.status_code == 200, answer.text
    return got


def _user_id(token: str) -> str:
    from chalicelib.tokens import verify_token

    return verify_token(token).user_id


def test_upload_list_download_delete(api: Api) -> None:
    alice = api.new_user("alice")
    got = _upload(api, alice, "jobs/rollup.sql", SQL)
    key = f"uploads/{_user_id(alice)}/jobs/rollup.sql"
    assert got["uri"] == f"s3://sparkgate/{key}" and got["method"] == "PUT" and got["expires_in"] == 900
    signed = parse_qs(urlparse(got["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert "content-length" in signed and "content-type" in signed  # the size declared is the size stored
    status, listed, headers = api.call("GET", "/api/v1/files", None, alice)
    assert status == 200 and headers["X-Total-Count"] == "1"
    (entry,) = listed["data"]
    assert entry["path"] == "jobs/rollup.sql" and entry["size"] == len(SQL) and entry["uri"] == got["uri"]
    assert api.call("GET", "/api/v1/files?prefix=jobs/", None, alice)[1]["data"] == [entry]
    assert api.call("GET", "/api/v1/files?prefix=other/", None, alice)[1]["data"] == []
    status, down, _ = api.call("GET", "/api/v1/files/download?path=jobs/rollup.sql", None, alice)
    assert status == 200, down
    assert requests.get(down["data"]["url"], timeout=30).content == SQL
    status, gone, _ = api.call("DELETE", "/api/v1/files?path=jobs/rollup.sql", None, alice)
    assert status == 200 and gone["data"] == {"path": "jobs/rollup.sql", "deleted": True}
    assert api.call("GET", "/api/v1/files", None, alice)[1]["data"] == []
    assert api.call("DELETE", "/api/v1/files?path=jobs/rollup.sql", None, alice)[0] == 404


def test_an_uploaded_sql_file_is_a_works_work_directory(api: Api) -> None:
    alice = api.new_user("alice")
    got = _upload(api, alice, "rollup.sql", SQL)
    body = {"name": "up", "description": "", "type": "BATCH", "category": "SPARK_SQL", "work_directory": got["uri"]}
    status, work, _ = api.call("POST", "/api/v1/works", body, alice)
    assert status == 201 and work["data"]["work_directory"] == got["uri"], work


@pytest.mark.parametrize(
    "path",
    [
        "../bob/x.sql",
        "a/../../x.sql",
        "..",
        "/etc/passwd",
        "./x.sql",
        "a//b.sql",
        ".hidden",
        "a/b\\c.sql",
        "x\x00.sql",
        "s3://sparkgate/uploads/x.sql",
        "%2e%2e/x.sql",
        "a b.sql",
        "x" * 513,
        "/".join(["a"] * 9),
        "",
    ],
)
def test_paths_outside_the_callers_prefix_are_refused(api: Api, path: str) -> None:
    alice = api.new_user("alice")
    status, body, _ = api.call("POST", "/api/v1/files", {"path": path, "size": 1}, alice)
    assert status == 400 and body["code"] == 400100, body
    assert "path" in body["msg"]
    for method, route in (("GET", "/api/v1/files/download"), ("DELETE", "/api/v1/files")):
        assert api.call(method, f"{route}?path={requests.utils.quote(path)}", None, alice)[0] == 400


def test_sizes_over_the_limit_and_bad_sizes_are_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_MAX_UPLOAD_BYTES", "1000")
    alice = api.new_user("alice")
    for size in (1001, 10**12, -1, "5", 1.5, True, None):
        status, body, _ = api.call("POST", "/api/v1/files", {"path": "big.csv", "size": size}, alice)
        assert status == 400 and "size" in body["msg"], (size, body)
    status, body, _ = api.call("POST", "/api/v1/files", {"path": "big.csv", "size": 1001}, alice)
    assert "1000" in body["msg"] and "SPARKGATE_MAX_UPLOAD_BYTES" in body["msg"]
    status, body, _ = api.call("POST", "/api/v1/files", {"path": "ok.csv", "size": 1000}, alice)
    assert status == 201 and body["data"]["max_bytes"] == 1000
    bad_type = {"path": "ok.csv", "size": 1, "content_type": "text/plain\r\nX-Evil: 1"}
    assert api.call("POST", "/api/v1/files", bad_type, alice)[0] == 400


def test_another_users_file_is_like_a_missing_one(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    _upload(api, alice, "secret.csv", b"a,b\n1,2\n")
    missing = api.call("GET", "/api/v1/files/download?path=nothing.csv", None, bob)
    theirs = api.call("GET", "/api/v1/files/download?path=secret.csv", None, bob)
    assert theirs[0] == missing[0] == 404
    assert theirs[1]["msg"].replace("secret.csv", "nothing.csv") == missing[1]["msg"]
    assert _user_id(alice) not in theirs[1]["msg"]
    assert api.call("GET", "/api/v1/files", None, bob)[1]["data"] == []
    assert api.call("DELETE", "/api/v1/files?path=secret.csv", None, bob)[0] == 404
    assert len(api.call("GET", "/api/v1/files", None, alice)[1]["data"]) == 1  # still there
    # bob's own upload of the same name is his, in his own prefix
    got = _upload(api, bob, "secret.csv", b"mine")
    assert _user_id(bob) in got["uri"] and _user_id(alice) not in got["uri"]


def test_files_need_a_token(api: Api) -> None:
    assert api.call("GET", "/api/v1/files", None, None)[0] == 401
    assert api.call("POST", "/api/v1/files", {"path": "x", "size": 1}, None)[0] == 401
