"""Maps with a WHERE through the direct read (``geo.predicates``) and CSV tables through their
columnar copy (``geo.csv_cache``): same PNG bytes as Spark's row path, refused shapes fall back,
hostile input never widens what is read, the copy stays private and follows file changes."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pyspark.sql import DataFrame, SparkSession

from chalicelib.engine.geo import csv_cache, ops, predicates, render
from chalicelib.engine.geo.parquet_scan import CONF_ENABLED, _scan

POLY = (
    "POLYGON ((-73.998427 40.730309, -73.954348 40.730309, -73.954348 40.780816, "
    "-73.998427 40.780816, -73.998427 40.730309))"
)
BOX = [-74.01, 40.70, -73.93, 40.80]
WITHIN = f"ST_Within(ST_Point(lon, lat), ST_GeomFromText('{POLY}'))"
EXTRA: dict[str, dict[str, Any]] = {
    "pointmap": dict(point_size=3, point_color="#2DEF4A", opacity=0.5),
    "heatmap": dict(map_zoom_level=10),
    "weighted": dict(color_gradient=["#4D904F", "#C23728"], color_bound=[0, 20], size_bound=[3], opacity=1.0),
}
COLUMNS = {
    "pointmap": "ST_Point(lon, lat) as p",
    "heatmap": "ST_Point(lon, lat) as p, n",
    "weighted": "ST_Point(lon, lat) as p, fare",
}


def params(kind: str) -> dict[str, Any]:
    return dict(width=300, height=240, bounding_box=BOX, coordinate_system="EPSG:4326", **EXTRA[kind])


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private folder the kernel's SQL may read (as the user's area is), holding the CSV cache."""
    root = tmp_path_factory.mktemp("area")
    os.chmod(root, 0o700)
    saved = {k: os.environ.get(k) for k in ("SPARKGATE_KERNEL_ROOTS", csv_cache.CACHE_ENV)}
    os.environ["SPARKGATE_KERNEL_ROOTS"] = str(root)
    os.environ[csv_cache.CACHE_ENV] = str(root / "cache")
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def taxi(nyc_taxi: DataFrame, geo_spark: SparkSession, area: Path) -> str:
    """Table ``wt`` (Parquet, 2 files of several row groups): lon/lat with nulls and NaN, int n, double fare."""
    table = nyc_taxi.selectExpr(
        "if(fare_amount > 40, null, pickup_longitude) as lon",
        "if(tip_amount > 5, double('NaN'), pickup_latitude) as lat",
        "passenger_count as n",
        "if(total_amount > 30, double('NaN'), fare_amount) as fare",
    ).toArrow()
    folder = area / "wt"
    folder.mkdir()
    half = table.num_rows // 2
    for i, part in enumerate([table.slice(0, half), table.slice(half)]):
        pq.write_table(part, folder / f"p{i}.parquet", row_group_size=2000)
    ops.load_table(geo_spark, {"kind": "file", "name": "wt", "format": "parquet", "path": str(folder)})
    return str(folder)


def row_path(spark: SparkSession, kind: str, sql: str) -> bytes:
    spark.conf.set(CONF_ENABLED, "false")
    try:
        png: bytes = ops.render(spark, kind, sql, params(kind))["png"]
        return png
    finally:
        spark.conf.unset(CONF_ENABLED)


WHERES = [
    WITHIN,
    f"{WITHIN} AND n > 1",
    f"ST_Contains(ST_GeomFromText('{POLY}'), ST_Point(lon, lat)) and 2 <= n",
    f"ST_Intersects(ST_Point(lon, lat), ST_GeomFromText('{POLY}')) and fare > 8.5",
    f"({WITHIN} or n = 5) and fare != 10.0",
    "lat is not null and lon >= -73.99 and fare <= 12.5",
]


@pytest.mark.parametrize("kind", ["pointmap", "heatmap", "weighted"])
@pytest.mark.parametrize("where", WHERES)
def test_where_maps_take_the_direct_read_and_draw_the_row_paths_bytes(
    taxi: str, geo_spark: SparkSession, kind: str, where: str
) -> None:
    sql = f"select {COLUMNS[kind]} from wt where {where}"
    src = ops.map_source(geo_spark, kind, sql)
    assert isinstance(src, render.XYPoints) and src.parquet is not None and src.parquet.where is not None
    fast = ops.render(geo_spark, kind, sql, params(kind))["png"]
    assert fast == row_path(geo_spark, kind, sql)
    lit = np.asarray(Image.open(io.BytesIO(fast)))[..., 3] > 0
    assert 0 < lit.sum() < lit.size  # the filter kept some rows, not all


