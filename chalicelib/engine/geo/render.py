"""Arctern-compatible map rendering from a Spark DataFrame to PNG bytes.

The SQL result is positional: column 0 is the geometry (WKB), the next columns are
weights.  Points are projected from ``coordinate_system`` to Web Mercator and mapped
linearly onto the ``width`` x ``height`` pixel grid the way Arctern does it
(``px = int((x - min_x) * width / (max_x - min_x))``, origin bottom-left, then
drawn north up).

Aggregation happens inside Spark: every partition bins its rows into a dense
numpy grid (``mapInArrow``) and ships only the non-empty cells, so at most
``width * height`` cells per partition ever reach the driver, whatever the row
count.  A point query that is a plain projection of a Parquet table is binned by Spark
tasks that read its row groups themselves (:mod:`chalicelib.engine.geo.parquet_scan`).
Drawing (stamps, kernels, colour ramps, polygons) is numpy/Pillow on the driver.
Output colours follow OpenGL's ``SRC_ALPHA, ONE_MINUS_SRC_ALPHA``
blending onto a transparent framebuffer, which is what Arctern's PNGs contain:
a fragment of colour ``c`` and alpha ``a`` leaves ``(a*c, a*a)``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely
from PIL import Image, ImageDraw
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from chalicelib.engine.geo._arrow import points_xy, to_float, valid_mask
from chalicelib.engine.geo.parquet_scan import ParquetPieces, Slice, read_slice
from chalicelib.engine.geo.projection import MAX_LAT, WGS84_A, transform_xy

__all__ = [
    "MapParamError",
    "XYPoints",
    "choropleth",
    "fishnetmap",
    "heatmap",
    "icon_viz",
    "pointmap",
    "render_map",
    "weighted",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
MAX_SIDE = 8192
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")


class MapParamError(ValueError):
    """A map request parameter is missing or invalid; the message names it."""


# ----------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Viewport:
    """Pixel grid and its Web Mercator extent."""

    width: int
    height: int
    src_epsg: int
    min_x: float
    min_y: float
    max_x: float
    max_y: float

    def project(self, x: Floats, y: Floats) -> tuple[Ints, Ints]:
        """Source-CRS coordinates to integer pixel (column, row-from-bottom), Arctern rule."""
        mx, my = transform_xy(x, y, self.src_epsg, 3857)
        with np.errstate(invalid="ignore"):
            fx = (mx - self.min_x) * self.width / (self.max_x - self.min_x)
            fy = (my - self.min_y) * self.height / (self.max_y - self.min_y)
        fx = np.where(np.isfinite(fx), fx, -1.0)
        fy = np.where(np.isfinite(fy), fy, -1.0)
        # C's (int32_t) cast truncates toward zero
        return np.trunc(fx).astype(np.int64), np.trunc(fy).astype(np.int64)

    def cells(self, x: Floats, y: Floats) -> tuple[Ints, npt.NDArray[np.bool_]]:
        """Flat cell index ``row * width + column`` of each point and whether it is on the
        grid: the pixels of :meth:`project`, bit for bit (same float operations, done in
        place), the index being meaningful only where the second array is True."""
        if self.src_epsg == 4326:
            # lonlat_to_mercator, in place: x = R*radians(lon), y = R*ln(tan(pi/4 + radians(lat)/2))
            fx = np.radians(np.asarray(x, dtype=np.float64))
            fx *= WGS84_A
            fy = np.clip(np.asarray(y, dtype=np.float64), -MAX_LAT, MAX_LAT)
            np.radians(fy, out=fy)
            fy /= 2.0
            fy += np.pi / 4.0
            with np.errstate(invalid="ignore", divide="ignore"):
                np.tan(fy, out=fy)
                np.log(fy, out=fy)
            fy *= WGS84_A
        else:
            mx, my = transform_xy(x, y, self.src_epsg, 3857)
            fx, fy = mx.copy(), my.copy()
        with np.errstate(invalid="ignore", over="ignore"):
            fx -= self.min_x
            fx *= self.width
            fx /= self.max_x - self.min_x
            fy -= self.min_y
            fy *= self.height
            fy /= self.max_y - self.min_y
        # trunc(f) in [0, n) <=> -1 < f < n; NaN and infinities fail both tests
        inside = (fx > -1.0) & (fx < self.width) & (fy > -1.0) & (fy < self.height)
        if not inside.all():
            fx = np.where(inside, fx, 0.0)
            fy = np.where(inside, fy, 0.0)
        cell = fy.astype(np.int64)  # C's (int32_t) cast truncates toward zero
        cell *= self.width
        cell += fx.astype(np.int64)
        return cell, inside

    def project_float(self, x: Floats, y: Floats) -> tuple[Floats, Floats]:
        """Source-CRS coordinates to fractional pixel coordinates (bottom-left origin)."""
        mx, my = transform_xy(x, y, self.src_epsg, 3857)
        fx = (mx - self.min_x) * self.width / (self.max_x - self.min_x)
        fy = (my - self.min_y) * self.height / (self.max_y - self.min_y)
        return fx, fy


def _number(
    params: dict[str, Any], key: str, default: Any = None, *, lo: float | None = None, hi: float | None = None
) -> float:
    value = params.get(key, default)
    if value is None:
        raise MapParamError(f"missing parameter '{key}'")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MapParamError(f"parameter '{key}' must be a number, got {value!r}")
    try:
        num = float(value)
    except ValueError:
        raise MapParamError(f"parameter '{key}' must be a number, got {value!r}") from None
    if not math.isfinite(num) or (lo is not None and num < lo) or (hi is not None and num > hi):
        raise MapParamError(f"parameter '{key}' out of range: {value!r}")
    return num


def _numbers(params: dict[str, Any], key: str, lengths: Sequence[int], default: Any = None) -> list[float]:
    value = params.get(key, default)
    if value is None:
        raise MapParamError(f"missing parameter '{key}'")
    if not isinstance(value, list | tuple) or len(value) not in lengths:
        raise MapParamError(f"parameter '{key}' must be a list of {' or '.join(map(str, lengths))} numbers")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            raise MapParamError(f"parameter '{key}' must hold numbers, got {v!r}")
        out.append(float(v))
    return out


def parse_color(value: Any, key: str) -> tuple[float, float, float]:
    """'#RRGGBB' to floats in [0, 1]."""
    m = _HEX.match(value) if isinstance(value, str) else None
    if not m:
        raise MapParamError(f"parameter '{key}' must be a '#RRGGBB' colour, got {value!r}")
    h = m.group(1)
    return (int(h[0:2], 16) / 255.0, int(h[2:4], 16) / 255.0, int(h[4:6], 16) / 255.0)


def _colors(params: dict[str, Any], key: str, lengths: Sequence[int]) -> list[tuple[float, float, float]]:
    value = params.get(key)
    if value is None:
        raise MapParamError(f"missing parameter '{key}'")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or len(value) not in lengths:
        raise MapParamError(f"parameter '{key}' must be a list of {' or '.join(map(str, lengths))} colours")
    return [parse_color(v, key) for v in value]


def viewport(params: dict[str, Any]) -> Viewport:
    """Validate width, height, bounding_box and coordinate_system."""
    if not isinstance(params, dict):
        raise MapParamError("params must be an object")
    width = _number(params, "width", lo=1, hi=MAX_SIDE)
    height = _number(params, "height", lo=1, hi=MAX_SIDE)
    if width != int(width) or height != int(height):
        raise MapParamError("parameters 'width' and 'height' must be integers")
    bbox = _numbers(params, "bounding_box", [4])
    crs = params.get("coordinate_system", "EPSG:4326")
    m = re.match(r"^\s*EPSG\s*:\s*(4326|3857)\s*$", str(crs), re.IGNORECASE)
    if not m:
        raise MapParamError(f"parameter 'coordinate_system' must be EPSG:4326 or EPSG:3857, got {crs!r}")
    epsg = int(m.group(1))
    if epsg == 4326 and not (
        -180 <= bbox[0] <= 180 and -180 <= bbox[2] <= 180 and -90 <= bbox[1] <= 90 and -90 <= bbox[3] <= 90
    ):
        raise MapParamError(f"parameter 'bounding_box' is not lon/lat degrees: {bbox}")
    if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise MapParamError(f"parameter 'bounding_box' must be [min_x, min_y, max_x, max_y]: {bbox}")
    mx, my = transform_xy(np.array([bbox[0], bbox[2]]), np.array([bbox[1], bbox[3]]), epsg, 3857)
    return Viewport(int(width), int(height), epsg, float(mx[0]), float(my[0]), float(mx[1]), float(my[1]))


# ------------------------------------------------------- Spark-side binning
_PARTIAL_SCHEMA = "idx binary, vals binary, nvals int"
#: Arrow batch size while binning: big batches amortise the per-batch cost of the JVM ->
#: Python transfer (a batch of 2 doubles + 1 weight is ~12 MB at this size).
BIN_BATCH_ROWS = 500_000
_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass(frozen=True)
class XYPoints:
    """A map source whose points are raw coordinate columns instead of WKB.

    ``df`` columns: x, y, then the weight columns.  ``sql_columns`` is the column count
    of the SQL the user wrote (geometry + weights), which the map types validate.
    Built by :func:`chalicelib.engine.geo.ops.render` from ``SELECT ST_Point(a, b), ...``
    (see :func:`chalicelib.engine.geo.rewrite.xy_map_sql`); binning it gives exactly what
    binning ``ST_Point(x, y)`` gives, without the WKB round trip.
    """

    df: DataFrame
    sql_columns: int
    #: Set when ``df`` is a plain projection of a Parquet scan: the binning tasks read
    #: these row groups themselves (see :mod:`chalicelib.engine.geo.parquet_scan`).
    parquet: ParquetPieces | None = None


Source: TypeAlias = DataFrame | XYPoints


def _ncols(src: Source) -> int:
    return src.sql_columns if isinstance(src, XYPoints) else len(src.columns)


def _point_columns(batch: pa.RecordBatch) -> tuple[Floats, Floats, npt.NDArray[np.bool_]]:
    geo = batch.column(0)
    pts = points_xy(geo)
    if pts is not None:
        return pts
    values = np.asarray(geo.to_numpy(zero_copy_only=False), dtype=object)
    geoms = shapely.from_wkb(values)
    types = shapely.get_type_id(geoms)
    ok = types == 0
    if ((types != 0) & (types != -1)).any():
        # Non-point geometries are drawn at their centroid, as a point.
        geoms = np.where(ok | (types == -1), geoms, shapely.centroid(geoms))
        ok = types != -1
    return shapely.get_x(geoms), shapely.get_y(geoms), np.asarray(ok, dtype=bool)


def _xy_columns(batch: pa.RecordBatch) -> tuple[Floats, Floats, npt.NDArray[np.bool_]]:
    """Raw coordinate columns, as ``ST_Point`` reads them (nulls -> NaN, not drawn)."""
    x, y = batch.column(0), batch.column(1)
    return to_float(x), to_float(y), valid_mask(x) & valid_mask(y)


def _bin_batches(vp: Viewport, nweights: int, xy: bool, batches: Iterator[pa.RecordBatch]) -> tuple[bytes, bytes, int]:
    """Bin one partition's rows into a dense grid; return its non-empty cells as
    (int32 cell indexes, float64 ``[count, *sums]`` rows, number of value rows)."""
    size = vp.width * vp.height
    first_weight = 2 if xy else 1
    read = _xy_columns if xy else _point_columns
    count = np.zeros(size, dtype=np.float64)
    sums = [np.zeros(size, dtype=np.float64) for _ in range(nweights)]
    for batch in batches:
        if batch.num_rows == 0:
            continue
        x, y, ok = read(batch)
        cell, inside = vp.cells(x, y)
        ok &= inside
        weights = []
        for k in range(nweights):
            col = batch.column(k + first_weight)
            w = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            ok &= np.isfinite(w)
            weights.append(w)
        if not ok.all():
            cell = cell[ok]
            weights = [w[ok] for w in weights]
        count += np.bincount(cell, minlength=size)
        for k in range(nweights):
            sums[k] += np.bincount(cell, weights=weights[k], minlength=size)
    nz = np.flatnonzero(count)
    vals = np.vstack([count[nz], *[s[nz] for s in sums]])
    return nz.astype(np.int32).tobytes(), vals.astype(np.float64).tobytes(), 1 + nweights


def _binner(vp: Viewport, nweights: int, xy: bool) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: a partition's rows -> one batch of its sparse cells."""

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        idx, vals, nvals = _bin_batches(vp, nweights, xy, batches)
        yield pa.RecordBatch.from_pydict(
            {
                "idx": pa.array([idx], type=pa.binary()),
                "vals": pa.array([vals], type=pa.binary()),
                "nvals": pa.array([nvals], type=pa.int32()),
            }
        )

    return fn


