"""Spark-side binning: every partition bins its rows into a dense numpy grid (``mapInArrow``,
Arrow batches) and ships only the non-empty cells, so at most ``width * height`` cells per
partition ever reach the driver, whatever the row count.  A point query that is a plain
projection of a Parquet table is binned by Spark tasks that read its row groups themselves
(:mod:`chalicelib.engine.geo.parquet_scan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from chalicelib.engine.geo._arrow import points_xy, to_float, valid_mask
from chalicelib.engine.geo.parquet_scan import ParquetPieces, Slice, read_slice
from chalicelib.engine.geo.render.params import Floats, MapParamError, Viewport

__all__ = ["BIN_BATCH_ROWS", "Source", "XYPoints", "bin_points", "column_count"]

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


def column_count(src: Source) -> int:
    """The column count of the SQL the user wrote (geometry + weights)."""
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
    ncols = column_count(src)
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
