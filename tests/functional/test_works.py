"""The works API (spec 003) through the Chalice test client."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from tests.functional.conftest import Api

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SPEC_FIELDS = {
    "work_id",
    "lambda_id",
    "user_id",
    "name",
    "description",
    "status",
    "work_directory",
    "main_class_name",
    "extra_params",
    "java_version",
    "run_frequency",
    "created_at",
    "updated_at",
    "deleted_at",
}


def work_body(**over: Any) -> dict[str, Any]:
    body = {"name": "nightly", "description": "a nightly batch", "type": "BATCH", "category": "SPARK_SQL"}
    body.update(over)
    return body


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice")


def test_create_and_get_in_spec_shape(api: Api, alice: str) -> None:
    status, body, headers = api.call(
        "POST", "/api/v1/works", work_body(category="FLNK_JAR", extra_params=["-Doptions x"]), alice
    )
    assert status == 201 and body["code"] == 0
    work = body["data"]
    assert set(work) >= SPEC_FIELDS
    assert re.fullmatch(r"[0-9a-f]{32}", work["work_id"])
    assert work["category"] == "FLINK_JAR"
    assert work["extra_params"] == ["-Doptions x"]
    assert work["deleted_at"] is None and work["work_directory"] is None and work["lambda_id"] is None
    assert ISO.match(work["created_at"]) and ISO.match(work["updated_at"])
    assert work["version"] == 1 and headers["ETag"] == '"1"'
    status, got, _ = api.call("GET", f"/api/v1/works/{work['work_id']}", token=alice)
    assert status == 200 and got["data"] == work


@pytest.mark.parametrize(
    "over,field",
    [
        ({"type": "MICRO"}, "type"),
        ({"category": "HIVE"}, "category"),
        ({"run_frequency": "yearly"}, "run_frequency"),
        ({"status": "1"}, "status"),
        ({"status": 9}, "status"),
        ({"extra_params": [1, 2]}, "extra_params"),
        ({"name": "x" * 129}, "name"),
        ({"name": ""}, "name"),
        ({"description": None}, "description"),
        ({"colour": "red"}, "colour"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_invalid_create_is_refused_and_stores_nothing(api: Api, alice: str, over: dict[str, Any], field: str) -> None:
    status, body, _ = api.call("POST", "/api/v1/works", work_body(**over), alice)
    assert status == 400 and body["code"] == 400100
    assert field in body["msg"]
    listed = api.call("GET", "/api/v1/works", token=alice)
    assert listed[1]["data"] == [] and listed[2]["X-Total-Count"] == "0"


def test_invalid_json_and_non_object(api: Api, alice: str) -> None:
    assert api.call("POST", "/api/v1/works", "{oops", alice)[0] == 400
    assert api.call("POST", "/api/v1/works", "[1, 2]", alice)[0] == 400


def test_owner_isolation(api: Api, alice: str) -> None:
    bob = api.new_user("bob")
    work = api.call("POST", "/api/v1/works", work_body(), alice)[1]["data"]
    path = f"/api/v1/works/{work['work_id']}"
    assert api.call("GET", path, token=bob)[0] == 404
    assert api.call("PATCH", path, {"name": "stolen"}, bob)[0] == 404
    assert api.call("DELETE", path, token=bob)[0] == 404
    assert api.call("GET", f"{path}/tasks", token=bob)[0] == 404
    assert api.call("GET", "/api/v1/works", token=bob)[1]["data"] == []
    assert api.call("GET", "/api/v1/works/search?name=night", token=bob)[1]["data"] == []
    assert api.call("GET", path, token=alice)[1]["data"]["name"] == "nightly"
    # the same name is fine for another user
    assert api.call("POST", "/api/v1/works", work_body(), bob)[0] == 201


def test_duplicate_name_conflicts(api: Api, alice: str) -> None:
    assert api.call("POST", "/api/v1/works", work_body(), alice)[0] == 201
    status, body, _ = api.call("POST", "/api/v1/works", work_body(), alice)
    assert status == 409 and body["code"] == 409100


def test_patch_with_if_match_and_stale_version(api: Api, alice: str) -> None:
    work = api.call("POST", "/api/v1/works", work_body(), alice)[1]["data"]
    path = f"/api/v1/works/{work['work_id']}"
    status, body, _ = api.call("PATCH", path, {"name": "renamed", "status": 2}, alice, {"If-Match": '"1"'})
    assert status == 200
    assert body["data"]["name"] == "renamed" and body["data"]["version"] == 2 and body["data"]["status"] == 2
    status, body, _ = api.call("PATCH", path, {"description": "late"}, alice, {"If-Match": '"1"'})
    assert status == 409 and body["code"] == 409101
    assert api.call("GET", path, token=alice)[1]["data"]["description"] == "a nightly batch"
    # the old name is free again, the new one is taken
    assert api.call("POST", "/api/v1/works", work_body(), alice)[0] == 201
    assert api.call("POST", "/api/v1/works", work_body(name="renamed"), alice)[0] == 409
    assert api.call("PATCH", path, {"type": "STREAMING"}, alice)[0] == 400


def test_concurrent_patches_one_wins(api: Api, alice: str) -> None:
    work = api.call("POST", "/api/v1/works", work_body(), alice)[1]["data"]
    path = f"/api/v1/works/{work['work_id']}"
    results: list[int] = []

    def patch(i: int) -> None:
        results.append(api.call("PATCH", path, {"description": f"writer {i}"}, alice, {"If-Match": '"1"'})[0])

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(200) == 1 and results.count(409) == 3
    assert api.call("GET", path, token=alice)[1]["data"]["version"] == 2


def test_soft_delete(api: Api, alice: str) -> None:
    work = api.call("POST", "/api/v1/works", work_body(), alice)[1]["data"]
    path = f"/api/v1/works/{work['work_id']}"
    assert api.call("DELETE", path, token=alice, headers={"If-Match": '"7"'})[0] == 409
    status, body, _ = api.call("DELETE", path, token=alice)
    assert status == 200 and body == {"code": 0}
    assert api.call("GET", path, token=alice)[0] == 404
    assert api.call("GET", "/api/v1/works", token=alice)[1]["data"] == []
    assert api.call("GET", f"{path}/tasks", token=alice)[1] == {"code": 0, "data": []}
    from chalicelib.store.works import get_work

    stored = get_work(work["work_id"])
    assert stored is not None and ISO.match(stored["deleted_at"])
    assert api.call("POST", "/api/v1/works", work_body(), alice)[0] == 201


def test_list_paging_filters_and_search(api: Api, alice: str) -> None:
    names = [f"job-{i:02d}" for i in range(12)]
    for i, name in enumerate(names):
        freq = "daily" if i % 2 else "hourly"
        desc = "Loads TAXI trips" if i % 3 == 0 else "other"
        assert (
            api.call("POST", "/api/v1/works", work_body(name=name, run_frequency=freq, description=desc), alice)[0]
            == 201
        )
    status, body, headers = api.call("GET", "/api/v1/works", token=alice)
    assert status == 200 and headers["X-Total-Count"] == "12"
    assert [w["name"] for w in body["data"]] == names[::-1][:10]
    second = api.call("GET", "/api/v1/works?limit=5&offset=1", token=alice)[1]["data"]
    assert [w["name"] for w in second] == names[::-1][5:10]
    daily = api.call("GET", "/api/v1/works?run_frequency=daily&limit=100", token=alice)
    assert {w["name"] for w in daily[1]["data"]} == set(names[1::2]) and daily[2]["X-Total-Count"] == "6"
    exact = api.call("GET", "/api/v1/works?name=job-03", token=alice)[1]["data"]
    assert [w["name"] for w in exact] == ["job-03"]
    found = api.call("GET", "/api/v1/works/search?description=taxi&limit=100", token=alice)
    assert {w["name"] for w in found[1]["data"]} == {names[i] for i in range(0, 12, 3)}
    assert api.call("GET", "/api/v1/works/search?name=JOB-1", token=alice)[2]["X-Total-Count"] == "2"
    for bad in ("limit=0", "limit=101", "limit=x", "offset=-1", "status=9", "sort=name"):
        status, body, _ = api.call("GET", f"/api/v1/works?{bad}", token=alice)
        assert status == 400, bad


def test_idempotent_create(api: Api, alice: str) -> None:
    key = {"Idempotency-Key": "create-nightly-1"}
    first = api.call("POST", "/api/v1/works", work_body(), alice, key)
    again = api.call("POST", "/api/v1/works", work_body(), alice, key)
    assert first[0] == 201 and again[0] == 201
    assert again[1]["data"]["work_id"] == first[1]["data"]["work_id"]
    assert api.call("GET", "/api/v1/works", token=alice)[2]["X-Total-Count"] == "1"
    changed = api.call("POST", "/api/v1/works", work_body(name="other"), alice, key)
    assert changed[0] == 409
