"""Geo engine bench: 10M-point pointmap/heatmap vs datashader, ST_Within vs GeoPandas.

Run from the repo root (bench deps: ``pip install -r bench/requirements.txt``)::

    .venv/bin/python bench/geo_bench.py [--rows 10000000]

Synthetic uniform points in the NYC box are written once to parquet; every timing
starts from that parquet file and ends with the PNG bytes (maps) or the count
(ST_Within).  Each timing is the best of ``--repeat`` warm runs (JIT / JVM warm-up
excluded for both sides; the cold first run is reported too).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ["PYTHONPATH"] = str(REPO)

BOX = [-74.05, 40.60, -73.85, 40.85]
POLY = (
    "POLYGON ((-73.998427 40.730309, -73.954348 40.730309, -73.954348 40.780816, "
    "-73.998427 40.780816, -73.998427 40.730309))"
)
W, H = 1024, 896


def write_points(path: Path, rows: int) -> None:
    """Uniform points (x, y, w) in BOX, written once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return
    rng = np.random.default_rng(42)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "x": rng.uniform(BOX[0], BOX[2], rows),
            "y": rng.uniform(BOX[1], BOX[3], rows),
            "w": rng.integers(1, 6, rows).astype(np.int64),
        }
    )
    pq.write_table(table, path, row_group_size=1_000_000)