def _partials(src: Source, vp: Viewport, nweights: int) -> list[tuple[bytes, bytes, int]]:
    """Every partition's sparse cells, binned inside Spark (see :func:`bin_points`)."""
    xy = isinstance(src, XYPoints)
    if isinstance(src, XYPoints) and src.parquet is not None:
        pieces = src.parquet

        def read_and_bin(parts: Iterator[Slice]) -> Iterator[tuple[bytes, bytes, int]]:
            for part in parts:
                yield _bin_batches(vp, nweights, True, read_slice(pieces.columns, part, BIN_BATCH_ROWS, pieces.where))

        sc = src.df.sparkSession.sparkContext
        binned: list[tuple[bytes, bytes, int]] = (
            sc.parallelize(pieces.slices, len(pieces.slices)).mapPartitions(read_and_bin).collect()
        )
        return binned
    df = src.df if isinstance(src, XYPoints) else src
    ncoords = 2 if xy else 1
    sel = df.select(*[F.col(f"`{c}`") for c in df.columns[: ncoords + nweights]])
    spark = df.sparkSession
    previous = spark.conf.get(_BATCH_CONF, None)
    try:
        if previous is None or int(previous) < BIN_BATCH_ROWS:
            spark.conf.set(_BATCH_CONF, str(BIN_BATCH_ROWS))
        rows = sel.mapInArrow(_binner(vp, nweights, xy), _PARTIAL_SCHEMA).collect()  # type: ignore[arg-type]
    finally:
        if previous is None:
            spark.conf.unset(_BATCH_CONF)
        else:
            spark.conf.set(_BATCH_CONF, previous)
    return [(row["idx"], row["vals"], row["nvals"]) for row in rows]


