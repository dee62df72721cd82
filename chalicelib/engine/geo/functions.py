"""Arctern-compatible ``ST_`` SQL functions for Spark.

Geometries are WKB in ``BinaryType`` columns.  Every function is a vectorised
Arrow UDF (``pyspark.sql.functions.arrow_udf``): each call receives whole Arrow
batches and runs shapely 2 / numpy over them, no per-row Python loop.

Performance notes:

* ``ST_Point`` writes the 21-byte WKB points straight into an Arrow buffer.
* Point arguments are decoded from the Arrow buffer with numpy (no shapely objects).
* A geometry argument that is the same on every row (a SQL literal such as
  ``ST_GeomFromText('POLYGON (...)')``) is parsed and ``shapely.prepare``d once
  per Python worker; ``ST_Within(point, literal)``, ``ST_Contains(literal, point)``
  and ``ST_Intersects`` then use ``shapely.contains_xy``/``intersects_xy`` on the
  raw x/y arrays.  Spark chains nested Arrow UDFs inside one Python worker, so
  ``ST_Within(ST_Point(x, y), ST_GeomFromText('...'))`` is one pass.

Errors (bad WKT, unsupported CRS...) raise :class:`GeoFunctionError`, which Spark
reports as a ``PythonException`` naming the function and the bad input; the
session stays usable.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from pyspark.sql import SparkSession
from pyspark.sql.functions import ArrowUDFType, arrow_udf
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    StringType,
)

from chalicelib.engine.geo import curves
from chalicelib.engine.geo._arrow import (
    BoolArray,
    FloatArray,
    GeoFunctionError,
    ObjArray,
    as_array,
    from_geoms,
    load_geoms,
    parse_wkt,
    points_to_wkb,
    points_xy,
    prepared_constant,
    to_float,
    to_geoms,
    valid_mask,
)
from chalicelib.engine.geo.projection import transform_xy

__all__ = ["ST_FUNCTION_NAMES", "GeoFunctionError", "register_st_functions"]

# Mean earth radius (IUGG), metres: ST_DistanceSphere's haversine.
EARTH_RADIUS_M = 6371008.7714150598

_TYPE_NAMES = {
    0: "ST_POINT",
    1: "ST_LINESTRING",
    2: "ST_LINEARRING",
    3: "ST_POLYGON",
    4: "ST_MULTIPOINT",
    5: "ST_MULTILINESTRING",
    6: "ST_MULTIPOLYGON",
    7: "ST_GEOMETRYCOLLECTION",
}

_REGISTRY: dict[str, tuple[Callable[..., Any], DataType, int]] = {}


def _st(
    name: str, return_type: DataType, kind: int = ArrowUDFType.SCALAR
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` under SQL ``name``; wrap unexpected errors with the name."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            try:
                return fn(*[as_array(a) for a in args])
            except GeoFunctionError:
                raise
            except Exception as exc:
                raise GeoFunctionError(f"{name}: {type(exc).__name__}: {exc}") from None

        _REGISTRY[name] = (wrapper, return_type, kind)
        return fn

    return deco


# --------------------------------------------------------------------- outputs
def _f64(values: FloatArray, valid: BoolArray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=~valid)


def _bool(values: BoolArray, valid: BoolArray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=bool), type=pa.bool_(), mask=~valid)


def _not_null(geoms: ObjArray) -> BoolArray:
    return np.asarray(geoms != None, dtype=bool)  # noqa: E711


# ---------------------------------------------------------------- constructors
@_st("ST_Point", BinaryType())
def st_point(x: pa.Array, y: pa.Array) -> pa.Array:
    """POINT(x, y) as WKB; null when x or y is null."""
    valid = valid_mask(x) & valid_mask(y)
    return points_to_wkb(to_float(x), to_float(y), valid)


def _from_text(name: str) -> Callable[[pa.Array], pa.Array]:
    def fn(wkt: pa.Array) -> pa.Array:
        geoms, const = load_geoms(wkt.cast(pa.string()), name)
        if geoms is None:
            out = shapely.to_wkb(const, byte_order=1) if const is not None else None
            return pa.array([out] * len(wkt), type=pa.binary())
        return from_geoms(geoms)

    fn.__doc__ = f"{name}(wkt): parse WKT into WKB; bad WKT raises naming the input."
    return fn


for _name in (
    "ST_GeomFromText",
    "ST_GeomFromWKT",
    "ST_PointFromText",
    "ST_PolygonFromText",
    "ST_LineStringFromText",
):
    _st(_name, BinaryType())(_from_text(_name))


@_st("ST_GeomFromGeoJSON", BinaryType())
def st_geomfromgeojson(js: pa.Array) -> pa.Array:
    """Parse GeoJSON geometry objects into WKB."""
    values = np.asarray(js.to_numpy(zero_copy_only=False), dtype=object)
    geoms = shapely.from_geojson(values, on_invalid="ignore")
    bad = (geoms == None) & (values != None)  # noqa: E711
    if bad.any():
        raise GeoFunctionError(f"ST_GeomFromGeoJSON: invalid GeoJSON {str(values[np.flatnonzero(bad)[0]])[:200]!r}")
    return from_geoms(geoms)


@_st("ST_PolygonFromEnvelope", BinaryType())
def st_polygonfromenvelope(min_x: pa.Array, min_y: pa.Array, max_x: pa.Array, max_y: pa.Array) -> pa.Array:
    """Rectangle polygon from its bounds (Arctern vertex order: ccw from min corner)."""
    valid = valid_mask(min_x) & valid_mask(min_y) & valid_mask(max_x) & valid_mask(max_y)
    x0, y0, x1, y1 = (to_float(a) for a in (min_x, min_y, max_x, max_y))
    geoms = shapely.box(x0, y0, x1, y1, ccw=True)
    return from_geoms(np.asarray(np.where(valid, geoms, None), dtype=object))


# ---------------------------------------------------------------------- output
@_st("ST_AsText", StringType())
def st_astext(geo: pa.Array) -> pa.Array:
    """WKB to WKT (full precision)."""
    g = to_geoms(geo, "ST_AsText")
    return pa.array(shapely.to_wkt(g, rounding_precision=-1), type=pa.string())


@_st("ST_AsGeoJSON", StringType())
def st_asgeojson(geo: pa.Array) -> pa.Array:
    """WKB to a GeoJSON geometry string."""
    g = to_geoms(geo, "ST_AsGeoJSON")
    return pa.array(shapely.to_geojson(g), type=pa.string())


# ------------------------------------------------------------------ predicates
def _binary_predicate(
    name: str,
    fn: Callable[[Any, Any], Any],
    xy_when_b_const: Callable[[Any, FloatArray, FloatArray], Any] | None = None,
    xy_when_a_const: Callable[[Any, FloatArray, FloatArray], Any] | None = None,
) -> None:
    def pred(a: pa.Array, b: pa.Array) -> pa.Array:
        ga, ca = load_geoms(a, name)
        gb, cb = load_geoms(b, name)
        # Fast paths: a column of points against one prepared literal geometry.
        if ga is not None and gb is None and xy_when_b_const is not None:
            pts = points_xy(a)
            if pts is not None:
                x, y, valid = pts
                if cb is None:
                    return pa.nulls(len(a), pa.bool_())
                return _bool(xy_when_b_const(cb, x, y), valid)
        if gb is not None and ga is None and xy_when_a_const is not None:
            pts = points_xy(b)
            if pts is not None:
                x, y, valid = pts
                if ca is None:
                    return pa.nulls(len(b), pa.bool_())
                return _bool(xy_when_a_const(ca, x, y), valid)
        left = ga if ga is not None else ca
        right = gb if gb is not None else cb
        if left is None or right is None:
            return pa.nulls(len(a), pa.bool_())
        res = fn(left, right)
        valid = np.ones(len(a), dtype=bool)
        if ga is not None:
            valid &= _not_null(ga)
        if gb is not None:
            valid &= _not_null(gb)
        return _bool(np.broadcast_to(res, (len(a),)), valid)

    pred.__doc__ = f"{name}(a, b) -> boolean, as shapely/GEOS evaluates it."
    _st(name, BooleanType())(pred)


_binary_predicate("ST_Equals", shapely.equals)
_binary_predicate("ST_Touches", shapely.touches)
_binary_predicate("ST_Overlaps", shapely.overlaps)
_binary_predicate("ST_Crosses", shapely.crosses)
_binary_predicate(
    "ST_Contains",
    shapely.contains,
    xy_when_a_const=lambda g, x, y: shapely.contains_xy(g, x, y),
)
_binary_predicate(
    "ST_Within",
    shapely.within,
    # point within polygon  <=>  polygon contains point
    xy_when_b_const=lambda g, x, y: shapely.contains_xy(g, x, y),
)
_binary_predicate(
    "ST_Intersects",
    shapely.intersects,
    xy_when_b_const=lambda g, x, y: shapely.intersects_xy(g, x, y),
    xy_when_a_const=lambda g, x, y: shapely.intersects_xy(g, x, y),
)


# ------------------------------------------------------------- unary measures
def _unary(name: str, fn: Callable[[ObjArray], Any], rtype: DataType, arrow_type: pa.DataType) -> None:
    def f(geo: pa.Array) -> pa.Array:
        g = to_geoms(geo, name)
        valid = _not_null(g)
        out = fn(g)
        return pa.array(out, type=arrow_type, mask=~valid)

    f.__doc__ = f"{name}(geo)"
    _st(name, rtype)(f)


_unary("ST_IsValid", shapely.is_valid, BooleanType(), pa.bool_())
_unary("ST_IsSimple", shapely.is_simple, BooleanType(), pa.bool_())
_unary("ST_Area", shapely.area, DoubleType(), pa.float64())
_unary("ST_Length", shapely.length, DoubleType(), pa.float64())
_unary(
    "ST_NPoints",
    lambda g: shapely.get_num_coordinates(g).astype(np.int32),
    IntegerType(),
    pa.int32(),
)


@_st("ST_GeometryType", StringType())
def st_geometrytype(geo: pa.Array) -> pa.Array:
    """Arctern-style type name: 'ST_POINT', 'ST_POLYGON', 'ST_MULTIPOLYGON'..."""
    g = to_geoms(geo, "ST_GeometryType")
    ids = shapely.get_type_id(g)
    names = np.array([_TYPE_NAMES.get(i) for i in range(-1, 8)], dtype=object)
    return pa.array(names[ids + 1], type=pa.string())


def _binary_measure(name: str, fn: Callable[[Any, Any], Any]) -> None:
    def f(a: pa.Array, b: pa.Array) -> pa.Array:
        ga = to_geoms(a, name)
        gb = to_geoms(b, name)
        valid = _not_null(ga) & _not_null(gb)
        return _f64(np.asarray(fn(ga, gb), dtype=np.float64), valid)

    f.__doc__ = f"{name}(a, b) -> double"
    _st(name, DoubleType())(f)


_binary_measure("ST_Distance", shapely.distance)
_binary_measure("ST_HausdorffDistance", shapely.hausdorff_distance)


@_st("ST_DistanceSphere", DoubleType())
def st_distancesphere(a: pa.Array, b: pa.Array) -> pa.Array:
    """Great-circle (haversine) distance in metres between two lon/lat points."""
    pa_xy = points_xy(a)
    pb_xy = points_xy(b)
    if pa_xy is None or pb_xy is None:
        ga, gb = to_geoms(a, "ST_DistanceSphere"), to_geoms(b, "ST_DistanceSphere")
        ok = _not_null(ga) & _not_null(gb)
        types = np.concatenate([shapely.get_type_id(ga[ok]), shapely.get_type_id(gb[ok])])
        if (types != 0).any():
            raise GeoFunctionError("ST_DistanceSphere: both arguments must be points")
        x1, y1 = shapely.get_x(ga), shapely.get_y(ga)
        x2, y2 = shapely.get_x(gb), shapely.get_y(gb)
        valid = ok
    else:
        x1, y1, v1 = pa_xy
        x2, y2, v2 = pb_xy
        valid = v1 & v2
    lon1, lat1, lon2, lat2 = (np.radians(v) for v in (x1, y1, x2, y2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    d = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return _f64(d, valid)


# -------------------------------------------------------------- constructions
def _unary_geom(name: str, fn: Callable[[ObjArray], Any]) -> None:
    def f(geo: pa.Array) -> pa.Array:
        return from_geoms(np.asarray(fn(to_geoms(geo, name)), dtype=object))

    f.__doc__ = f"{name}(geo) -> geometry"
    _st(name, BinaryType())(f)


_unary_geom("ST_MakeValid", shapely.make_valid)
_unary_geom("ST_Centroid", shapely.centroid)
_unary_geom("ST_ConvexHull", shapely.convex_hull)
_unary_geom("ST_Envelope", shapely.envelope)


@_st("ST_Intersection", BinaryType())
def st_intersection(a: pa.Array, b: pa.Array) -> pa.Array:
    """Geometric intersection of two geometries."""
    ga, ca = load_geoms(a, "ST_Intersection")
    gb, cb = load_geoms(b, "ST_Intersection")
    res = shapely.intersection(ga if ga is not None else ca, gb if gb is not None else cb)
    return from_geoms(np.broadcast_to(np.asarray(res, dtype=object), (len(a),)).copy())


@_st("ST_Buffer", BinaryType())
def st_buffer(geo: pa.Array, dist: pa.Array) -> pa.Array:
    """Buffer by ``dist`` (30 segments per quarter circle, as GDAL/Arctern)."""
    g = to_geoms(geo, "ST_Buffer")
    d = to_float(dist)
    res = shapely.buffer(g, d, quad_segs=30)
    return from_geoms(np.asarray(np.where(np.isnan(d), None, res), dtype=object))


@_st("ST_SimplifyPreserveTopology", BinaryType())
def st_simplifypreservetopology(geo: pa.Array, tol: pa.Array) -> pa.Array:
    """Douglas-Peucker simplification that keeps the topology valid."""
    g = to_geoms(geo, "ST_SimplifyPreserveTopology")
    t = to_float(tol)
    res = shapely.simplify(g, t, preserve_topology=True)
    return from_geoms(np.asarray(np.where(np.isnan(t), None, res), dtype=object))


def reduce_significant_digits(coords: FloatArray, digits: int) -> FloatArray:
    """Round every coordinate to ``digits`` significant digits (Arctern's rule)."""
    if digits <= 0:
        raise GeoFunctionError(f"ST_PrecisionReduce: precision must be > 0, got {digits}")
    out = coords.copy()
    nz = np.isfinite(out) & (out != 0)
    mag = np.floor(np.log10(np.abs(out[nz])))
    scale = 10.0 ** (digits - 1 - mag)
    out[nz] = np.round(out[nz] * scale) / scale
    return out


@_st("ST_PrecisionReduce", BinaryType())
def st_precisionreduce(geo: pa.Array, precision: pa.Array) -> pa.Array:
    """Keep ``precision`` significant digits of every coordinate."""
    g = to_geoms(geo, "ST_PrecisionReduce")
    p = precision.cast(pa.int64()).to_numpy(zero_copy_only=False)
    out = np.empty(len(g), dtype=object)
    for digits in np.unique(p[~np.isnan(p.astype(float))]) if len(p) else []:
        sel = p == digits
        out[sel] = shapely.transform(g[sel], functools.partial(reduce_significant_digits, digits=int(digits)))
    return from_geoms(out)


_CRS_RE = re.compile(r"^\s*EPSG\s*:\s*(\d+)\s*$", re.IGNORECASE)


def parse_crs(crs: Any, fname: str = "ST_Transform") -> int:
    """'EPSG:4326' -> 4326; raises GeoFunctionError for anything else."""
    m = _CRS_RE.match(str(crs)) if crs is not None else None
    if not m:
        raise GeoFunctionError(f"{fname}: unsupported CRS {crs!r} (expected 'EPSG:<code>')")
    return int(m.group(1))


@_st("ST_Transform", BinaryType())
def st_transform(geo: pa.Array, src: pa.Array, dst: pa.Array) -> pa.Array:
    """Reproject between EPSG:4326 and EPSG:3857 (spherical Web Mercator)."""
    g = to_geoms(geo, "ST_Transform")
    s = np.asarray(src.to_numpy(zero_copy_only=False), dtype=object)
    d = np.asarray(dst.to_numpy(zero_copy_only=False), dtype=object)
    out = np.empty(len(g), dtype=object)
    pairs = {(a, b) for a, b in zip(s, d, strict=True)}
    for a, b in pairs:
        sel = (s == a) & (d == b)
        sc, dc = parse_crs(a), parse_crs(b)

        def fn(coords: FloatArray, sc: int = sc, dc: int = dc) -> FloatArray:
            x, y = transform_xy(coords[:, 0], coords[:, 1], sc, dc)
            return np.column_stack([x, y])

        try:
            out[sel] = shapely.transform(g[sel], fn)
        except ValueError as exc:
            raise GeoFunctionError(f"ST_Transform: {exc}") from None
    return from_geoms(out)


@_st("ST_CurveToLine", BinaryType())
def st_curvetoline(geo: pa.Array) -> pa.Array:
    """Linearise curves.  Takes WKB (linear geometries pass through) or WKT text,
    which may hold CIRCULARSTRING/COMPOUNDCURVE/CURVEPOLYGON/MULTICURVE/MULTISURFACE
    (GEOS cannot store curves, so curved input is given as WKT)."""
    if pa.types.is_string(geo.type) or pa.types.is_large_string(geo.type):
        values = np.asarray(geo.to_numpy(zero_copy_only=False), dtype=object)
        curved = np.array([v is not None and curves.is_curved(v) for v in values], dtype=bool)
        out = np.empty(len(values), dtype=object)
        if (~curved).any():
            out[~curved] = parse_wkt(pa.array(values[~curved], type=pa.string()), "ST_CurveToLine")
        for i in np.flatnonzero(curved):
            try:
                out[i] = shapely.from_wkt(curves.linearize_wkt(values[i]))
            except (ValueError, shapely.errors.ShapelyError) as exc:
                raise GeoFunctionError(f"ST_CurveToLine: invalid WKT {values[i][:200]!r}: {exc}") from None
        return from_geoms(out)
    return from_geoms(to_geoms(geo, "ST_CurveToLine"))


# ------------------------------------------------------------------ aggregates
@_st("ST_Union_Aggr", BinaryType(), ArrowUDFType.GROUPED_AGG)
def st_union_aggr(geo: pa.Array) -> bytes | None:
    """Union of all geometries of the group (nulls ignored)."""
    g = to_geoms(geo, "ST_Union_Aggr")
    g = g[_not_null(g)]
    if len(g) == 0:
        return None
    return bytes(shapely.to_wkb(shapely.union_all(g), byte_order=1))


@_st("ST_Envelope_Aggr", BinaryType(), ArrowUDFType.GROUPED_AGG)
def st_envelope_aggr(geo: pa.Array) -> bytes | None:
    """Bounding rectangle of all geometries of the group."""
    pts = points_xy(geo)
    if pts is not None:
        x, y, valid = pts
        if not valid.any():
            return None
        bounds = (np.nanmin(x), np.nanmin(y), np.nanmax(x), np.nanmax(y))
    else:
        g = to_geoms(geo, "ST_Envelope_Aggr")
        g = g[_not_null(g)]
        if len(g) == 0:
            return None
        bounds = tuple(shapely.total_bounds(g))
    return bytes(shapely.to_wkb(shapely.envelope(shapely.box(*bounds)), byte_order=1))


ST_FUNCTION_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


# --------------------------------------------------- point-vs-literal predicates
_XY_PREDICATES: dict[str, Callable[[Any, FloatArray, FloatArray], Any]] = {
    "contains": shapely.contains_xy,  # ST_Within(point, g) / ST_Contains(g, point)
    "intersects": shapely.intersects_xy,
}


def point_predicate(kind: str, wkt: str) -> Callable[[pa.Array, pa.Array], pa.Array]:
    """``(x, y) -> boolean`` Arrow function: ``kind`` ('contains' or 'intersects') of the
    literal geometry ``wkt`` against ``ST_Point(x, y)``.

    Same answers as ``ST_Within(ST_Point(x, y), ST_GeomFromText(wkt))`` (resp.
    ``ST_Intersects``): null when x or y is null; the geometry is parsed and prepared
    once per Python worker.
    """
    test = _XY_PREDICATES[kind]

    def fn(x: pa.Array, y: pa.Array) -> pa.Array:
        x, y = as_array(x), as_array(y)
        geom = prepared_constant(wkt, pa.string(), "ST_GeomFromText")
        valid = valid_mask(x) & valid_mask(y)
        try:
            fx, fy = to_float(x), to_float(y)
        except Exception as exc:  # as ST_Point(x, y) would report it
            raise GeoFunctionError(f"ST_Point: {type(exc).__name__}: {exc}") from None
        return _bool(test(geom, fx, fy), valid)

    return fn


def register_point_predicate(spark: SparkSession, name: str, kind: str, wkt: str) -> None:
    """Register :func:`point_predicate` ``(kind, wkt)`` as the SQL function ``name``."""
    fn = point_predicate(kind, wkt)

    def wrapper(x: pa.Array, y: pa.Array) -> pa.Array:
        try:
            return fn(x, y)
        except GeoFunctionError:
            raise
        except Exception as exc:
            raise GeoFunctionError(f"{name}: {type(exc).__name__}: {exc}") from None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        udf = arrow_udf(wrapper, BooleanType(), ArrowUDFType.SCALAR)  # type: ignore[call-overload]
    spark.udf.register(name, udf)


def register_st_functions(spark: SparkSession) -> None:
    """Register every ``ST_`` function in ``spark`` (idempotent, cheap: no job runs)."""
    for name, (fn, rtype, kind) in _REGISTRY.items():
        with warnings.catch_warnings():  # we pass the UDF kind explicitly on purpose
            warnings.simplefilter("ignore", UserWarning)
            udf = arrow_udf(fn, rtype, kind)  # type: ignore[call-overload]
        spark.udf.register(name, udf)
