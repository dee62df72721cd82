"""The product on a real Spark standalone cluster (``SPARKGATE_CLUSTER=standalone``): one local stack
with a master and two workers (small executors), every surface through HTTP, and proof that the work
ran in executors (other JVMs, under the cluster's uid, in the cluster's network namespace), not in
the driver. Also the boundary the cluster mode claims: a kernel reaches the cluster and nothing else
(no stack port, no outside host, no cluster web UI); executors get no platform credential and cannot
reach the stack's services or read a user's own area.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.stack import StackProcess
from tests.security.conftest import Tenant, _new_tenant

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "data" / "nyc_taxi" / "0_10000_nyc_taxi_and_building.csv"
BOX = [-73.998427, 40.730309, -73.954348, 40.780816]
CLUSTER_UID = 199_999  # the kernel uid base - 1 (SPARKGATE_CLUSTER_UID's default)
TAXI_SCHEMA = [
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
WHERE_RUN = """
import json, os, socket
def _where(_):
    import os
    return [os.getuid(), os.stat('/proc/self/ns/net').st_ino, sorted(k for k in os.environ if k.startswith('AWS_'))]
sc = spark.sparkContext
tasks = sc.parallelize(range(4), 4).map(_where).collect()
infos = sc._jsc.sc().statusTracker().getExecutorInfos()
hosts = [f"{i.host()}:{i.port()}" for i in infos]
print("SGWHERE " + json.dumps({"master": sc.master, "uid": os.getuid(), "netns": os.stat('/proc/self/ns/net').st_ino,
                               "tasks": tasks, "executors": hosts, "driver": sc.getConf().get("spark.driver.host")}))