def bin_points(src: Source, vp: Viewport, nweights: int) -> tuple[Floats, list[Floats]]:
    """Aggregate in Spark: per pixel, the point count and the sum of each weight column.

    ``src`` is the SQL result (column 0 the geometry, then weights) or :class:`XYPoints`.
    Returns dense ``(height, width)`` arrays with row 0 at the bottom (GL order).
    """
    ncols = _ncols(src)
    if ncols < 1 + nweights:
        raise MapParamError(f"the SQL result needs {1 + nweights} columns, got {ncols}")
    size = vp.width * vp.height
    count = np.zeros(size, dtype=np.float64)
    sums = [np.zeros(size, dtype=np.float64) for _ in range(nweights)]
    for idx_bytes, vals_bytes, nvals in _partials(src, vp, nweights):
        idx = np.frombuffer(idx_bytes, dtype=np.int32)
        if len(idx) == 0:
            continue
        vals = np.frombuffer(vals_bytes, dtype=np.float64).reshape(nvals, len(idx))
        count[idx] += vals[0]
        for k in range(nweights):
            sums[k][idx] += vals[k + 1]
    shape = (vp.height, vp.width)
    return count.reshape(shape), [s.reshape(shape) for s in sums]


# ------------------------------------------------------------------ drawing
def lit_margin(opacity: float, diameter: float) -> float:
    """How far past the radius (px) a smooth point still leaves a non-zero alpha.

    Fitted on Arctern's renders (isolated points of sizes 3 and 5 at opacity 0.5 and
    1): faint antialiased rims fall below 1/255 sooner when the point is translucent,
    and small points keep relatively wider rims.
    """
    size_term = 0.2 * max(0.0, 5.0 - diameter) - 0.1 * max(0.0, diameter - 5.0)
    return min(max(-0.2 + 0.9 * opacity + size_term, -0.5), 0.85)


