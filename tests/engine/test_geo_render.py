"""Map rendering against Arctern's reference PNGs (same SQL, same params).

Scores: IoU of lit pixels (alpha > 0) and the mean absolute RGBA difference on
pixels lit in both.  Point/weighted maps need IoU >= 0.9.  Heat maps are drawn by
Arctern as per-pixel smooth GL points whose faint rim (alpha 1/255) depends on
OpenGL rasterisation details; they need IoU >= 0.65 and a mean colour difference
<= 20/255 per channel.  Choropleths need IoU >= 0.9 and colour difference <= 5.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import DataFrame, SparkSession

from chalicelib.engine.geo import render
from chalicelib.engine.geo.render import aggregate, shade
from chalicelib.engine.geo.render.params import viewport
from tests.engine.conftest import BASELINES

POLY = (
    "POLYGON ((-73.998427 40.730309, -73.954348 40.730309, -73.954348 40.780816, "
    "-73.998427 40.780816, -73.998427 40.730309))"
)
BOX1 = [-73.998427, 40.730309, -73.954348, 40.780816]
BOX2 = [-73.994092, 40.753893, -73.977588, 40.759642]
WITHIN = f"ST_Within(ST_Point(pickup_longitude, pickup_latitude), ST_GeomFromText('{POLY}'))"


def score(png: bytes, ref_name: str) -> tuple[float, float]:
    """(IoU of lit pixels, mean |RGBA| difference on common lit pixels)."""
    ours = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(int)
    ref = np.asarray(Image.open(BASELINES / ref_name).convert("RGBA")).astype(int)
    assert ours.shape == ref.shape
    la, lb = ours[..., 3] > 0, ref[..., 3] > 0
    union = (la | lb).sum()
    iou = 1.0 if union == 0 else float((la & lb).sum() / union)
    both = la & lb
    diff = float(np.abs(ours[both] - ref[both]).mean()) if both.any() else 0.0
    return iou, diff


@pytest.fixture(scope="module")
def points(nyc_taxi: DataFrame, geo_spark: SparkSession) -> DataFrame:
    return geo_spark.sql(
        f"select ST_Point(pickup_longitude, pickup_latitude) as point from nyc_taxi where {WITHIN}"
    ).cache()


@pytest.mark.parametrize(
    ("n", "w", "h", "size", "color", "opacity"),
    [
        (1, 1024, 896, 3, "#2DEF4A", 0.5),
        (2, 1024, 896, 5, "#F50404", 0.5),
        (3, 1024, 896, 5, "#1455EE", 0.5),
        (4, 1024, 896, 3, "#2DEF4A", 1.0),
        (5, 1024, 896, 3, "#2DEF4A", 0.0),
        (6, 200, 200, 3, "#2DEF4A", 0.5),
    ],
)
def test_pointmap_matches_arctern(
    points: DataFrame, n: int, w: int, h: int, size: int, color: str, opacity: float
) -> None:
    params = dict(
        width=w, height=h, bounding_box=BOX1, coordinate_system="EPSG:4326",
        point_size=size, point_color=color, opacity=opacity,
    )  # fmt: skip
    iou, _ = score(render.pointmap(points, params), f"point_map_nyc_{n}.png")
    assert iou >= 0.9


@pytest.mark.parametrize(
    ("n", "w", "h", "zoom"),
    [(1, 1024, 896, 10.0), (2, 1024, 896, 0.0), (3, 1024, 896, 12.0), (4, 1024, 896, 5.5), (5, 200, 200, 10.0)],
)
def test_heatmap_matches_arctern(
    nyc_taxi: DataFrame, geo_spark: SparkSession, n: int, w: int, h: int, zoom: float
) -> None:
    df = geo_spark.sql(
        "select ST_Point(pickup_longitude, pickup_latitude) as point, passenger_count as w "
        f"from nyc_taxi where {WITHIN}"
    )
    params = dict(width=w, height=h, bounding_box=BOX1, coordinate_system="EPSG:4326", map_zoom_level=zoom)
    iou, diff = score(render.heatmap(df, params), f"heat_map_nyc_{n}.png")
    assert iou >= 0.65
    assert diff <= 20


@pytest.fixture(scope="module")
def buildings(nyc_taxi: DataFrame, geo_spark: SparkSession) -> DataFrame:
    return geo_spark.sql(
        "select ST_GeomFromText(buildingtext_dropoff) as wkt, passenger_count as w from nyc_taxi "
        "where buildingtext_dropoff is not null"
    ).cache()


@pytest.mark.parametrize(
    ("n", "gradient", "bound"),
    [
        (1, ["#0000FF", "#FF0000"], [2.5, 5]),
        (2, ["#4D904F", "#C23728"], [2.5, 5]),
        (3, ["#1984C5", "#C23728"], [2.5, 5]),
        (10, ["#0000FF", "#FF0000"], [1, 500]),
    ],
)
def test_choropleth_matches_arctern(buildings: DataFrame, n: int, gradient: list[str], bound: list[float]) -> None:
    params = dict(
        width=1900, height=1410, bounding_box=BOX2, coordinate_system="EPSG:4326",
        color_gradient=gradient, color_bound=bound, opacity=1.0,
    )  # fmt: skip
    iou, diff = score(render.choropleth(buildings, params), f"choropleth_map_nyc_{n}.png")
    assert iou >= 0.9
    assert diff <= 5


def test_weighted_matches_arctern(nyc_taxi: DataFrame, geo_spark: SparkSession, points: DataFrame) -> None:
    df = geo_spark.sql(
        "select ST_Point(pickup_longitude, pickup_latitude) as point, tip_amount as c, fare_amount as s "
        f"from nyc_taxi where {WITHIN}"
    )
    params: dict[str, Any] = dict(
        width=1024, height=896, bounding_box=BOX1, coordinate_system="EPSG:4326",
        color_gradient=["#4D904F", "#C23728"], color_bound=[0, 2], size_bound=[0, 10], opacity=1.0,
    )  # fmt: skip
    iou, _ = score(render.weighted(df, params), "weighted_point_map_nyc_4_1.png")
    assert iou >= 0.9
    one = dict(params, color_gradient=["#EE3814"], size_bound=[10])
    iou1, _ = score(render.weighted(points, one), "weighted_point_map_nyc_1_1.png")
    assert iou1 >= 0.9


def test_png_is_rgba_and_transparent(points: DataFrame) -> None:
    png = render.render_map(
        "pointmap",
        points,
        dict(width=64, height=32, bounding_box=BOX1, point_size=3, point_color="#FF0000", opacity=1.0),
    )
    img = Image.open(io.BytesIO(png))
    assert img.mode == "RGBA" and img.size == (64, 32)
    alpha = np.asarray(img)[..., 3]
    assert alpha[0, 0] == 0 and alpha.max() == 255


def test_binning_aggregates_in_spark(geo_spark: SparkSession) -> None:
    """Counts and weight sums per pixel equal a numpy histogram of the same points."""
    rng = np.random.default_rng(3)
    lon, lat, w = rng.uniform(-74, -73.9, 5000), rng.uniform(40.7, 40.8, 5000), rng.integers(1, 5, 5000)
    rows = [(float(a), float(b), int(c)) for a, b, c in zip(lon, lat, w, strict=True)]
    df = geo_spark.createDataFrame(rows, "x double, y double, w long").selectExpr("ST_Point(x, y) p", "w")
    vp = viewport(dict(width=50, height=40, bounding_box=[-74, 40.7, -73.9, 40.8]))
    count, sums = aggregate.bin_points(df.repartition(3), vp, 1)
    px, py = vp.project(lon, lat)
    ok = (px >= 0) & (px < 50) & (py >= 0) & (py < 40)
    expected = np.zeros((40, 50))
    np.add.at(expected, (py[ok], px[ok]), 1)
    expected_w = np.zeros((40, 50))
    np.add.at(expected_w, (py[ok], px[ok]), w[ok])
    assert np.array_equal(count, expected)
    assert np.allclose(sums[0], expected_w)


def test_fishnet_and_icon(points: DataFrame, tmp_path: Any) -> None:
    base = dict(width=200, height=200, bounding_box=BOX1, coordinate_system="EPSG:4326")
    png = render.fishnetmap(
        points, dict(base, color_gradient=["#0000FF", "#FF0000"], cell_size=4, cell_spacing=1, opacity=1.0)
    )
    a = np.asarray(Image.open(io.BytesIO(png)))
    assert a[..., 3].any()
    gl = a[::-1]  # cells start at the bottom-left corner
    assert not gl[3::4, :, 3].any()  # the 1 px spacing row of every 4 px cell stays empty
    icon = BASELINES / "taxi.png"
    png = render.icon_viz(points, dict(base, icon_path=str(icon)))
    assert np.asarray(Image.open(io.BytesIO(png)))[..., 3].any()


@pytest.mark.parametrize(
    ("fn", "params", "bad"),
    [
        (render.pointmap, dict(height=10, bounding_box=BOX1), "width"),
        (render.pointmap, dict(width=10, height=10, bounding_box=[1, 2, 3]), "bounding_box"),
        (render.pointmap, dict(width=10, height=10, bounding_box=[3, 2, 1, 4]), "bounding_box"),
        (render.pointmap, dict(width=10, height=10, bounding_box=BOX1, point_color="green"), "point_color"),
        (render.pointmap, dict(width=10, height=10, bounding_box=BOX1, opacity=2), "opacity"),
        (
            render.pointmap,
            dict(width=10, height=10, bounding_box=BOX1, coordinate_system="EPSG:1"),
            "coordinate_system",
        ),
        (render.heatmap, dict(width=10, height=10, bounding_box=BOX1, map_zoom_level="x"), "map_zoom_level"),
        (render.choropleth, dict(width=10, height=10, bounding_box=BOX1, color_gradient=["#000000"]), "color_bound"),
        (render.weighted, dict(width=10, height=10, bounding_box=BOX1, color_gradient=3), "color_gradient"),
    ],
)
def test_bad_params_name_the_param(points: DataFrame, fn: Any, params: dict[str, Any], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        fn(points, params)


@pytest.mark.parametrize(
    ("kind", "sql", "extra"),
    [
        ("pointmap", "select ST_Point(pickup_longitude, pickup_latitude) as point from nyc_taxi where {w}",
         dict(point_size=3, point_color="#2DEF4A", opacity=0.5)),
        ("heatmap", "select ST_Point(pickup_longitude, pickup_latitude), passenger_count as w from nyc_taxi "
         "where {w}", dict(map_zoom_level=10)),
        ("weighted", "select ST_Point(pickup_longitude, pickup_latitude) p, tip_amount c, fare_amount s "
         "from nyc_taxi where {w}",
         dict(color_gradient=["#4D904F", "#C23728"], color_bound=[0, 2], size_bound=[0, 10], opacity=1.0)),
        ("fishnetmap", "select ST_Point(pickup_longitude, pickup_latitude), fare_amount from nyc_taxi",
         dict(color_gradient=["#0000FF", "#FF0000"], cell_size=4, cell_spacing=1, opacity=1.0)),
        ("pointmap", "select ST_Point(if(fare_amount > 10, null, pickup_longitude), pickup_latitude) from nyc_taxi",
         dict(point_size=5, point_color="#F50404", opacity=1.0)),
    ],
)  # fmt: skip
def test_xy_fast_path_draws_the_same_png(
    nyc_taxi: DataFrame, geo_spark: SparkSession, kind: str, sql: str, extra: dict[str, Any]
) -> None:
    """ops.render bins raw x/y for SELECT ST_Point(a, b): byte-identical to the WKB path."""
    from chalicelib.engine.geo import ops

    q = sql.format(w=WITHIN)
    src = ops.map_source(geo_spark, kind, q)
    assert isinstance(src, render.XYPoints)
    params = dict(width=400, height=300, bounding_box=BOX1, coordinate_system="EPSG:4326", **extra)
    assert ops.render(geo_spark, kind, q, params)["png"] == render.render_map(kind, geo_spark.sql(q), params)


@pytest.mark.parametrize(("size", "opacity"), [(3, 0.5), (5, 1.0), (7, 0.3), (1, 0.8)])
def test_uniform_disc_blend_is_bit_identical(monkeypatch: pytest.MonkeyPatch, size: float, opacity: float) -> None:
    """The hit-pattern blend of dense one-colour maps equals the per-point scatter."""
    rng = np.random.default_rng(5)
    h, w = 60, 80
    lit = rng.random((h, w)) < 0.7
    lit[0, :] = lit[:, -1] = True  # discs clipped by the edges
    ys, xs = np.nonzero(lit)
    rgba = np.tile(np.array([0.176, 0.937, 0.29, opacity]), (len(ys), 1))
    sizes = np.full(len(ys), float(size))
    fast = shade.draw_discs((h, w), ys, xs, sizes, rgba)
    monkeypatch.setattr(shade, "PATTERN_MIN_SHARE", 0)
    slow = shade.draw_discs((h, w), ys, xs, sizes, rgba)
    assert np.array_equal(fast, slow)


@pytest.fixture(scope="module")
def taxi_parquet(nyc_taxi: DataFrame, geo_spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The taxi points as table ``taxi_pq``: 3 Parquet files, several row groups each, some null coordinates."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pdf = nyc_taxi.selectExpr(
        "if(fare_amount > 40, null, pickup_longitude) as lon", "pickup_latitude as lat",
        "cast(passenger_count as bigint) as n", "cast(fare_amount as float) as fare",
    ).toPandas()  # fmt: skip
    folder = tmp_path_factory.mktemp("taxi_pq")
    for i, part in enumerate(np.array_split(np.arange(len(pdf)), 3)):
        table = pa.Table.from_pandas(pdf.iloc[part], preserve_index=False)
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=1000)
    geo_spark.read.parquet(str(folder)).createOrReplaceTempView("taxi_pq")
    return str(folder)


@pytest.mark.parametrize(
    ("kind", "sql", "extra"),
    [
        ("pointmap", "select ST_Point(lon, lat) from taxi_pq", dict(point_size=3, point_color="#2DEF4A", opacity=0.5)),
        ("heatmap", "select ST_Point(lon, lat), n from taxi_pq", dict(map_zoom_level=10)),
        ("weighted", "select ST_Point(lon, lat) p, fare c, n s from taxi_pq",
         dict(color_gradient=["#4D904F", "#C23728"], color_bound=[0, 20], size_bound=[0, 6], opacity=1.0)),
        ("weighted", "select ST_Point(lon, lat) p, lat c, lat s from taxi_pq",
         dict(color_gradient=["#4D904F", "#C23728"], color_bound=[40.7, 40.8], size_bound=[40, 41], opacity=1.0)),
    ],
)  # fmt: skip
def test_direct_parquet_read_draws_the_same_png(
    taxi_parquet: str, geo_spark: SparkSession, kind: str, sql: str, extra: dict[str, Any]
) -> None:
    """A map of a plain Parquet projection is binned from row groups read by the tasks
    themselves: same PNG as Spark's row path and as the WKB path."""
    from chalicelib.engine.geo import ops
    from chalicelib.engine.geo.parquet_scan import CONF_ENABLED

    src = ops.map_source(geo_spark, kind, sql)
    assert isinstance(src, render.XYPoints) and src.parquet is not None
    read = {g for part in src.parquet.slices for uri, groups in part for g in ((uri, x) for x in groups)}
    assert len(read) == 12 and len(src.parquet.slices) == geo_spark.sparkContext.defaultParallelism
    params = dict(width=400, height=300, bounding_box=BOX1, coordinate_system="EPSG:4326", **extra)
    direct = ops.render(geo_spark, kind, sql, params)["png"]
    geo_spark.conf.set(CONF_ENABLED, "false")
    try:
        assert ops.map_source(geo_spark, kind, sql).parquet is None
        assert ops.render(geo_spark, kind, sql, params)["png"] == direct
    finally:
        geo_spark.conf.unset(CONF_ENABLED)
    assert render.render_map(kind, geo_spark.sql(sql), params) == direct


