"""Vectorised conversions between Arrow arrays, numpy and shapely geometries.

Everything here works on whole Arrow arrays at once: no per-row Python loops on the
hot paths.  Points get a dedicated fast path that never builds shapely objects: a
little-endian 2D WKB point is 21 bytes (byte order, uint32 type 1, x, y), so an
Arrow binary array of points is a strided view over its data buffer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely

POINT_WKB_LEN = 21
_POINT_HEADER = np.array([1, 1, 0, 0, 0], dtype=np.uint8)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]


class GeoFunctionError(ValueError):
    """A geometry function got an input it cannot handle (bad WKT, unknown CRS...)."""


def as_array(arr: Any) -> pa.Array:
    """Return a single contiguous ``pa.Array`` (combining chunks when needed)."""
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if isinstance(arr, pa.Array):
        return arr
    return pa.array(arr)


def valid_mask(arr: pa.Array) -> BoolArray:
    """Boolean numpy mask, True where the value is not null."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def to_float(arr: Any) -> FloatArray:
    """Numeric Arrow array to float64 numpy (nulls become NaN)."""
    a = as_array(arr)
    if not pa.types.is_floating(a.type) or a.type != pa.float64():
        a = a.cast(pa.float64())
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.float64)


def points_xy(arr: pa.Array) -> tuple[FloatArray, FloatArray, BoolArray] | None:
    """Decode an Arrow binary array of little-endian WKB 2D points without shapely.

    Returns ``(x, y, valid)`` or ``None`` when some value is not a plain LE point
    (the caller then falls back to shapely).  Null rows get NaN coordinates.
    """
    arr = as_array(arr)
    n = len(arr)
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        return None
    valid = valid_mask(arr)
    if n == 0:
        return np.empty(0), np.empty(0), valid
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    bufs = arr.buffers()
    if bufs[2] is None:
        return None
    offsets = np.frombuffer(bufs[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    nvalid = int(valid.sum())
    if nvalid == n:
        if not (lengths == POINT_WKB_LEN).all():
            return None
        start = int(offsets[0])
        raw = np.frombuffer(bufs[2], dtype=np.uint8)[start : start + n * POINT_WKB_LEN]
        rows = raw.reshape(n, POINT_WKB_LEN)
    else:
        if not (lengths[valid] == POINT_WKB_LEN).all():
            return None
        data = np.frombuffer(bufs[2], dtype=np.uint8)
        idx = offsets[:-1][valid].astype(np.int64)[:, None] + np.arange(POINT_WKB_LEN)
        rows_valid = data[idx]
        rows = np.zeros((n, POINT_WKB_LEN), dtype=np.uint8)
        rows[:, :5] = _POINT_HEADER
        rows[valid] = rows_valid
    if not (rows[:, :5] == _POINT_HEADER).all():
        return None
    xy = np.ascontiguousarray(rows[:, 5:]).view("<f8").reshape(n, 2)
    x = xy[:, 0].astype(np.float64)
    y = xy[:, 1].astype(np.float64)
    if nvalid != n:
        x[~valid] = np.nan
        y[~valid] = np.nan
    return x, y, valid


def points_to_wkb(x: FloatArray, y: FloatArray, valid: BoolArray | None = None) -> pa.Array:
    """Build an Arrow binary array of little-endian WKB points straight from buffers."""
    n = len(x)
    rows = np.empty((n, POINT_WKB_LEN), dtype=np.uint8)
    rows[:, :5] = _POINT_HEADER
    xy = np.empty((n, 2), dtype="<f8")
    xy[:, 0] = x
    xy[:, 1] = y
    rows[:, 5:] = xy.view(np.uint8).reshape(n, 16)
    offsets = np.arange(0, (n + 1) * POINT_WKB_LEN, POINT_WKB_LEN, dtype=np.int32)
    validity = None
    null_count = 0
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
        null_count = int(n - valid.sum())
    return pa.Array.from_buffers(
        pa.binary(),
        n,
        [validity, pa.py_buffer(offsets.tobytes()), pa.py_buffer(rows.tobytes())],
        null_count=null_count,
    )


# Constant geometries (a literal polygon repeated on every row) are parsed and
# prepared once per Python worker and kept here, keyed by their WKB/WKT value.
_CONST_CACHE: OrderedDict[tuple[str, bytes | str], Any] = OrderedDict()
_CONST_CACHE_MAX = 64


def _cache_get(key: tuple[str, bytes | str]) -> Any:
    geom = _CONST_CACHE.get(key)
    if geom is not None:
        _CONST_CACHE.move_to_end(key)
    return geom


def _cache_put(key: tuple[str, bytes | str], geom: Any) -> None:
    _CONST_CACHE[key] = geom
    if len(_CONST_CACHE) > _CONST_CACHE_MAX:
        _CONST_CACHE.popitem(last=False)


def constant_value(arr: pa.Array) -> Any | None:
    """If every row of ``arr`` holds the same non-null value, return it, else None."""
    n = len(arr)
    if n == 0 or arr.null_count:
        return None
    first = arr[0].as_py()
    if n == 1:
        return first
    if arr[n - 1].as_py() != first:
        return None
    if pa.types.is_binary(arr.type) or pa.types.is_string(arr.type):
        # Cheap: equal lengths everywhere is required before comparing bytes.
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
        if not (np.diff(offsets) == offsets[1] - offsets[0]).all():
            return None
        start, width = int(offsets[0]), int(offsets[1] - offsets[0])
        raw = np.frombuffer(bufs[2], dtype=np.uint8)[start : start + n * width]
        if width and not (raw.reshape(n, width) == raw[:width]).all():
            return None
        return first
    return first if (arr == pa.scalar(first, arr.type)).to_numpy(zero_copy_only=False).all() else None


def parse_wkt(arr: pa.Array, fname: str) -> ObjArray:
    """Parse WKT strings to shapely geometries, raising a clear error on bad input."""
    values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)
    try:
        geoms = shapely.from_wkt(values, on_invalid="ignore")
    except NotImplementedError as exc:  # curves: GEOS cannot hold them
        raise GeoFunctionError(
            f"{fname}: unsupported geometry in {_first_bad(values)!r}: {exc}; "
            "use ST_CurveToLine('<curve WKT>') to linearise curves"
        ) from None
    bad = (geoms == None) & (values != None)  # noqa: E711
    if bad.any():
        sample = values[np.flatnonzero(bad)[0]]
        raise GeoFunctionError(f"{fname}: invalid WKT {_clip(sample)!r}")
    return np.asarray(geoms, dtype=object)


def _first_bad(values: ObjArray) -> Any:
    for v in values:
        if v is None:
            continue
        try:
            shapely.from_wkt(v)
        except Exception:
            return _clip(v)
    return None


def _clip(value: Any, limit: int = 200) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    if isinstance(value, bytes) and len(value) > limit:
        return value[:limit] + b"..."
    return value


def load_geoms(arr: Any, fname: str) -> tuple[ObjArray | None, Any]:
    """Arrow array of WKB (or WKT strings) to shapely geometries.

    Returns ``(geoms, None)`` for an ordinary column, or ``(None, geom)`` when every
    row holds the same value (a SQL literal): that value is parsed once per worker,
    ``shapely.prepare``d and cached, so predicates against it run prepared.
    """
    a = as_array(arr)
    is_text = pa.types.is_string(a.type) or pa.types.is_large_string(a.type)
    const = constant_value(a) if len(a) > 1 else None
    if const is not None:
        return None, prepared_constant(const, a.type, fname)
    return _parse(a, is_text, fname), None


def prepared_constant(value: bytes | str, arrow_type: pa.DataType, fname: str) -> Any:
    """A literal geometry (WKT text or WKB), parsed and ``shapely.prepare``d once per worker (cached)."""
    is_text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    key = ("wkt" if is_text else "wkb", value)
    geom = _cache_get(key)
    if geom is None:
        geom = _parse(pa.array([value], type=arrow_type), is_text, fname)[0]
        if geom is not None:
            shapely.prepare(geom)
            _cache_put(key, geom)
    return geom


def to_geoms(arr: Any, fname: str) -> ObjArray:
    """Arrow array of WKB (or WKT) to a numpy object array of shapely geometries."""
    geoms, const = load_geoms(arr, fname)
    if geoms is not None:
        return geoms
    out = np.empty(len(arr), dtype=object)
    out[:] = const
    return out


def _parse(a: pa.Array, is_text: bool, fname: str) -> ObjArray:
    if is_text:
        return parse_wkt(a, fname)
    values = np.asarray(a.to_numpy(zero_copy_only=False), dtype=object)
    try:
        return np.asarray(shapely.from_wkb(values), dtype=object)
    except Exception as exc:
        bad = None
        for v in values:
            if v is None:
                continue
            try:
                shapely.from_wkb(v)
            except Exception:
                bad = _clip(v)
                break
        raise GeoFunctionError(f"{fname}: invalid WKB geometry {bad!r}: {exc}") from None


def from_geoms(geoms: ObjArray) -> pa.Array:
    """Shapely geometries (None for null) to an Arrow binary array of WKB."""
    wkb = shapely.to_wkb(geoms, byte_order=1)
    return pa.array(wkb, type=pa.binary())