# Mesa samples smooth points slightly left of the vertex (measured on the references).
POINT_X_SHIFT = -0.15


def disc_offsets(diameter: float, opacity: float = 1.0) -> tuple[Ints, Ints, Floats]:
    """Pixels touched by a smooth GL point of ``diameter`` and their coverage.

    Arctern drew with Mesa: a point at integer window coordinates (px, py) is centred
    on the corner of pixel (px, py), and GL_POINT_SMOOTH gives a pixel whose centre
    is ``dist`` away the coverage ``(rmax - dist) / (rmax - rmin)`` clamped to [0, 1],
    with ``rmin/rmax = radius -/+ sqrt(1/2)`` (Mesa's swrast rule).
    """
    r = max(diameter, 1.0) / 2.0
    rmin, rmax = r - _SQRT_HALF, r + _SQRT_HALF
    reach = math.ceil(rmax + 1)
    d = np.arange(-reach, reach)
    dx, dy = np.meshgrid(d, d)
    dist = np.hypot(dx + 0.5 - POINT_X_SHIFT, dy + 0.5)
    cov = np.clip((rmax - dist) / (rmax - rmin), 0.0, 1.0)
    keep = dist < r + lit_margin(opacity, diameter)
    # a kept pixel always ends up with a visible (>= 1/255) alpha
    floor = math.sqrt(1.0 / 255.0) / max(opacity, 1e-9)
    return dx[keep].astype(np.int64), dy[keep].astype(np.int64), np.maximum(cov[keep], floor)


_SQRT_HALF = math.sqrt(0.5)


def _to_u8(rgba: Floats) -> npt.NDArray[np.uint8]:
    return np.asarray(np.clip(rgba * 255.0, 0, 255), dtype=np.uint8)