@pytest.mark.parametrize(
    "sql",
    [
        "select ST_Point(lon, lat) from taxi_pq where lon > lat",  # a filter the direct read does not evaluate
        "select ST_Point(lon + 0.001, lat) from taxi_pq",  # a computed coordinate
        "select ST_Point(lon, lat) from taxi_pq limit 10",
        "select ST_Point(pickup_longitude, pickup_latitude) from nyc_taxi",  # not Parquet
        "select ST_Point(a.lon, b.lat) from taxi_pq a join taxi_pq b on a.n = b.n",
    ],
)
def test_other_queries_keep_the_spark_row_path(taxi_parquet: str, geo_spark: SparkSession, sql: str) -> None:
    from chalicelib.engine.geo import ops

    src = ops.map_source(geo_spark, "pointmap", sql)
    assert isinstance(src, render.XYPoints) and src.parquet is None


def test_parquet_type_spark_reads_differently_keeps_the_row_path(taxi_parquet: str, geo_spark: SparkSession) -> None:
    """A user schema that makes Spark convert a column (float file column read as double)
    is not read directly: the direct reader would not apply Spark's conversion."""
    from chalicelib.engine.geo import ops

    schema = "lon double, lat double, n bigint, fare double"
    geo_spark.read.schema(schema).parquet(taxi_parquet).createOrReplaceTempView("taxi_pq_schema")
    src = ops.map_source(geo_spark, "heatmap", "select ST_Point(lon, lat), fare from taxi_pq_schema")
    assert isinstance(src, render.XYPoints) and src.parquet is None
    src = ops.map_source(geo_spark, "heatmap", "select ST_Point(lon, lat), n from taxi_pq_schema")
    assert isinstance(src, render.XYPoints) and src.parquet is not None


