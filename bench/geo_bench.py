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
from typing import Any

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


COLUMNS = ["x", "y", "w", "passenger_count"]


def write_points(path: Path, rows: int) -> None:
    """Uniform points (x, y, integer weight w, passenger_count 1-6) in BOX, written once as
    Parquet and as CSV (same values, ``path`` with suffix ``.csv``)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    csv = path.with_suffix(".csv")
    if path.exists() and csv.exists():
        return
    rng = np.random.default_rng(42)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "x": rng.uniform(BOX[0], BOX[2], rows),
            "y": rng.uniform(BOX[1], BOX[3], rows),
            "w": rng.integers(1, 6, rows).astype(np.int64),
            "passenger_count": rng.integers(1, 7, rows).astype(np.int32),
        }
    )
    pq.write_table(table, path, row_group_size=1_000_000)
    pcsv.write_csv(table, csv, pcsv.WriteOptions(quoting_style="none"))


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
    ap.add_argument("--sections", default="plain,where,within", help="comma-separated: plain, where, within")
    args = ap.parse_args()
    path = Path(args.data)
    if path.exists():
        meta = __import__("pyarrow.parquet").parquet.ParquetFile(path).metadata
        if meta.num_rows != args.rows or meta.schema.to_arrow_schema().names != COLUMNS:
            path.unlink()
            path.with_suffix(".csv").unlink(missing_ok=True)
    write_points(path, args.rows)
    csv_path = path.with_suffix(".csv")
    # the CSV table's columnar copy lives in a private folder (in a kernel: the user's own area)
    cache = path.parent / "csv-cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    os.environ["SPARKGATE_GEO_CSV_CACHE"] = str(cache)
    os.environ["SPARKGATE_KERNEL_ROOTS"] = str(path.parent)
    sections = set(args.sections.split(","))

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

    if "plain" in sections:
        record("pointmap", spark_point, ds_point)
        record("heatmap", spark_heat, ds_heat)
    if "where" in sections:
        where_maps(spark, path, csv_path, params, args.repeat, record)
    if "plain" not in sections and "within" not in sections:
        report(args, results)
        spark.stop()
        return

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

    if "plain" in sections:
        assert row_path(spark_point)() == spark_point()
        assert row_path(spark_heat)() == spark_heat()
        record("pointmap, Spark row path (direct Parquet read off)", row_path(spark_point), ds_point)
        record("heatmap, Spark row path (direct Parquet read off)", row_path(spark_heat), ds_heat)
    if "within" not in sections:
        report(args, results)
        spark.stop()
        return

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

    report(args, results)
    spark.stop()


Record = Callable[[str, Callable[[], object], Callable[[], object]], None]


def where_maps(spark: Any, path: Path, csv_path: Path, params: dict[str, Any], repeat: int, record: Record) -> None:
    """The seed's query shapes: pointmap, heatmap and weighted with ``WHERE ST_Within(ST_Point(x, y),
    <literal polygon>)`` (the heatmap and weighted maps with ``AND passenger_count > 1``), over the
    Parquet table and over the CSV table loaded the way ``/loadfile`` does it (``ops.load_table``).
    Peer: the same file read by pandas, filtered with shapely's vectorised ``contains_xy`` (and the
    comparison), drawn by datashader."""
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd
    import shapely

    from chalicelib.engine.geo import ops
    from chalicelib.engine.geo.parquet_scan import CONF_ENABLED
    from chalicelib.engine.geo.projection import lonlat_to_mercator

    within = f"ST_Within(ST_Point(x, y), ST_GeomFromText('{POLY}'))"
    poly = shapely.from_wkt(POLY)
    shapely.prepare(poly)
    mx, my = lonlat_to_mercator(np.array([BOX[0], BOX[2]]), np.array([BOX[1], BOX[3]]))
    maps = {
        "pointmap": (
            f"select ST_Point(x, y) as p from {{t}} where {within}",
            dict(params, point_size=3, point_color="#2DEF4A", opacity=0.5),
        ),
        "heatmap": (
            f"select ST_Point(x, y) as p, w from {{t}} where {within} and passenger_count > 1",
            dict(params, map_zoom_level=10),
        ),
        "weighted": (
            f"select ST_Point(x, y) as p, w as c from {{t}} where {within} and passenger_count > 1",
            dict(params, color_gradient=["#4D904F", "#C23728"], color_bound=[1, 5], size_bound=[3], opacity=1.0),
        ),
    }

    def load(table: str) -> None:
        # what the kernel runs for POST /loadfile (parquet or csv with header + inferSchema)
        if table == "pts_csv":
            source = dict(format="csv", path=str(csv_path), options={"header": "true", "inferSchema": "true"})
        else:
            source = dict(format="parquet", path=str(path), options={})
        ops.load_table(spark, dict(kind="file", name=table, **source))

    def ours(kind: str, table: str) -> Callable[[], bytes]:
        sql, map_params = maps[kind]

        def run() -> bytes:
            png: bytes = ops.render(spark, kind, sql.format(t=table), map_params)["png"]
            return png

        return run

    def peer(kind: str, table: str) -> Callable[[], bytes]:
        def run() -> bytes:
            cols = ["x", "y"] + (["w", "passenger_count"] if kind != "pointmap" else [])
            if table == "pts_csv":
                pdf = pd.read_csv(csv_path, usecols=cols, engine="pyarrow")
            else:
                pdf = pd.read_parquet(path, columns=cols)
            keep = shapely.contains_xy(poly, pdf["x"].to_numpy(), pdf["y"].to_numpy())
            if kind != "pointmap":
                keep &= pdf["passenger_count"].to_numpy() > 1
            pdf = pdf[keep]
            px, py = lonlat_to_mercator(pdf["x"].to_numpy(), pdf["y"].to_numpy())
            pdf = pdf.assign(mx=px, my=py)
            cvs = ds.Canvas(plot_width=W, plot_height=H, x_range=(mx[0], mx[1]), y_range=(my[0], my[1]))
            if kind == "pointmap":
                img = tf.spread(tf.shade(cvs.points(pdf, "mx", "my", agg=ds.any()), cmap=["#2DEF4A"]), px=1)
            elif kind == "heatmap":
                agg = cvs.points(pdf, "mx", "my", agg=ds.sum("w"))
                img = tf.spread(tf.shade(agg, cmap=["blue", "cyan", "lime", "yellow", "red"], how="linear"), px=4)
            else:
                agg = cvs.points(pdf, "mx", "my", agg=ds.sum("w"))
                img = tf.spread(tf.shade(agg, cmap=["#4D904F", "#C23728"], how="linear"), px=1)
            png: bytes = img.to_bytesio().getvalue()
            return png

        return run

    for table, label in (("pts_where", "Parquet"), ("pts_csv", "CSV")):
        load(table)
        for kind in maps:
            fast = ours(kind, table)
            src = ops.map_source(spark, kind, maps[kind][0].format(t=table))
            taken = src.parquet is not None and src.parquet.where is not None
            spark.conf.set(CONF_ENABLED, "false")
            try:
                row = ours(kind, table)()
            finally:
                spark.conf.unset(CONF_ENABLED)
            assert fast() == row, f"{kind} of the {label} table: the direct read drew other bytes"
            assert taken, f"{kind} of the {label} table did not take the direct read"
            suffix = " and passenger_count > 1" if kind != "pointmap" else ""
            record(f"{kind}, {label} table, WHERE ST_Within(polygon){suffix}", fast, peer(kind, table))
    del repeat


def report(args: argparse.Namespace, results: list[tuple[str, float, float, float, float, float, str]]) -> None:
    """The results table (markdown), with the machine, command and commit."""
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "chalicelib", "bench"], capture_output=True, text=True, cwd=REPO
    )
    print("\n" + machine())
    print(f"commit {commit.stdout.strip()}{' (+ uncommitted changes)' if dirty.stdout.strip() else ''}")
    print(
        f"rows={args.rows:,}  command: {' '.join(sys.argv)}  at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print(
        "| task | ours cold (s) | ours warm (s) | peer cold (s) | peer warm (s) | ratio best warm | "
        "ratio median of rounds | load avg (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, oc, ow, tc, tw, ratio, load in results:
        print(f"| {name} | {oc:.2f} | {ow:.2f} | {tc:.2f} | {tw:.2f} | {ow / tw:.2f} | {ratio:.2f} | {load} |")


if __name__ == "__main__":
    main()