def _png(rgba_gl: npt.NDArray[np.uint8]) -> bytes:
    """GL-ordered (bottom row first) RGBA array to PNG bytes, north up."""
    img = Image.fromarray(np.ascontiguousarray(rgba_gl[::-1]), "RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------- map types
def pointmap(df: Source, params: dict[str, Any]) -> bytes:
    """Point map: every point a disc of ``point_size`` px, ``point_color``, ``opacity``."""
    vp = viewport(params)
    size = _number(params, "point_size", 3, lo=0.5, hi=200)
    color = parse_color(params.get("point_color", "#115f9a"), "point_color")
    opacity = _number(params, "opacity", 1.0, lo=0, hi=1)
    count, _ = bin_points(df, vp, 0)
    ys, xs = np.nonzero(count)
    rgba = np.tile(np.array([*color, opacity]), (len(ys), 1))
    return _png(_draw_discs((vp.height, vp.width), ys, xs, np.full(len(ys), size), rgba))


def _gaussian_1d(size: int) -> Floats:
    """Arctern's guassiankernel(size, sigma=size), normalised."""
    sigma = float(size)
    idx = (size >> 1) - np.arange(size, dtype=np.float64)
    if size % 2 == 0:
        idx = idx - 0.5
    k = np.exp(-(idx * idx) / (2 * sigma * sigma + 1e-6))
    return np.asarray(k / k.sum(), dtype=np.float64)


def _convolve_sep(img: Floats, kernel: Floats) -> Floats:
    """Zero-padded separable 2-D convolution with a symmetric 1-D kernel."""
    r = len(kernel) // 2
    out = img
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(out, pad)
        acc = np.zeros_like(out)
        for i, kv in enumerate(kernel):
            sl = [slice(None), slice(None)]
            sl[axis] = slice(i, i + n)
            acc += kv * p[tuple(sl)]
        out = acc
    return out


def _box_mean(img: Floats, r: int) -> Floats:
    """Arctern's MeanKernel: mean over the (2r+1)^2 window clipped to the image."""
    r = min(r, 10)
    out = img
    for axis in (0, 1):
        n = out.shape[axis]
        c = np.cumsum(np.pad(out, [(r + 1, r) if a == axis else (0, 0) for a in (0, 1)]), axis=axis)
        hi = [slice(None), slice(None)]
        lo = [slice(None), slice(None)]
        hi[axis] = slice(2 * r + 1, 2 * r + 1 + n)
        lo[axis] = slice(0, n)
        out = c[tuple(hi)] - c[tuple(lo)]
    ones_y = np.convolve(np.ones(img.shape[0]), np.ones(2 * r + 1), mode="same")
    ones_x = np.convolve(np.ones(img.shape[1]), np.ones(2 * r + 1), mode="same")
    return out / np.outer(ones_y, ones_x)


_HEAT_STOPS = np.array([[0, 0, 1, 0.0], [0, 1, 1, 0.25], [0, 1, 0, 0.5], [1, 1, 0, 0.75], [1, 0, 0, 1.0]])


def heat_ramp(value: Floats) -> Floats:
    """Arctern's default heat gradient: blue, cyan, green, yellow, red."""
    stops = _HEAT_STOPS[:, 3]
    return np.stack([np.interp(value, stops, _HEAT_STOPS[:, ch]) for ch in range(3)], axis=-1)


def heat_grid(weights: Floats, zoom: float) -> Floats:
    """Arctern's heat kernel on a weight grid; returns values normalised to [0, 1]."""
    d = int(2 ** (zoom * 0.4))
    ksize = d * 2 + 3
    kernel = _gaussian_1d(ksize)
    heat = _convolve_sep(weights, kernel)
    mean_radius = int(math.log((ksize - 3) / 2) / 0.4) if d > 0 else 0
    heat = _box_mean(heat, mean_radius // 2 + 1)
    heat = _box_mean(heat, mean_radius + 1)
    mx = heat.max()
    return heat / mx if mx > 0 else np.zeros_like(heat)


# Arctern draws every heat pixel as a 1 px smooth GL point at a pixel corner: each
# pixel then gets 4 fragments (one per corner), each with alpha value * coverage,
# the coverage of a 1 px smooth point at sqrt(1/2) px being (1.207 - 0.707) / 1.414.
HEAT_FRAGMENT_COVERAGE = (0.5 + _SQRT_HALF - _SQRT_HALF) / (2 * _SQRT_HALF)
HEAT_FRAGMENTS = 4


def heatmap(df: Source, params: dict[str, Any]) -> bytes:
    """Heat map of the summed weights (column 1), Arctern's kernel and colour ramp."""
    vp = viewport(params)
    zoom = _number(params, "map_zoom_level", 10, lo=0, hi=22)
    _, sums = bin_points(df, vp, 1)
    value = heat_grid(sums[0], zoom)
    a = value * HEAT_FRAGMENT_COVERAGE
    cover = 1.0 - (1.0 - a) ** HEAT_FRAGMENTS
    rgb = heat_ramp(value)
    rgba = np.concatenate([rgb * cover[..., None], (a * cover)[..., None]], axis=-1)
    return _png(_to_u8(rgba))


def _ramp(ratio: Floats, colors: Sequence[tuple[float, float, float]], opacity: float) -> Floats:
    """Arctern's GetColor: linear start->end; equal colours ramp the alpha instead."""
    ratio = np.clip(np.nan_to_num(ratio), 0.0, 1.0)
    start, end = np.array(colors[0]), np.array(colors[-1])
    out = np.empty((*ratio.shape, 4), dtype=np.float64)
    if len(colors) == 1 or np.allclose(start, end):
        out[..., :3] = start
        out[..., 3] = ratio * opacity if len(colors) > 1 else opacity
    else:
        out[..., :3] = start + (end - start) * ratio[..., None]
        out[..., 3] = opacity
    return out


def _ratio(v: Floats, bound: Sequence[float]) -> Floats:
    lo, hi = bound[0], bound[-1]
    if hi == lo:
        return np.where(v >= hi, 1.0, 0.0)
    return (v - lo) / (hi - lo)


def _draw_discs(grid_shape: tuple[int, int], ys: Ints, xs: Ints, sizes: Floats, rgba: Floats) -> npt.NDArray[np.uint8]:
    """Blend smooth discs (per-point size, colour and alpha) onto transparent black.

    Grid in GL order (row 0 at the bottom).  Fragments are blended with
    ``SRC_ALPHA, ONE_MINUS_SRC_ALPHA`` (alpha channel too), fragment alpha being
    the point's alpha times its coverage.  Output rounds to 8 bits like GL does.
    """
    h, w = grid_shape
    one_size = len(sizes) > 0 and float(sizes.min()) == float(sizes.max())
    if not one_size:
        order = np.argsort(-sizes, kind="stable")  # big discs first, small ones stay visible
        ys, xs, sizes, rgba = ys[order], xs[order], sizes[order], rgba[order]
    opacity = float(rgba[:, 3].max()) if len(rgba) else 1.0
    if one_size and len(ys) * PATTERN_MIN_SHARE >= h * w:
        dxs, dys, covs = disc_offsets(float(sizes[0]), opacity)
        if len(dxs) <= _MAX_PATTERN_BITS and (rgba == rgba[0]).all():
            table, inverse = _uniform_disc_table(grid_shape, ys, xs, rgba[0], dxs, dys, covs)
            return _gl_bytes(table)[inverse]
    out = np.zeros((h, w, 4), dtype=np.float64)
    for s in np.unique(sizes)[::-1]:
        sel = sizes == s
        dxs, dys, covs = disc_offsets(float(s), opacity)
        py, px, col = ys[sel], xs[sel], rgba[sel]
        for dx, dy, cov in zip(dxs.tolist(), dys.tolist(), covs.tolist(), strict=True):
            tx, ty = px + dx, py + dy
            ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
            a = col[ok, 3:4] * cov
            dst = out[ty[ok], tx[ok]]
            src = np.concatenate([col[ok, :3] * a, a * a], axis=1)
            out[ty[ok], tx[ok]] = src + (1 - a) * dst
    return _gl_bytes(out)


def _gl_bytes(rgba: Floats) -> npt.NDArray[np.uint8]:
    """Blended float RGBA to 8 bits, rounded like GL."""
    return np.asarray(np.clip(np.rint(rgba * 255.0), 0, 255), dtype=np.uint8)


_MAX_PATTERN_BITS = 62
#: One-size one-colour discs are blended by hit pattern (:func:`_uniform_disc_table`)
#: once at least 1/PATTERN_MIN_SHARE of the grid is lit; sparser maps scatter per point.
PATTERN_MIN_SHARE = 2


def _uniform_disc_table(
    grid_shape: tuple[int, int], py: Ints, px: Ints, col: Floats, dxs: Ints, dys: Ints, covs: Floats
) -> tuple[Floats, Ints]:
    """What :func:`_draw_discs` computes for discs of one size and one colour, bit for
    bit, without gathering/scattering every point once per disc offset.

    A pixel's value only depends on which offsets (in order) hit it, so each pixel gets a
    bit pattern of the offsets that reach it; the blend recurrence is run once per
    distinct pattern with the very same float operations.  Returns the per-pattern
    RGBA table and the ``(h, w)`` index of each pixel's pattern in it.
    """
    h, w = grid_shape
    lit = np.zeros((h, w), dtype=bool)
    lit[py, px] = True
    pattern = np.zeros((h, w), dtype=np.int64)
    for k, (dx, dy) in enumerate(zip(dxs.tolist(), dys.tolist(), strict=True)):
        # target (y + dy, x + dx) for every lit source (y, x), clipped to the grid
        ty0, ty1, tx0, tx1 = max(dy, 0), min(h + dy, h), max(dx, 0), min(w + dx, w)
        if ty0 >= ty1 or tx0 >= tx1:
            continue
        src = lit[ty0 - dy : ty1 - dy, tx0 - dx : tx1 - dx]
        pattern[ty0:ty1, tx0:tx1] |= src.astype(np.int64) << k
    patterns, inverse = np.unique(pattern, return_inverse=True)
    table = np.zeros((len(patterns), 4), dtype=np.float64)
    for k, cov in enumerate(covs.tolist()):
        hit = ((patterns >> k) & 1).astype(bool)
        if not hit.any():
            continue
        a = col[3:4] * cov
        src_rgba = np.concatenate([col[:3] * a, a * a])
        table = np.where(hit[:, None], src_rgba + (1 - a) * table, table)
    return table, inverse.reshape(h, w)


def weighted(df: Source, params: dict[str, Any]) -> bytes:
    """Weighted point map: colour by column ``c`` within ``color_bound`` and/or size by
    column ``s`` within ``size_bound`` (sums per pixel, as Arctern aggregates them).

    Columns: ``point`` only (one colour, ``size_bound[0]``); ``point, c`` with two
    colours in ``color_gradient``; ``point, s`` with two values in ``size_bound``;
    ``point, c, s`` with both.
    """
    vp = viewport(params)
    colors = _colors(params, "color_gradient", [1, 2])
    opacity = _number(params, "opacity", 1.0, lo=0, hi=1)
    size_bound = _numbers(params, "size_bound", [1, 2], [3])
    color_bound = _numbers(params, "color_bound", [2], [0, 1])
    if size_bound[0] < 0 or size_bound[-1] > 200:
        raise MapParamError(f"parameter 'size_bound' out of range: {size_bound}")
    ncols = _ncols(df)
    multi_color = len(colors) == 2
    multi_size = len(size_bound) == 2
    if ncols == 1:
        kinds: list[str] = []
    elif ncols == 2 and multi_color and not multi_size:
        kinds = ["c"]
    elif ncols == 2 and multi_size and not multi_color:
        kinds = ["s"]
    elif ncols == 3 and multi_color and multi_size:
        kinds = ["c", "s"]
    else:
        raise MapParamError(
            f"parameters 'color_gradient'/'size_bound' do not match the {ncols} SQL columns: "
            "use 2 colours to colour by c and 2 size bounds to size by s"
        )
    count, sums = bin_points(df, vp, len(kinds))
    ys, xs = np.nonzero(count)
    cvals = sums[kinds.index("c")][ys, xs] if "c" in kinds else np.zeros(len(ys))
    svals = sums[kinds.index("s")][ys, xs] if "s" in kinds else np.full(len(ys), size_bound[0])
    sizes = np.clip(svals, size_bound[0], size_bound[-1]) if multi_size else svals
    sizes = np.maximum(np.trunc(sizes), 1.0)
    rgba = _ramp(_ratio(cvals, color_bound), colors if multi_color else colors[:1], opacity)
    return _png(_draw_discs((vp.height, vp.width), ys, xs, sizes, rgba))


def choropleth(df: Source, params: dict[str, Any]) -> bytes:
    """Choropleth: polygons (column 0) filled by their summed weight (column 1)."""
    if isinstance(df, XYPoints):
        raise MapParamError("choropleth needs polygons in column 0, not points")
    vp = viewport(params)
    colors = _colors(params, "color_gradient", [1, 2])
    bound = _numbers(params, "color_bound", [2])
    opacity = _number(params, "opacity", 1.0, lo=0, hi=1)
    if len(df.columns) < 2:
        raise MapParamError("choropleth needs two SQL columns: polygon, weight")
    g, w = df.columns[0], df.columns[1]
    agg = (
        df.where(F.col(f"`{g}`").isNotNull() & F.col(f"`{w}`").isNotNull())
        .groupBy(F.col(f"`{g}`").alias("g"))
        .agg(F.sum(F.col(f"`{w}`").cast("double")).alias("w"))
    )
    rows = agg.collect()
    img = Image.new("RGBA", (vp.width, vp.height), (0, 0, 0, 0))
    if rows:
        geoms = shapely.from_wkb([bytes(r["g"]) for r in rows])
        vals = np.array([r["w"] for r in rows], dtype=np.float64)
        rgba = _ramp(_ratio(vals, bound), colors, opacity)
        _fill_polygons(img, vp, geoms, rgba)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fill_polygons(img: Image.Image, vp: Viewport, geoms: Any, rgba: Floats) -> None:
    """Fill polygons/multipolygons (holes cut out) with GL-blended colours."""
    parts = shapely.get_parts(geoms, return_index=True)
    polys, owner = parts
    keep = shapely.get_type_id(polys) == 3
    polys, owner = polys[keep], owner[keep]
    bounds = shapely.bounds(polys)
    canvas = np.zeros((vp.height, vp.width, 4), dtype=np.float64)
    for poly, k, bb in zip(polys, owner, bounds, strict=True):
        rings = [
            shapely.get_exterior_ring(poly),
            *[shapely.get_interior_ring(poly, i) for i in range(shapely.get_num_interior_rings(poly))],
        ]
        pix = []
        for ring in rings:
            c = shapely.get_coordinates(ring)
            px, py = vp.project(c[:, 0], c[:, 1])
            pix.append((px, vp.height - py))  # to image rows (top origin)
        x0 = int(min(p[0].min() for p in pix))
        x1 = int(max(p[0].max() for p in pix))
        y0 = int(min(p[1].min() for p in pix))
        y1 = int(max(p[1].max() for p in pix))
        if x1 < 0 or y1 < 0 or x0 >= vp.width or y0 >= vp.height:
            continue
        del bb
        mask = Image.new("1", (x1 - x0 + 1, y1 - y0 + 1), 0)
        draw = ImageDraw.Draw(mask)
        for i, (px, py) in enumerate(pix):
            pts = list(zip((px - x0).tolist(), (py - y0).tolist(), strict=True))
            if len(pts) >= 3:
                draw.polygon(pts, fill=1 if i == 0 else 0)
        m = np.asarray(mask, dtype=bool)
        ys, xs = np.nonzero(m)
        ys, xs = ys + y0, xs + x0
        ok = (xs >= 0) & (xs < vp.width) & (ys >= 0) & (ys < vp.height)
        ys, xs = ys[ok], xs[ok]
        col = rgba[k]
        a = col[3]
        src = np.array([col[0] * a, col[1] * a, col[2] * a, a * a])
        canvas[ys, xs] = src + (1 - a) * canvas[ys, xs]
    img.paste(Image.fromarray(_to_u8(canvas), "RGBA"))


def fishnetmap(df: Source, params: dict[str, Any]) -> bytes:
    """Fishnet map: square cells of ``cell_size`` px (``cell_spacing`` gap) coloured
    by the aggregated weight (``aggregation_type`` sum/mean/count/max/min)."""
    vp = viewport(params)
    colors = _colors(params, "color_gradient", [1, 2])
    cell = int(_number(params, "cell_size", 4, lo=1, hi=512))
    spacing = int(_number(params, "cell_spacing", 1, lo=0, hi=511))
    opacity = _number(params, "opacity", 1.0, lo=0, hi=1)
    agg = str(params.get("aggregation_type", "sum"))
    if agg not in ("sum", "mean", "count"):
        raise MapParamError(f"parameter 'aggregation_type' must be sum, mean or count, got {agg!r}")
    if spacing >= cell:
        raise MapParamError("parameter 'cell_spacing' must be smaller than 'cell_size'")
    nweights = 1 if _ncols(df) > 1 else 0
    count, sums = bin_points(df, vp, nweights)
    gh, gw = -(-vp.height // cell), -(-vp.width // cell)
    pad = ((0, gh * cell - vp.height), (0, gw * cell - vp.width))

    def cells(a: Floats) -> Floats:
        return np.asarray(np.pad(a, pad).reshape(gh, cell, gw, cell).sum(axis=(1, 3)), dtype=np.float64)

    n = cells(count)
    if agg == "count" or nweights == 0:
        v = n
    else:
        s = cells(sums[0])
        v = s if agg == "sum" else np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    lit = n > 0
    out = np.zeros((vp.height, vp.width, 4), dtype=np.float64)
    if lit.any():
        lo, hi = float(v[lit].min()), float(v[lit].max())
        ratio = np.where(hi > lo, (v - lo) / (hi - lo if hi > lo else 1), 1.0)
        rgba = _ramp(ratio, colors, opacity)
        src = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:] ** 2], axis=-1)
        src[~lit] = 0
        block = np.zeros((cell, cell), dtype=bool)
        block[: cell - spacing, : cell - spacing] = True
        full = np.kron(src, np.ones((cell, cell, 1)))[: vp.height, : vp.width]
        mask = np.tile(block, (gh, gw))[: vp.height, : vp.width]
        out[mask] = full[mask]
    return _png(_to_u8(out))