def test_row_groups_are_balanced_over_the_slices() -> None:
    from chalicelib.engine.geo.parquet_scan import _balance

    groups = [(1000, "a", 0), (1000, "a", 1), (10, "b", 0), (500, "c", 0), (500, "c", 1), (990, "d", 0)]
    slices = _balance(groups, 2)
    assert len(slices) == 2
    read = sorted((uri, g) for part in slices for uri, gs in part for g in gs)
    assert read == sorted((uri, g) for _, uri, g in groups)
    rows = {(uri, g): n for n, uri, g in groups}
    totals = sorted(sum(rows[(uri, g)] for uri, gs in part for g in gs) for part in slices)
    assert totals == [2000, 2000]
    assert len(_balance(groups[:1], 8)) == 1


def test_parquet_footers_are_read_once_per_file_version(
    taxi_parquet: str, geo_spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeated maps of a table read no footer again; a file Spark lists with a new length is re-read."""
    from chalicelib.engine.geo import parquet_scan

    df = geo_spark.sql("select lon, lat from taxi_pq")
    first = parquet_scan.plain_parquet_scan(df, 2)
    reads: list[str] = []
    real = parquet_scan.pq.read_metadata

    def counting(path: str, **kwargs: Any) -> Any:
        reads.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(parquet_scan.pq, "read_metadata", counting)
    assert parquet_scan.plain_parquet_scan(df, 2) == first
    assert reads == []
    files = parquet_scan._files(df._jdf.queryExecution().optimizedPlan().child().relation())
    assert files is not None and len(files) == 3
    uri, length, mtime = files[0]
    monkeypatch.setattr(parquet_scan, "_files", lambda relation: [(uri, length + 1, mtime), *files[1:]])
    assert parquet_scan.plain_parquet_scan(df, 2) == first
    assert len(reads) == 1
