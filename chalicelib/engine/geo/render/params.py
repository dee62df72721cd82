"""Map request parameters: the pixel grid and its extent (:class:`Viewport`), numbers and colours.

Every check raises :class:`MapParamError` (a ``ValueError``) whose message names the parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from chalicelib.engine.geo.projection import MAX_LAT, WGS84_A, Floats, transform_xy

__all__ = [
    "MAX_SIDE",
    "Floats",
    "Ints",
    "MapParamError",
    "Viewport",
    "color_list",
    "number",
    "numbers",
    "parse_color",
    "viewport",
]

Ints = npt.NDArray[np.int64]
MAX_SIDE = 8192
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")


class MapParamError(ValueError):
    """A map request parameter is missing or invalid; the message names it."""


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


def number(
    params: dict[str, Any], key: str, default: Any = None, *, lo: float | None = None, hi: float | None = None
) -> float:
    """``params[key]`` (or ``default``) as a finite number within ``[lo, hi]``."""
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


def numbers(params: dict[str, Any], key: str, lengths: Sequence[int], default: Any = None) -> list[float]:
    """``params[key]`` (or ``default``) as a list of finite numbers, of one of the ``lengths``."""
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


def color_list(params: dict[str, Any], key: str, lengths: Sequence[int]) -> list[tuple[float, float, float]]:
    """``params[key]``: one '#RRGGBB' colour or a list of them, of one of the ``lengths``."""
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
    width = number(params, "width", lo=1, hi=MAX_SIDE)
    height = number(params, "height", lo=1, hi=MAX_SIDE)
    if width != int(width) or height != int(height):
        raise MapParamError("parameters 'width' and 'height' must be integers")
    bbox = numbers(params, "bounding_box", [4])
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