REFUSED = [
    "n > (select min(n) from wt)",  # a subquery the optimizer cannot fold
    "lon > lat",  # a column on both sides
    "isnan(fare)",  # a function
    "n % 2 = 0",  # a computed value
    "cast(lon as float) > -73.98",  # a (lossy) cast of the column
    f"ST_Within(ST_Point(lon + 0, lat), ST_GeomFromText('{POLY}'))",  # a computed coordinate
    "n in (1, 2)",
    "fare > double('NaN')",  # a NaN literal
    "lon <=> -73.98",  # null-safe equality
]


@pytest.mark.parametrize("where", REFUSED)
def test_where_the_direct_read_does_not_understand_falls_back_to_the_row_path(
    taxi: str, geo_spark: SparkSession, where: str
) -> None:
    sql = f"select ST_Point(lon, lat) as p, n from wt where {where}"
    src = ops.map_source(geo_spark, "heatmap", sql)
    assert isinstance(src, render.XYPoints) and src.parquet is None
    png = ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"]
    assert png == render.render_map("heatmap", geo_spark.sql(sql), params("heatmap"))  # the WKB path


@pytest.mark.parametrize(
    "where",
    [
        "n > 1 --' or 1=1",  # a comment, not a tautology
        "n > 1 or 1 = 1",  # a real tautology: Spark drops the filter, every row is drawn
        f"ST_Within(ST_Point(lon, lat), ST_GeomFromText('{POLY}') OR 1=1 --'))",  # does not parse
        f"ST_Within(ST_Point(lon, lat), ST_GeomFromText('{POLY[:-1]}'') OR 1=1 --'))",  # not a polygon
        "n > 1 /* ') or 1=1 -- */ and n < 4",
        "'1' = '1' and n > 2",
    ],
)
def test_hostile_where_draws_what_the_row_path_draws(taxi: str, geo_spark: SparkSession, where: str) -> None:
    """Whatever the text, the direct read filters by Spark's own reading of it: the same rows or the same error."""
    sql = f"select ST_Point(lon, lat) as p, n from wt where {where}"
    try:
        expected: bytes | type[BaseException] = row_path(geo_spark, "heatmap", sql)
    except Exception as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"] == expected
    else:
        with pytest.raises(expected):
            ops.render(geo_spark, "heatmap", sql, params("heatmap"))


def test_point_udf_named_by_the_user_is_not_trusted(taxi: str, geo_spark: SparkSession) -> None:
    """Only the point predicates this query's own rewrite registered are evaluated directly."""
    registered: dict[str, tuple[str, str]] = {}
    from chalicelib.engine.geo.rewrite import rewrite_sql

    rewrite_sql(geo_spark, f"select 1 from wt where {WITHIN}", registered)
    (name,) = registered
    sql = f"select ST_Point(lon, lat) as p from wt where {name}(lon, lat)"
    src = ops.map_source(geo_spark, "pointmap", sql)
    assert isinstance(src, render.XYPoints) and src.parquet is None
    assert ops.render(geo_spark, "pointmap", sql, params("pointmap"))["png"] == row_path(geo_spark, "pointmap", sql)


@pytest.fixture(scope="module")
def specials(geo_spark: SparkSession, area: Path) -> DataFrame:
    f = [1.0, -0.0, 0.0, float("nan"), float("inf"), float("-inf"), None, 2.5, -1.0, 1e308]
    i = [1, 0, -2147483648, 2147483647, None, 7, 1, 2, -1, 3]
    path = area / "specials.parquet"
    pq.write_table(
        pa.table({"id": list(range(10)), "f": f, "g": pa.array(f, pa.float32()), "i": pa.array(i, pa.int32())}), path
    )
    return geo_spark.read.parquet(str(path))


