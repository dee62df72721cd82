"""The spec 004 flow against the real local stack over HTTP, with the 9,999-row NYC taxi CSV,
and a session driver SIGKILLed in the middle (the next /query restarts it and replays the catalog).
"""

from __future__ import annotations

import base64
import io
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from tests.e2e.stack import StackProcess

DATA = Path(__file__).resolve().parents[2] / "data" / "nyc_taxi" / "0_10000_nyc_taxi_and_building.csv"
BOX = [-73.998427, 40.730309, -73.954348, 40.780816]
WITHIN = (
    "ST_Within(ST_Point(pickup_longitude, pickup_latitude), ST_GeomFromText('POLYGON ((-73.998427 40.730309, "
    "-73.954348 40.730309, -73.954348 40.780816, -73.998427 40.780816, -73.998427 40.730309))'))"
)
SCHEMA = [
    {"VendorID": "string"},
    {"tpep_pickup_datetime": "string"},
    {"tpep_dropoff_datetime": "string"},
    {"passenger_count": "bigint"},
    {"trip_distance": "double"},
    {"pickup_longitude": "double"},
    {"pickup_latitude": "double"},
    {"dropoff_longitude": "double"},
    {"dropoff_latitude": "double"},
    {"fare_amount": "double"},
    {"tip_amount": "double"},
    {"total_amount": "double"},
    {"buildingid_pickup": "bigint"},
    {"buildingid_dropoff": "bigint"},
    {"buildingtext_pickup": "string"},
    {"buildingtext_dropoff": "string"},
]


def _ok(answer: tuple[int, Any, Any]) -> Any:
    status, body, _ = answer
    assert status == 200, body
    assert body["status"] == "success", body
    return body


def _png(body: Any, size: tuple[int, int]) -> None:
    image = Image.open(io.BytesIO(base64.b64decode(body["result"])))
    assert image.size == size and image.mode == "RGBA"
    assert image.getchannel("A").getbbox() is not None, "the map is blank"


def _driver(stack: StackProcess, scope: str, session: str) -> dict[str, Any]:
    """The driver record (pid, generation) of a geo session, read from the stack's AWS."""
    from chalicelib.store import geo as geo_store
    from chalicelib.store import sessions as session_store

    with stack.aws():
        live = [s for s in session_store.live_sessions() if str(s["session_id"]).startswith("geo-")]
        assert live, "no live geo session"
        record = geo_store.get_session(str(live[0]["owner"]), scope, session)
        assert record is not None
        driver = session_store.get_session(record["session_id"])
        assert driver is not None
        return driver


