"""ST_ functions against shapely's own answers (one Spark job per function group)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import shapely
from pyspark.errors import PythonException
from pyspark.sql import SparkSession

from chalicelib.engine.geo import ST_FUNCTION_NAMES
from chalicelib.engine.geo.functions import EARTH_RADIUS_M, reduce_significant_digits
from chalicelib.engine.geo.projection import lonlat_to_mercator

WKTS = [
    "POINT (1 1)",
    "POINT (0.5 0.5)",
    "POINT (10 10)",
    "LINESTRING (0 0, 2 2)",
    "LINESTRING (0 2, 2 0)",
    "LINESTRING (0 0, 1 1, 0 1, 1 0)",
    "POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))",
    "POLYGON ((1 1, 3 1, 3 3, 1 3, 1 1))",
    "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 4 2, 4 4, 2 4, 2 2))",
    "POLYGON ((0 0, 2 2, 2 0, 0 2, 0 0))",
    "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
    "MULTIPOINT ((0 0), (1 2))",
]
PAIRS = [(a, b) for a in WKTS for b in WKTS]
VALID = [w for w in WKTS if shapely.is_valid(shapely.from_wkt(w))]


@pytest.fixture(scope="module")
def pairs(geo_spark: SparkSession) -> SparkSession:
    """Temp views ``geoms(id, wkt)`` and ``pairs(id, a, b)`` (with a null row)."""
    rows = [(i, w) for i, w in enumerate(WKTS)] + [(len(WKTS), None)]
    geo_spark.createDataFrame(rows, "id int, wkt string").createOrReplaceTempView("geoms")
    prs = [(i, a, b) for i, (a, b) in enumerate(PAIRS)] + [(len(PAIRS), None, WKTS[0])]
    geo_spark.createDataFrame(prs, "id int, a string, b string").createOrReplaceTempView("pairs")
    return geo_spark


def _unary(spark: SparkSession, expr: str) -> list[Any]:
    rows = spark.sql(
        f"select id, {expr} as r from (select id, ST_GeomFromText(wkt) as g from geoms) order by id"
    ).collect()
    return [r["r"] for r in rows]


def _binary(spark: SparkSession, expr: str) -> list[Any]:
    rows = spark.sql(
        f"select id, {expr} as r from (select id, ST_GeomFromText(a) as a, ST_GeomFromText(b) as b "
        "from pairs) order by id"
    ).collect()
    return [r["r"] for r in rows]


def _geom(wkb: bytes | None) -> Any:
    return None if wkb is None else shapely.from_wkb(wkb)


def test_all_arctern_functions_registered(geo_spark: SparkSession) -> None:
    names = {r.function.lower() for r in geo_spark.sql("show user functions").collect()}
    expected = {
        "st_point", "st_geomfromtext", "st_geomfromwkt", "st_pointfromtext", "st_polygonfromtext",
        "st_linestringfromtext", "st_geomfromgeojson", "st_polygonfromenvelope", "st_astext",
        "st_asgeojson", "st_equals", "st_touches", "st_overlaps", "st_crosses", "st_contains",
        "st_intersects", "st_within", "st_isvalid", "st_issimple", "st_distance",
        "st_distancesphere", "st_area", "st_length", "st_hausdorffdistance", "st_geometrytype",
        "st_npoints", "st_intersection", "st_precisionreduce", "st_makevalid",
        "st_simplifypreservetopology", "st_centroid", "st_convexhull", "st_envelope", "st_buffer",
        "st_transform", "st_curvetoline", "st_union_aggr", "st_envelope_aggr",
    }  # fmt: skip
    assert expected <= {n.split(".")[-1] for n in names}
    assert expected == {n.lower() for n in ST_FUNCTION_NAMES}


def test_constructors_and_text(pairs: SparkSession) -> None:
    spark = pairs
    row = spark.sql(
        "select ST_AsText(ST_Point(1.5, -2.25)) p, ST_AsText(ST_PolygonFromEnvelope(0, 1, 2, 3)) e, "
        'ST_AsText(ST_GeomFromGeoJSON(\'{"type":"LineString","coordinates":[[0,0],[1,2]]}\')) j, '
        "ST_AsText(ST_PointFromText('POINT (3 4)')) pt, ST_AsText(ST_LineStringFromText('LINESTRING (0 0, 1 1)')) l, "
        "ST_AsText(ST_PolygonFromText('POLYGON ((0 0, 1 0, 1 1, 0 0))')) pg, "
        "ST_AsText(ST_GeomFromWKT('MULTIPOINT ((0 0), (1 2))')) mp, "
        "ST_Point(null, 1.0) n, ST_AsText(null) nt"
    ).first()
    assert shapely.from_wkt(row.p).equals(shapely.Point(1.5, -2.25))
    assert shapely.from_wkt(row.e).equals(shapely.box(0, 1, 2, 3))
    assert shapely.from_wkt(row.j).equals(shapely.LineString([(0, 0), (1, 2)]))
    assert shapely.from_wkt(row.pt).equals(shapely.Point(3, 4))
    assert shapely.from_wkt(row.l).equals(shapely.from_wkt("LINESTRING (0 0, 1 1)"))
    assert shapely.from_wkt(row.pg).equals(shapely.from_wkt("POLYGON ((0 0, 1 0, 1 1, 0 0))"))
    assert shapely.from_wkt(row.mp).equals(shapely.from_wkt("MULTIPOINT ((0 0), (1 2))"))
    assert row.n is None and row.nt is None
    # ST_Point WKB is byte-identical to shapely's little-endian WKB.
    wkb = spark.sql("select ST_Point(1.5, -2.25) g").first().g
    assert bytes(wkb) == shapely.to_wkb(shapely.Point(1.5, -2.25), byte_order=1)

    texts = _unary(spark, "ST_AsText(g)")
    geojson = _unary(spark, "ST_AsGeoJSON(g)")
    for wkt, text, js in zip(WKTS, texts, geojson, strict=False):
        assert shapely.from_wkt(text).equals_exact(shapely.from_wkt(wkt), 0)
        assert shapely.from_geojson(js).equals(shapely.from_wkt(wkt))
        assert json.loads(js)["type"]
    assert texts[-1] is None


@pytest.mark.parametrize("name", ["Equals", "Touches", "Overlaps", "Crosses", "Contains", "Intersects", "Within"])
def test_predicates(pairs: SparkSession, name: str) -> None:
    got = _binary(pairs, f"ST_{name}(a, b)")
    fn = getattr(shapely, name.lower())
    expected = [bool(fn(shapely.from_wkt(a), shapely.from_wkt(b))) for a, b in PAIRS]
    assert got[:-1] == expected
    assert got[-1] is None


@pytest.mark.parametrize(
    ("expr", "fn"),
    [
        ("ST_Distance(a, b)", shapely.distance),
        ("ST_HausdorffDistance(a, b)", shapely.hausdorff_distance),
    ],
)
def test_binary_measures(pairs: SparkSession, expr: str, fn: Any) -> None:
    got = _binary(pairs, expr)
    expected = [float(fn(shapely.from_wkt(a), shapely.from_wkt(b))) for a, b in PAIRS]
    assert np.allclose(got[:-1], expected)
    assert got[-1] is None


def test_intersection(pairs: SparkSession) -> None:
    # GEOS overlay rejects invalid input (the bow-tie), as GDAL does for Arctern.
    valid_pairs = [(a, b) for a, b in PAIRS if a in VALID and b in VALID]
    rows = [(i, a, b) for i, (a, b) in enumerate(valid_pairs)] + [(len(valid_pairs), None, None)]
    pairs.createDataFrame(rows, "id int, a string, b string").createOrReplaceTempView("vpairs")
    got = [
        r.r
        for r in pairs.sql(
            "select id, ST_Intersection(ST_GeomFromText(a), ST_GeomFromText(b)) r from vpairs order by id"
        ).collect()
    ]
    for (a, b), wkb in zip(valid_pairs, got, strict=False):
        expected = shapely.intersection(shapely.from_wkt(a), shapely.from_wkt(b))
        assert _geom(wkb).equals(expected) or (_geom(wkb).is_empty and expected.is_empty)
    assert got[-1] is None


@pytest.mark.parametrize(
    ("expr", "fn"),
    [
        ("ST_IsValid(g)", lambda g: bool(shapely.is_valid(g))),
        ("ST_IsSimple(g)", lambda g: bool(shapely.is_simple(g))),
        ("ST_Area(g)", lambda g: float(shapely.area(g))),
        ("ST_Length(g)", lambda g: float(shapely.length(g))),
        ("ST_NPoints(g)", lambda g: int(shapely.get_num_coordinates(g))),
        ("ST_GeometryType(g)", lambda g: "ST_" + g.geom_type.upper()),
    ],
)
def test_unary_values(pairs: SparkSession, expr: str, fn: Any) -> None:
    got = _unary(pairs, expr)
    assert got[:-1] == [fn(shapely.from_wkt(w)) for w in WKTS]
    assert got[-1] is None


@pytest.mark.parametrize(
    ("expr", "fn"),
    [
        ("ST_MakeValid(g)", shapely.make_valid),
        ("ST_Centroid(g)", shapely.centroid),
        ("ST_ConvexHull(g)", shapely.convex_hull),
        ("ST_Envelope(g)", shapely.envelope),
        ("ST_Buffer(g, 0.5)", lambda g: shapely.buffer(g, 0.5, quad_segs=30)),
        (
            "ST_SimplifyPreserveTopology(g, 0.6)",
            lambda g: shapely.simplify(g, 0.6, preserve_topology=True),
        ),
        ("ST_CurveToLine(g)", lambda g: g),
    ],
)
def test_unary_geometries(pairs: SparkSession, expr: str, fn: Any) -> None:
    got = _unary(pairs, expr)
    for wkt, wkb in zip(WKTS, got, strict=False):
        assert _geom(wkb).equals_exact(fn(shapely.from_wkt(wkt)), 1e-9), (expr, wkt)
    assert got[-1] is None


def test_precision_reduce(pairs: SparkSession) -> None:
    wkt = "POLYGON ((10.777 11.888, 20.1234 11.888, 20.1234 30.555, 10.777 11.888))"
    got = pairs.sql(f"select ST_PrecisionReduce(ST_GeomFromText('{wkt}'), 3) g").first().g
    expected = shapely.transform(shapely.from_wkt(wkt), lambda c: reduce_significant_digits(c, 3))
    assert _geom(got).equals_exact(expected, 0)
    assert shapely.get_coordinates(_geom(got))[0].tolist() == [10.8, 11.9]


def test_distance_sphere(geo_spark: SparkSession) -> None:
    lon1, lat1, lon2, lat2 = -73.99, 40.73, -73.95, 40.78
    got = geo_spark.sql(
        f"select ST_DistanceSphere(ST_Point({lon1}, {lat1}), ST_Point({lon2}, {lat2})) d, "
        f"ST_DistanceSphere(ST_GeomFromText('POINT ({lon1} {lat1})'), ST_Point({lon2}, {lat2})) d2"
    ).first()
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    expected = 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))
    assert got.d == pytest.approx(expected, rel=1e-12)
    assert got.d2 == pytest.approx(expected, rel=1e-12)
    assert 6000 < got.d < 7000  # about 6.4 km across Manhattan


def test_transform_roundtrip(geo_spark: SparkSession) -> None:
    wkt = "POLYGON ((-73.99 40.73, -73.95 40.73, -73.95 40.78, -73.99 40.73))"
    row = geo_spark.sql(
        f"select ST_Transform(ST_GeomFromText('{wkt}'), 'EPSG:4326', 'EPSG:3857') m, "
        f"ST_Transform(ST_Transform(ST_GeomFromText('{wkt}'), 'EPSG:4326', 'EPSG:3857'), "
        "'EPSG:3857', 'EPSG:4326') back"
    ).first()
    src = shapely.from_wkt(wkt)
    coords = shapely.get_coordinates(src)
    mx, my = lonlat_to_mercator(coords[:, 0], coords[:, 1])
    assert np.allclose(shapely.get_coordinates(_geom(row.m)), np.column_stack([mx, my]))
    # Known value: lon -73.99 -> -8236529.12 m (EPSG:3857: x = 6378137 * lon in radians)
    assert shapely.get_coordinates(_geom(row.m))[0, 0] == pytest.approx(-8236529.12, abs=0.01)
    assert _geom(row.back).equals_exact(src, 1e-9)


def test_curve_to_line(geo_spark: SparkSession) -> None:
    row = geo_spark.sql(
        "select ST_CurveToLine('CIRCULARSTRING (0 0, 1 1, 2 0)') a, "
        "ST_CurveToLine('CURVEPOLYGON (CIRCULARSTRING (0 0, 2 0, 0 0))') c"
    ).first()
    arc = _geom(row.a)
    pts = shapely.get_coordinates(arc)
    assert arc.geom_type == "LineString" and len(pts) > 10
    assert np.allclose(np.hypot(pts[:, 0] - 1, pts[:, 1]), 1.0)  # on the unit circle at (1, 0)
    circle = _geom(row.c)
    assert circle.geom_type == "Polygon"
    assert circle.area == pytest.approx(math.pi, rel=1e-2)


def test_aggregates(pairs: SparkSession) -> None:
    rows = pairs.sql(
        "select ST_Union_Aggr(g) u, ST_Envelope_Aggr(g) e from "
        "(select ST_GeomFromText(wkt) g from geoms where ST_IsValid(ST_GeomFromText(wkt)))"
    ).first()
    geoms = shapely.from_wkt(VALID)
    assert _geom(rows.u).equals(shapely.union_all(geoms))
    assert _geom(rows.e).equals(shapely.box(*shapely.total_bounds(geoms)))
    with pytest.raises(PythonException, match="ST_Union_Aggr"):
        pairs.sql("select ST_Union_Aggr(ST_GeomFromText(wkt)) from geoms").collect()
    grouped = pairs.sql(
        "select k, ST_Envelope_Aggr(ST_Point(x, y)) e from values "
        "(1, 0.0, 0.0), (1, 2.0, 3.0), (2, 5.0, 5.0), (2, 6.0, 7.0) as t(k, x, y) group by k order by k"
    ).collect()
    assert _geom(grouped[0].e).equals(shapely.box(0, 0, 2, 3))
    assert _geom(grouped[1].e).equals(shapely.box(5, 5, 6, 7))


def test_point_within_literal_fast_path(geo_spark: SparkSession) -> None:
    """ST_Within(ST_Point(x, y), literal) matches shapely, boundary and nulls included."""
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(-1, 3, 2000), rng.uniform(-1, 3, 2000)
    rows = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    rows += [(0.0, 1.0), (1.0, 1.0), (None, 1.0)]  # on boundary, inside, null
    geo_spark.createDataFrame(rows, "x double, y double").createOrReplaceTempView("xy")
    poly = "POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0), (0.5 0.5, 1.5 0.5, 1.5 1.5, 0.5 0.5))"
    got = [
        r.w
        for r in geo_spark.sql(
            f"select ST_Within(ST_Point(x, y), ST_GeomFromText('{poly}')) w, "
            f"ST_Contains(ST_GeomFromText('{poly}'), ST_Point(x, y)) c, "
            f"ST_Intersects(ST_Point(x, y), ST_GeomFromText('{poly}')) i from xy"
        ).collect()
    ]
    full = geo_spark.sql(
        f"select ST_Contains(ST_GeomFromText('{poly}'), ST_Point(x, y)) c, "
        f"ST_Intersects(ST_Point(x, y), ST_GeomFromText('{poly}')) i from xy"
    ).collect()
    shape = shapely.from_wkt(poly)
    expected_w = [bool(shapely.within(shapely.Point(x, y), shape)) for x, y in rows[:-1]]
    expected_i = [bool(shapely.intersects(shapely.Point(x, y), shape)) for x, y in rows[:-1]]
    assert got[:-1] == expected_w
    assert [r.c for r in full[:-1]] == expected_w
    assert [r.i for r in full[:-1]] == expected_i
    assert got[-1] is None and full[-1].c is None


def test_bad_wkt_is_a_clear_error_and_session_survives(geo_spark: SparkSession) -> None:
    with pytest.raises(PythonException) as err:
        geo_spark.sql("select ST_GeomFromText(w) from values ('POINT (1 1)'), ('POLYGON ((0 0, 1') as t(w)").collect()
    assert "ST_GeomFromText" in str(err.value)
    assert "POLYGON ((0 0, 1" in str(err.value)
    with pytest.raises(PythonException) as err2:
        geo_spark.sql("select ST_Transform(ST_Point(1, 2), 'EPSG:4326', 'EPSG:27700')").collect()
    assert "ST_Transform" in str(err2.value) and "27700" in str(err2.value)
    assert geo_spark.sql("select ST_AsText(ST_Point(1, 2)) t").first().t == "POINT (1 2)"


# ------------------------------------------------- SQL rewrite of point predicates
REWRITE_POLY = "POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0), (0.5 0.5, 1.5 0.5, 1.5 1.5, 0.5 0.5))"


@pytest.fixture(scope="module")
def xy_kinds(geo_spark: SparkSession) -> SparkSession:
    """View ``xyk``: double, int, float and string coordinates with nulls, NaN, boundary points."""
    rng = np.random.default_rng(11)
    rows: list[tuple[Any, ...]] = []
    for x, y in zip(rng.uniform(-1, 3, 600), rng.uniform(-1, 3, 600), strict=True):
        rows.append((float(x), float(y), round(x), round(y), float(x), repr(float(x))))
    rows += [
        (0.0, 1.0, 0, 1, 0.0, "0.0"),  # on the boundary
        (1.0, 1.0, 1, 1, 1.0, "1.0"),  # inside
        (2.0, 2.0, 2, 2, 2.0, "2"),  # corner of the box
        (None, 1.0, None, 1, None, None),
        (1.0, None, 1, None, 1.0, "1.0"),
        (float("nan"), 1.0, 1, 1, float("nan"), "NaN"),
        (float("inf"), 1.0, 5, 1, float("inf"), "Infinity"),
    ]
    df = geo_spark.createDataFrame(rows, "x double, y double, ix int, iy int, fx double, sx string")
    df.withColumn("fx", df.fx.cast("float")).createOrReplaceTempView("xyk")
    return geo_spark


@pytest.mark.parametrize(
    "expr",
    [
        "ST_Within(ST_Point(x, y), ST_GeomFromText('{p}'))",
        "ST_Contains(ST_GeomFromText('{p}'), ST_Point(x, y))",
        "ST_Intersects(ST_Point(x, y), ST_PolygonFromText('{p}'))",
        "ST_Intersects(ST_GeomFromWKT('{p}'), ST_Point(x, y))",
        "ST_Within(ST_Point(ix, iy), ST_GeomFromText('{p}'))",
        "ST_Within(ST_Point(fx, y), ST_GeomFromText('{p}'))",
        "ST_Within(ST_Point(sx, y), ST_GeomFromText('{p}'))",
        "st_within(st_point(`x`, xyk.y), st_geomfromtext('{p}'))",
    ],
)
def test_point_predicate_rewrite_same_answers(xy_kinds: SparkSession, expr: str) -> None:
    """The rewritten SQL answers exactly as the original, in SELECT and in WHERE."""
    from chalicelib.engine.geo.ops import sql_frame
    from chalicelib.engine.geo.rewrite import rewrite_sql

    e = expr.format(p=REWRITE_POLY)
    select = f"select {e} as r from xyk"
    where = f"select count(*) from xyk where {e}"
    assert "sg_xy_" in rewrite_sql(xy_kinds, select)
    assert [r.r for r in sql_frame(xy_kinds, select).collect()] == [r.r for r in xy_kinds.sql(select).collect()]
    assert sql_frame(xy_kinds, where).first()[0] == xy_kinds.sql(where).first()[0]


def test_point_predicate_rewrite_prefilters_in_the_jvm(xy_kinds: SparkSession) -> None:
    from chalicelib.engine.geo.ops import sql_frame

    where = f"select x from xyk where ST_Within(ST_Point(x, y), ST_GeomFromText('{REWRITE_POLY}'))"
    plan = sql_frame(xy_kinds, where)._jdf.queryExecution().executedPlan().toString()
    # the box test runs below the Python evaluation, which no longer receives the WKT
    assert "ArrowEvalPython" in plan and "(x#" in plan.split("ArrowEvalPython")[1]
    assert "POLYGON" not in plan


def test_point_predicate_rewrite_leaves_other_sql_alone(geo_spark: SparkSession) -> None:
    from chalicelib.engine.geo.rewrite import rewrite_point_predicates, xy_map_sql

    calls: list[tuple[str, str, str]] = []

    def reg(name: str, kind: str, wkt: str) -> None:
        calls.append((name, kind, wkt))

    untouched = [
        "select 'ST_Within(ST_Point(x, y), ST_GeomFromText(''POINT (1 1)''))' from t",
        "select 1 -- ST_Within(ST_Point(x, y), ST_GeomFromText('POINT (1 1)'))",
        "select ST_Within(ST_Point(x + 1, y), ST_GeomFromText('POINT (1 1)')) from t",
        "select ST_Within(ST_GeomFromText('POINT (1 1)'), ST_Point(x, y)) from t",
        "select ST_Within(ST_Point(x, y), ST_GeomFromText('POLYGON ((0 0, 1')) from t",
        "select ST_Within(ST_Point(x, y), ST_GeomFromText(w)) from t",
    ]
    for sql in untouched:
        assert rewrite_point_predicates(sql, reg) == sql
    assert not calls
    lit = "ST_GeomFromText('POINT (1 1)')"
    two = f"select ST_Within(ST_Point(a, b), {lit}) or ST_Within(ST_Point(c, d), {lit})"
    out = rewrite_point_predicates(two, reg)
    assert out.count("sg_xy_contains_") == 2 and len(calls) == 1
    assert xy_map_sql("select ST_Point(x, y) as p, w from t where a > 1") == (
        "SELECT x AS __sg_x, y AS __sg_y, ST_Point(x, y) AS p, w from t where a > 1"
    )
    assert (
        xy_map_sql("SELECT st_point(x,y) FROM t")
        == "SELECT x AS __sg_x, y AS __sg_y, st_point(x,y) AS __sg_point FROM t"
    )
    assert xy_map_sql("select distinct ST_Point(x, y) from t") is None
    assert xy_map_sql("select ST_Point(x, y) from t union all select ST_Point(y, x) from t") is None
    assert xy_map_sql("select ST_Point(x, y) + 1 from t") is None