@pytest.mark.parametrize(
    "cond",
    [
        *(
            "f > 1.0",
            "f >= 1.0",
            "f < 1.0",
            "f <= 0.0",
            "f = 0.0",
            "f != 1.0",
            "-0.0 = f",
            "1.0 < f",
            "f = double('inf')",
        ),
        *("g > float(1.0)", "g <= float(2.5)", "i = 2147483647", "i > -2147483648", "i != 1", "i <= 1"),
        *("f is null", "f is not null", "i is null", "(f > 1.0 or i = 0) and id < 9", "f > 1.0 or f < 1.0"),
    ],
)
def test_predicates_keep_exactly_the_rows_spark_keeps(specials: DataFrame, geo_spark: SparkSession, cond: str) -> None:
    """Spark's comparison rules (NaN above every number and equal to itself, -0.0 = 0.0, nulls) on the tree."""
    specials.createOrReplaceTempView("specials")
    df = geo_spark.sql(f"select id from specials where {cond}")
    scan = _scan(df, {})
    assert scan is not None and scan.where is not None
    table = pq.read_table(specials.inputFiles()[0].removeprefix("file:"))
    kept = table.column("id").to_numpy()[predicates.evaluate(scan.where, table.to_batches()[0])]
    assert sorted(kept.tolist()) == sorted(r.id for r in df.collect())


# ------------------------------------------------------------------ CSV tables
@pytest.fixture
def taxi_csv(taxi: str, area: Path, tmp_path: Path) -> Path:
    """The taxi rows as a CSV in the area, with a malformed and a short row."""
    csv = area / f"{tmp_path.name}.csv"
    table = pq.read_table(taxi)
    lines = ["lon,lat,n,fare"]
    for lon, lat, n, fare in zip(*(table.column(c).to_pylist() for c in ("lon", "lat", "n", "fare")), strict=True):
        lines.append(",".join("" if v is None else "NaN" if v != v else repr(v) for v in (lon, lat, n, fare)))
    lines[5] = "-73.97,40.75,x,7.0"  # n is not a number: null under PERMISSIVE
    lines[6] = "-73.975,40.755"  # too short: n and fare null
    csv.write_text("\n".join(lines) + "\n")
    return csv


def load_csv(spark: SparkSession, path: Path, **options: str) -> None:
    """As ``/loadfile`` does; a schema, since inferring one would make ``n`` a string (the bad row)."""
    table = {"kind": "file", "name": "wcsv", "format": "csv", "path": str(path)}
    schema = "lon double, lat double, n int, fare double"
    ops.load_table(spark, dict(table, schema=schema, options={"header": "true", **options}))


def copies(area: Path) -> list[Path]:
    return sorted(p for p in (area / "cache").iterdir() if not p.name.startswith("tmp-"))


@pytest.mark.parametrize("kind", ["pointmap", "heatmap", "weighted"])
def test_csv_table_maps_from_its_private_columnar_copy(
    taxi_csv: Path, area: Path, geo_spark: SparkSession, kind: str
) -> None:
    load_csv(geo_spark, taxi_csv)
    sql = f"select {COLUMNS[kind]} from wcsv where {WITHIN} and n > 1"
    src = ops.map_source(geo_spark, kind, sql)
    assert isinstance(src, render.XYPoints) and src.parquet is not None
    files = {uri for part in src.parquet.slices for uri, _ in part}
    assert all(uri.startswith((area / "cache").as_uri() + "/") for uri in files)
    assert ops.render(geo_spark, kind, sql, params(kind))["png"] == row_path(geo_spark, kind, sql)
    root = area / "cache"
    for path in [root, *copies(area), *[f for c in copies(area) for f in c.iterdir()]]:
        assert os.lstat(path).st_mode & 0o077 == 0 and os.lstat(path).st_uid == os.getuid()


def test_csv_copy_follows_the_file(taxi_csv: Path, area: Path, geo_spark: SparkSession) -> None:
    """A changed file is never read through an old copy: until the table is loaded again the map takes
    the row path; after, a new copy replaces the old one."""
    load_csv(geo_spark, taxi_csv)
    sql = f"select ST_Point(lon, lat) as p, n from wcsv where {WITHIN}"
    first = ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"]
    mine = [c for c in copies(area) if c.name.startswith(ops_prefix(taxi_csv))]
    assert len(mine) == 1
    before = os.stat(mine[0]).st_mtime_ns
    assert ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"] == first
    assert os.stat(mine[0]).st_mtime_ns == before  # not written again
    text = taxi_csv.read_text().splitlines()
    taxi_csv.write_text("\n".join([text[0], *text[1:][::2]]) + "\n")  # half the rows
    stale = ops.map_source(geo_spark, "heatmap", sql)
    assert isinstance(stale, render.XYPoints) and stale.parquet is None
    load_csv(geo_spark, taxi_csv)
    png = ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"]
    assert png != first and png == row_path(geo_spark, "heatmap", sql)
    now = [c for c in copies(area) if c.name.startswith(ops_prefix(taxi_csv))]
    assert len(now) == 1 and now != mine