"""
# what user code in the kernel may connect to: the cluster's master, and nothing else
REACH = """
import json, socket
def _try(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError as err:
        return type(err).__name__
print("SGREACH " + json.dumps({name: _try(h, p) for name, (h, p) in P.items()}))
"""
EXECUTOR_REACH = """
import json
def _probe(_):
    import socket
    out = {}
    for name, (h, p) in P.items():
        try:
            socket.create_connection((h, p), timeout=3).close()
            out[name] = "open"
        except OSError as err:
            out[name] = type(err).__name__
    try:
        open(AREA_FILE).read()
        out["area"] = "read"
    except OSError as err:
        out["area"] = type(err).__name__
    return out
print("SGXREACH " + json.dumps(spark.sparkContext.parallelize([0], 1).map(_probe).collect()[0]))
"""
WORK_PY = """
import os
uids = sorted(set(spark.sparkContext.parallelize(range(4), 4).map(lambda _: os.getuid()).collect()))
print('executor uids', uids, 'driver uid', os.getuid())
"""


def _marked(log: str, tag: str) -> Any:
    for line in log.splitlines():
        if tag + " " in line:
            return json.loads(line.split(tag + " ", 1)[1])
    raise AssertionError(f"no {tag} line in:\n{log[-3000:]}")


def _png(answer: Any, size: tuple[int, int]) -> str:
    assert answer.get("status") == "success", answer
    image = Image.open(io.BytesIO(base64.b64decode(answer["result"])))
    assert image.size == size and image.getchannel("A").getbbox() is not None, "the map is blank"
    return str(answer["result"])


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A world-readable shared root: the taxi CSV, the taxi points as Parquet (4 row groups), two works."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    base = Path(tempfile.mkdtemp(prefix="sg-cluster-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "shared"
    root.mkdir(mode=0o755)
    shutil.copy(TAXI, root / "taxi.csv")
    columns = ["pickup_longitude", "pickup_latitude"]
    points = pa_csv.read_csv(TAXI, convert_options=pa_csv.ConvertOptions(include_columns=columns))
    pq.write_table(points, root / "taxi_points.parquet", row_group_size=2500)
    (root / "rollup.sql").write_text("select count(*) as n from range(${n});\nselect ${answer} as answer\n")
    (root / "where.py").write_text(WORK_PY)
    (root / "icon.png").write_bytes((ROOT / "data" / "arctern_baselines" / "taxi.png").read_bytes())
    for path in root.iterdir():
        path.chmod(0o644)
    (base / "users").mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(shared: Path) -> Iterator[StackProcess]:
    process = StackProcess(
        shared / "state",
        {
            "SPARKGATE_CLUSTER": "standalone",
            "SPARKGATE_CLUSTER_WORKER_CORES": "2",  # 2 workers x 2 cores x 1g, executors of 512m
            "SPARKGATE_CLUSTER_WORKER_MEMORY": "1g",
            "SPARKGATE_DATA_ROOTS": str(shared / "shared"),
            "SPARKGATE_USER_ROOT": str(shared / "users"),
            "SPARKGATE_KERNEL_MEMORY_MB": "2048",
            "SPARKGATE_SCHEDULE_SECONDS": "2",
            "SPARKGATE_SESSION_IDLE_SECONDS": "120",  # the entrance kernel outlives the geo driver's start
        },
    )
    process.start(timeout=180)
    yield process
    netns = next(
        (line.split("network namespace ")[1].split(",")[0] for line in process.output if "network namespace " in line),
        None,
    )
    try:
        process.stop(timeout=90)
    finally:
        Path(tempfile.gettempdir(), "sg-cluster-stack.log").write_text("".join(process.output))
        if netns:  # nothing of the cluster may outlive the test, even when the stack failed to stop it
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def _require_fenced_cluster(stack: StackProcess) -> str:
    banner = "".join(line for line in stack.output if "Spark standalone cluster at" in line)
    assert "spark://10.213.0.1:7077" in banner and "network namespace" in banner, "".join(stack.output)
    return banner


def test_everything_runs_on_executors_of_a_standalone_cluster(stack: StackProcess, shared: Path) -> None:
    _require_fenced_cluster(stack)
    alice: Tenant = _new_tenant(stack, stack.login(), "alice")

    # entrance Python: the tasks ran in executors (other JVMs, the cluster's uid and network), not the driver
    outcome = alice.run(WHERE_RUN)
    assert outcome.status == "Succeed", outcome.error + outcome.log[-3000:]
    where = _marked(outcome.log, "SGWHERE")
    assert where["master"] == "spark://10.213.0.1:7077"
    assert len(where["executors"]) >= 2, where  # the driver and at least one executor
    assert all(uid == CLUSTER_UID and netns != where["netns"] for uid, netns, _ in where["tasks"]), where
    assert where["uid"] != CLUSTER_UID and all(not aws for _, _, aws in where["tasks"]), where

    # entrance SQL
    sql = alice.run("select sum(id) as s, count(*) as n from range(100000)", "sql")
    assert sql.status == "Succeed", sql.error
    assert sql.rows() == [[4999950000, 100000]]

    # geo: loadfile (CSV and Parquet from the shared root), ST_ SQL, every map, the direct Parquet read
    scope = alice.ok("POST", "/scope", {})["scope"]
    table: dict[str, Any] = {"name": "taxi", "format": "csv", "path": str(shared / "shared" / "taxi.csv")}
    table |= {"schema": TAXI_SCHEMA, "options": {"header": "True", "delimiter": ","}}
    parquet = {"name": "taxi_pq", "format": "parquet", "path": str(shared / "shared" / "taxi_points.parquet")}
    status, answer = alice.geo("POST", "/loadfile", {"scope": scope, "tables": [table, parquet]})
    assert status == 200, answer
    status, answer = alice.geo("POST", "/query", {"scope": scope, "sql": "select count(*) as n from taxi"})
    assert status == 200 and answer["result"] == [9999], answer

    # the geo session's driver is another kernel: its link address and driver port
    where_cmd = "import os\nprint(os.environ['SPARK_LOCAL_IP'], spark.sparkContext.getConf().get('spark.driver.port'))"
    status, answer = alice.geo("POST", "/command", {"scope": scope, "command": where_cmd})
    assert status == 200, answer
    geo_host, geo_port = answer["output"].split()
    assert geo_host.startswith("100.") and geo_host != where["driver"], (geo_host, where)

    # the boundary: the kernel reaches the cluster's master and nothing else
    reach = {
        "master": ("10.213.0.1", 7077),
        "master_ui": ("10.213.0.1", 8080),
        "stack_http": ("127.0.0.1", stack.http_port),
        "outside": ("1.1.1.1", 80),
        "other_kernel": (geo_host, int(geo_port)),
    }
    probe = alice.run(f"P = {reach!r}\n" + REACH)
    assert probe.status == "Succeed", probe.error
    got = _marked(probe.log, "SGREACH")
    assert got["master"] == "open", got
    assert got["master_ui"] == "ConnectionRefusedError" and got["stack_http"] == "ConnectionRefusedError", got
    # no route at all (ENETUNREACH), not a timeout: outside hosts and other kernels' drivers
    assert got["outside"] == "OSError" and got["other_kernel"] == "OSError", got
    # executors: no stack service on their loopback, no user's own area; but every driver's link (the
    # documented limit of standalone: all executors share one network and one uid)
    area = shared / "users" / alice.user_id / "secret.txt"
    wrote = alice.run(f"open({str(area)!r}, 'w').write('mine')")
    assert wrote.status == "Succeed", wrote.error
    xprobe = alice.run(
        f"P = {{'stack_http': ('127.0.0.1', {stack.http_port}), 'other_kernel': ({geo_host!r}, {geo_port})}}\n"
        f"AREA_FILE = {str(area)!r}\n" + EXECUTOR_REACH
    )
    assert xprobe.status == "Succeed", xprobe.error
    expected = {"stack_http": "ConnectionRefusedError", "other_kernel": "open", "area": "PermissionError"}
    assert _marked(xprobe.log, "SGXREACH") == expected

    st_sql = "select ST_AsText(ST_Point(1.5, 2.5)) as p"
    status, answer = alice.geo("POST", "/query", {"scope": scope, "sql": st_sql})
    assert status == 200 and answer["result"] == ["POINT (1.5 2.5)"], answer

    within = f"pickup_longitude between {BOX[0]} and {BOX[2]} and pickup_latitude between {BOX[1]} and {BOX[3]}"
    base = {"width": 128, "height": 112, "bounding_box": BOX, "coordinate_system": "EPSG:4326"}
    gradient = {"color_gradient": ["#0000FF", "#FF0000"], "opacity": 1.0}
    maps: dict[str, tuple[str, dict[str, Any]]] = {
        "pointmap": (
            f"select ST_Point(pickup_longitude, pickup_latitude) from taxi where {within}",
            {"point_color": "#2DEF4A", "point_size": 3, "opacity": 0.5},
        ),
        "heatmap": (
            f"select ST_Point(pickup_longitude, pickup_latitude), passenger_count from taxi where {within}",
            {"map_zoom_level": 10},
        ),
        "choropleth": (
            "select ST_GeomFromText(buildingtext_dropoff), passenger_count from taxi where buildingtext_dropoff <> ''",
            {**gradient, "color_bound": [2.5, 5]},
        ),
        "weighted": (
            f"select ST_Point(pickup_longitude, pickup_latitude), tip_amount, fare_amount from taxi where {within}",
            {**gradient, "color_bound": [0, 2], "size_bound": [0, 10]},
        ),
        "fishnetmap": (
            f"select ST_Point(pickup_longitude, pickup_latitude), fare_amount from taxi where {within}",
            {**gradient, "cell_size": 4, "cell_spacing": 1},
        ),
        "icon_viz": (
            f"select ST_Point(pickup_longitude, pickup_latitude) from taxi where {within}",
            {"icon_path": str(shared / "shared" / "icon.png")},
        ),
    }
    for route, (map_sql, extra) in maps.items():
        status, answer = alice.geo("POST", f"/{route}", {"scope": scope, "sql": map_sql, "params": {**base, **extra}})
        assert status == 200, (route, answer)
        _png(answer, (128, 112))
    points = {**base, "point_color": "#2DEF4A", "point_size": 3, "opacity": 0.5}
    pngs = []
    for source in ("taxi_pq", "taxi"):  # the direct Parquet read (executors read the row groups), the row path
        body = {"scope": scope, "sql": f"select ST_Point(pickup_longitude, pickup_latitude) from {source}"}
        status, answer = alice.geo("POST", "/pointmap", {**body, "params": points})
        assert status == 200, answer
        pngs.append(_png(answer, (128, 112)))
    assert pngs[0] == pngs[1]

    # works: a SPARK_SQL work and a PYSPARK work (its tasks on executors) from the shared root
    task, done = alice.run_work("SPARK_SQL", str(shared / "shared" / "rollup.sql"), ["-Dn=7", "-Danswer=42"])
    assert task["status"] == 0 and done is not None and done.status == "Succeed", (task, done)
    assert done.rows(0) == [[7]] and done.rows(1) == [[42]]
    task, done = alice.run_work("PYSPARK", str(shared / "shared" / "where.py"))
    assert task["status"] == 0 and done is not None, (task, done)
    assert f"executor uids [{CLUSTER_UID}] driver uid " in done.log, done.log[-3000:]