def timepair(ours: Callable[[], object], peer: Callable[[], object], repeat: int) -> tuple[float, ...]:
    """Cold runs, then ``repeat`` warm rounds alternating ours/peer (so both see the same load).

    Returns (ours cold, ours best warm, peer cold, peer best warm, median of the per-round
    warm ratios ours/peer).
    """

    def once(fn: Callable[[], object]) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    oc, pc = once(ours), once(peer)
    ow, pw = [], []
    for _ in range(repeat):
        ow.append(once(ours))
        pw.append(once(peer))
    ratio = float(np.median([o / p for o, p in zip(ow, pw, strict=True)]))
    return oc, min(ow), pc, min(pw), ratio


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except OSError:
        mem = float("nan")
    return f"nproc={os.cpu_count()}, RAM={mem:.1f} GiB, CPU={cpu}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", default=str(REPO / ".sparkgate" / "bench" / "points.parquet"))
    args = ap.parse_args()
    path = Path(args.data)
    if (
        path.exists()
        and len(__import__("pyarrow.parquet").parquet.ParquetFile(path).metadata.to_dict())
        and (__import__("pyarrow.parquet").parquet.ParquetFile(path).metadata.num_rows != args.rows)
    ):
        path.unlink()
    write_points(path, args.rows)

    import datashader as ds
    import datashader.transfer_functions as tf
    import geopandas as gpd
    import pandas as pd
    import shapely
    from pyspark.sql import SparkSession

    from chalicelib.engine.geo import ops, register_st_functions
    from chalicelib.engine.geo.parquet_scan import CONF_ENABLED

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    register_st_functions(spark)
    params = dict(width=W, height=H, bounding_box=BOX, coordinate_system="EPSG:4326")
    results: list[tuple[str, float, float, float, float, float, str]] = []

    # The path the HTTP routes take: a session view of the file, the map's SQL, ops.render.
    def spark_point() -> bytes:
        spark.read.parquet(str(path)).createOrReplaceTempView("pts")
        point_params = dict(params, point_size=3, point_color="#2DEF4A", opacity=0.5)
        png: bytes = ops.render(spark, "pointmap", "select ST_Point(x, y) as p from pts", point_params)["png"]
        return png

    def spark_heat() -> bytes:
        spark.read.parquet(str(path)).createOrReplaceTempView("pts")
        png: bytes = ops.render(
            spark, "heatmap", "select ST_Point(x, y) as p, w from pts", dict(params, map_zoom_level=10)
        )["png"]
        return png

    from chalicelib.engine.geo.projection import lonlat_to_mercator

    mx, my = lonlat_to_mercator(np.array([BOX[0], BOX[2]]), np.array([BOX[1], BOX[3]]))

    def ds_frame() -> pd.DataFrame:
        pdf = pd.read_parquet(path)
        pdf["mx"], pdf["my"] = lonlat_to_mercator(pdf["x"].to_numpy(), pdf["y"].to_numpy())
        return pdf

    def ds_point() -> bytes:
        pdf = ds_frame()
        cvs = ds.Canvas(plot_width=W, plot_height=H, x_range=(mx[0], mx[1]), y_range=(my[0], my[1]))
        img = tf.spread(tf.shade(cvs.points(pdf, "mx", "my", agg=ds.any()), cmap=["#2DEF4A"]), px=1)
        png: bytes = img.to_bytesio().getvalue()
        return png

    def ds_heat() -> bytes:
        pdf = ds_frame()
        cvs = ds.Canvas(plot_width=W, plot_height=H, x_range=(mx[0], mx[1]), y_range=(my[0], my[1]))
        agg = cvs.points(pdf, "mx", "my", agg=ds.sum("w"))
        img = tf.spread(tf.shade(agg, cmap=["blue", "cyan", "lime", "yellow", "red"], how="linear"), px=4)
        png: bytes = img.to_bytesio().getvalue()
        return png

    def record(name: str, ours: Callable[[], object], peer: Callable[[], object]) -> None:
        load0 = os.getloadavg()[0]
        oc, ow, tc, tw, ratio = timepair(ours, peer, args.repeat)
        load = f"{load0:.1f}->{os.getloadavg()[0]:.1f}"
        results.append((name, oc, ow, tc, tw, ratio, load))
        print(
            f"{name}: ours cold {oc:.2f}s warm {ow:.2f}s | peer cold {tc:.2f}s warm {tw:.2f}s | load {load}", flush=True
        )

    record("pointmap", spark_point, ds_point)
    record("heatmap", spark_heat, ds_heat)

    def row_path(fn: Callable[[], bytes]) -> Callable[[], bytes]:
        """The same map with the direct Parquet read off: rows come through Spark's row path
        (what any query that is not a plain Parquet projection takes)."""

        def run() -> bytes:
            spark.conf.set(CONF_ENABLED, "false")
            try:
                return fn()
            finally:
                spark.conf.unset(CONF_ENABLED)

        return run

    assert row_path(spark_point)() == spark_point()
    assert row_path(spark_heat)() == spark_heat()
    record("pointmap, Spark row path (direct Parquet read off)", row_path(spark_point), ds_point)
    record("heatmap, Spark row path (direct Parquet read off)", row_path(spark_heat), ds_heat)

    def spark_within() -> int:
        spark.read.parquet(str(path)).createOrReplaceTempView("pts")
        sql = f"select count(*) from pts where ST_Within(ST_Point(x, y), ST_GeomFromText('{POLY}'))"
        return int(ops.query(spark, sql)["result"][0])

    def spark_within_select() -> int:
        # the predicate in the select list: no box pre-filter, every row goes to Python
        spark.read.parquet(str(path)).createOrReplaceTempView("pts")
        sql = f"select count_if(ST_Within(ST_Point(x, y), ST_GeomFromText('{POLY}'))) from pts"
        return int(ops.query(spark, sql)["result"][0])

    poly = shapely.from_wkt(POLY)

    def gpd_within() -> int:
        pdf = pd.read_parquet(path, columns=["x", "y"])
        gs = gpd.GeoSeries(gpd.points_from_xy(pdf["x"], pdf["y"]))
        return int(gs.within(poly).sum())

    assert spark_within() == gpd_within() == spark_within_select()
    record("ST_Within(ST_Point(x,y), polygon) count (WHERE)", spark_within, gpd_within)
    record("same, predicate in the SELECT list (all rows to Python)", spark_within_select, gpd_within)

    print("\n" + machine())
    print(f"rows={args.rows:,}  command: {' '.join(sys.argv)}\n")
    print(
        "| task | ours cold (s) | ours warm (s) | peer cold (s) | peer warm (s) | ratio best warm | "
        "ratio median of rounds | load avg (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, oc, ow, tc, tw, ratio, load in results:
        print(f"| {name} | {oc:.2f} | {ow:.2f} | {tc:.2f} | {tw:.2f} | {ow / tw:.2f} | {ratio:.2f} | {load} |")
    spark.stop()


if __name__ == "__main__":
    main()