def ops_prefix(path: Path) -> str:
    import hashlib

    return hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:16]


def test_csv_modes_that_depend_on_the_columns_read_are_not_copied(taxi_csv: Path, geo_spark: SparkSession) -> None:
    load_csv(geo_spark, taxi_csv, mode="DROPMALFORMED")
    sql = f"select ST_Point(lon, lat) as p, n from wcsv where {WITHIN}"
    src = ops.map_source(geo_spark, "heatmap", sql)
    assert isinstance(src, render.XYPoints) and src.parquet is None


def test_csv_copy_never_follows_a_symlink(taxi_csv: Path, area: Path, geo_spark: SparkSession, tmp_path: Path) -> None:
    """A copy swapped for a symlink (to another folder of Parquet files) is not read; nor is a cache
    root that is a symlink, or a folder of another uid."""
    load_csv(geo_spark, taxi_csv)
    sql = f"select ST_Point(lon, lat) as p, n from wcsv where {WITHIN}"
    expected = ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"]
    (entry,) = [c for c in copies(area) if c.name.startswith(ops_prefix(taxi_csv))]
    elsewhere = tmp_path / "elsewhere"
    os.rename(entry, elsewhere)
    os.symlink(elsewhere, entry)
    src = ops.map_source(geo_spark, "heatmap", sql)
    assert isinstance(src, render.XYPoints) and src.parquet is None
    assert ops.render(geo_spark, "heatmap", sql, params("heatmap"))["png"] == expected
    assert os.path.islink(entry)  # left alone, not replaced through
    os.unlink(entry)

    real_root = tmp_path / "real-root"
    real_root.mkdir(mode=0o700)
    link = tmp_path / "link-root"
    os.symlink(real_root, link)
    os.environ[csv_cache.CACHE_ENV] = str(link)
    try:
        assert csv_cache.cache_root() is None
        src = ops.map_source(geo_spark, "heatmap", sql)
        assert isinstance(src, render.XYPoints) and src.parquet is None
        assert list(real_root.iterdir()) == []
        other = tmp_path / "other-uid"
        other.mkdir(mode=0o700)
        os.chown(other, os.getuid() + 4242, os.getgid())
        os.environ[csv_cache.CACHE_ENV] = str(other)
        assert csv_cache.cache_root() is None
    finally:
        os.environ[csv_cache.CACHE_ENV] = str(area / "cache")


def test_cache_root_defaults_to_a_private_folder_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(csv_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    root = csv_cache.cache_root()
    assert root == tmp_path / ".cache" / "sparkgate-geo-csv"
    assert all(os.lstat(p).st_mode & 0o777 == 0o700 for p in (root, root.parent))
    os.chmod(root, 0o755)
    assert csv_cache.cache_root() == root and os.lstat(root).st_mode & 0o777 == 0o700


def test_csv_whose_real_path_is_a_pattern_is_not_copied(taxi_csv: Path, area: Path, geo_spark: SparkSession) -> None:
    """The copy is read from the file's real path; one that Spark would expand as a pattern
    (here ``w[1].csv`` would also name ``w1.csv``) is not copied: the row path reads the link."""
    real = area / "w[1].csv"
    real.write_bytes(taxi_csv.read_bytes())
    (area / "w1.csv").write_text("lon,lat,n,fare\n-73.97,40.75,3,1.0\n")
    link = area / "plain-link.csv"
    link.unlink(missing_ok=True)
    os.symlink(real, link)
    load_csv(geo_spark, link)
    sql = f"select ST_Point(lon, lat) as p, n from wcsv where {WITHIN}"
    src = ops.map_source(geo_spark, "heatmap", sql)
    assert isinstance(src, render.XYPoints) and src.parquet is None