def icon_viz(df: Source, params: dict[str, Any]) -> bytes:
    """Icon map: the PNG at ``icon_path`` drawn centred on each (distinct) pixel."""
    vp = viewport(params)
    path = params.get("icon_path")
    if not isinstance(path, str) or not Path(path).is_file():
        raise MapParamError(f"parameter 'icon_path' must name a readable image file, got {path!r}")
    try:
        icon = Image.open(path).convert("RGBA")
    except OSError as exc:
        raise MapParamError(f"parameter 'icon_path' is not an image: {exc}") from None
    count, _ = bin_points(df, vp, 0)
    ys, xs = np.nonzero(count)
    img = Image.new("RGBA", (vp.width, vp.height), (0, 0, 0, 0))
    iw, ih = icon.size
    for x, y in zip(xs.tolist(), (vp.height - 1 - ys).tolist(), strict=True):
        _paste_clipped(img, icon, x - iw // 2, y - ih // 2)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _paste_clipped(img: Image.Image, icon: Image.Image, x: int, y: int) -> None:
    left, top = max(0, -x), max(0, -y)
    right = min(icon.size[0], img.size[0] - x)
    bottom = min(icon.size[1], img.size[1] - y)
    if right <= left or bottom <= top:
        return
    img.alpha_composite(icon.crop((left, top, right, bottom)), dest=(x + left, y + top))


_RENDERERS: dict[str, Callable[[Source, dict[str, Any]], bytes]] = {
    "pointmap": pointmap,
    "heatmap": heatmap,
    "choropleth": choropleth,
    "choroplethmap": choropleth,
    "weighted": weighted,
    "weighted_pointmap": weighted,
    "fishnetmap": fishnetmap,
    "icon_viz": icon_viz,
}


def render_map(kind: str, df: Source, params: dict[str, Any]) -> bytes:
    """Dispatch by endpoint name ('pointmap', 'heatmap', 'choropleth', 'weighted',
    'fishnetmap', 'icon_viz'); raises MapParamError for an unknown kind or bad params."""
    fn = _RENDERERS.get(kind)
    if fn is None:
        raise MapParamError(f"unknown map type {kind!r}")
    return fn(df, params)