def _settled(stack: StackProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    """Answer a geo call; a 202 (a cold driver outlasting the sync wait) is followed, as a client would,
    through the entrance status route until the Job ends, then the (idempotent) request is repeated."""
    answer = stack.call(method, path, body, token)
    if answer[0] == 202:
        exec_id = answer[1]["execID"]
        deadline = time.monotonic() + 300
        status = ""
        while time.monotonic() < deadline:
            status = stack.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/status", None, token)[1]["data"]["status"]
            if status in ("Succeed", "Failed", "Cancelled", "Timeout"):
                break
            time.sleep(0.5)
        if status != "Succeed":
            log = stack.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/log?fromLine=0&size=1000", None, token)
            raise AssertionError(f"{path} Job {exec_id} ended {status}: {log[1]['data']['log'][0]}")
        answer = stack.call(method, path, body, token)
    return _ok(answer)


def test_geo_flow_with_driver_crash(tmp_path: Path) -> None:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    # the taxi points as a Parquet file too (4 row groups): maps of it take the direct Parquet read
    # a shared data root must be readable by the kernels' own uids (pytest's tmp_path is root-only)
    shared = Path(tempfile.mkdtemp(prefix="sg-shared-"))
    shared.chmod(0o755)
    parquet = shared / "pq" / "taxi_points.parquet"
    parquet.parent.mkdir(mode=0o755)
    columns = ["pickup_longitude", "pickup_latitude"]
    points = pa_csv.read_csv(DATA, convert_options=pa_csv.ConvertOptions(include_columns=columns))
    pq.write_table(points, parquet, row_group_size=2500)
    stack = StackProcess(
        tmp_path / "state",
        {
            "SPARKGATE_DATA_ROOTS": f"{DATA.parent}:{parquet.parent}",
            "SPARKGATE_SYNC_WAIT_SECONDS": "25",
            "SPARKGATE_SCHEDULE_SECONDS": "10",
        },
    )
    stack.start()
    try:
        token = stack.login()
        call = stack.call
        scope = _ok(call("POST", "/scope", {"scope": "e2e"}, token))["scope"]
        _ok(call("POST", "/session", {"scope": scope, "session": "arctern", "master-addr": "local[2]"}, token))
        assert call("POST", "/session", {"scope": scope, "session": "arctern"}, token)[0] == 400

        table: dict[str, Any] = {"name": "old_nyc_taxi", "format": "csv", "path": str(DATA), "schema": SCHEMA}
        table["options"] = {"header": "True", "delimiter": ","}
        body = {"scope": scope, "session": "arctern", "tables": [table]}
        _settled(stack, token, "POST", "/loadfile", body)
        info = _settled(stack, token, "GET", f"/table/{scope}/arctern/old_nyc_taxi")
        assert len(info["schema"]) == 16 and info["num_rows"] == 9999
        assert info["schema"][5] == {"pickup_longitude": "double"}

        sql = (
            "select VendorID, passenger_count, pickup_longitude, pickup_latitude, fare_amount, tip_amount, "
            "buildingtext_dropoff from old_nyc_taxi where pickup_longitude between -180 and 180"
        )
        _ok(
            call(
                "POST",
                "/createtable",
                {"scope": scope, "session": "arctern", "tables": [{"name": "nyc_taxi", "sql": sql}]},
                token,
            )
        )
        got = _ok(
            call(
                "POST",
                "/query",
                {"scope": scope, "session": "arctern", "sql": "select fare_amount from nyc_taxi limit 1"},
                token,
            )
        )
        assert len(got["result"]) == 1 and isinstance(got["result"][0], float)

        params = {"width": 256, "height": 224, "bounding_box": BOX, "coordinate_system": "EPSG:4326"}
        maps: dict[str, tuple[str, dict[str, Any]]] = {
            "pointmap": (
                f"select ST_Point(pickup_longitude, pickup_latitude) as point from nyc_taxi where {WITHIN}",
                {"point_color": "#2DEF4A", "point_size": 3, "opacity": 0.5},
            ),
            "heatmap": (
                "select ST_Point(pickup_longitude, pickup_latitude) as point, passenger_count as w "
                f"from nyc_taxi where {WITHIN}",
                {"map_zoom_level": 10},
            ),
            "choropleth": (
                "select ST_GeomFromText(buildingtext_dropoff) as wkt, passenger_count as w from nyc_taxi "
                "where buildingtext_dropoff <> ''",
                {"color_gradient": ["#0000FF", "#FF0000"], "color_bound": [2.5, 5], "opacity": 1},
            ),
            "weighted": (
                "select ST_Point(pickup_longitude, pickup_latitude) as point, tip_amount as c, fare_amount as s "
                f"from nyc_taxi where {WITHIN}",
                {
                    "color_gradient": ["#0000FF", "#FF0000"],
                    "color_bound": [0, 2],
                    "size_bound": [0, 10],
                    "opacity": 1.0,
                },
            ),
        }
        for route, (map_sql, extra) in maps.items():
            body = {"scope": scope, "session": "arctern", "sql": map_sql, "params": {**params, **extra}}
            _png(_ok(call("POST", f"/{route}", body, token)), (256, 224))

        table = {"name": "taxi_pq", "format": "parquet", "path": str(parquet)}
        _settled(stack, token, "POST", "/loadfile", {"scope": scope, "session": "arctern", "tables": [table]})
        point_params = {**params, "point_color": "#2DEF4A", "point_size": 3, "opacity": 0.5}
        pngs = [
            _ok(
                call(
                    "POST",
                    "/pointmap",
                    {"scope": scope, "session": "arctern", "sql": sql, "params": point_params},
                    token,
                )
            )
            for sql in (
                "select ST_Point(pickup_longitude, pickup_latitude) from taxi_pq",  # direct Parquet read
                "select ST_Point(pickup_longitude, pickup_latitude) from old_nyc_taxi",  # the CSV, Spark's row path
            )
        ]
        _png(pngs[0], (256, 224))
        assert pngs[0]["result"] == pngs[1]["result"]

        # /command runs in the scope's default session, whose driver starts cold here: a 202 is followed
        cmd = _settled(stack, token, "POST", "/command", {"scope": scope, "command": "x = 20\nprint('hi')\nx + 22"})
        assert cmd["output"] == "hi\n" and cmd["result"] == 42
        status, body, _ = call("POST", "/command", {"scope": scope, "command": "1/0"}, token)
        assert status == 400 and "ZeroDivisionError" in body["message"]

        # the driver dies: the next call gets a new driver, which replays the catalog (old_nyc_taxi,
        # nyc_taxi, taxi_pq) before it runs the query
        before = _driver(stack, scope, "arctern")
        os.kill(int(before["runner_handle"]["pid"]), signal.SIGKILL)
        time.sleep(1)
        count = {"scope": scope, "session": "arctern", "sql": "select count(*) as n from nyc_taxi"}
        got = _settled(stack, token, "POST", "/query", count)
        assert got["result"] == [9999]
        after = _driver(stack, scope, "arctern")
        assert int(after["generation"]) == int(before["generation"]) + 1
        assert after["catalog_replayed"] == {"tables": ["old_nyc_taxi", "nyc_taxi", "taxi_pq"], "failed": []}

        _ok(call("DELETE", f"/scope/{scope}", None, token))
        assert call("POST", "/query", {"scope": scope, "session": "arctern", "sql": "select 1"}, token)[0] == 400
    finally:
        stack.stop()
