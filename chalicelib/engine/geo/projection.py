"""EPSG:4326 <-> EPSG:3857 (spherical Web Mercator) with numpy, no pyproj.

The formulas are the EPSG "Popular Visualisation Pseudo-Mercator" ones that
GDAL/PROJ apply for this pair: ``x = R*lon``, ``y = R*ln(tan(pi/4 + lat/2))`` with
``R = 6378137`` (WGS84 semi-major axis), angles in radians.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

WGS84_A = 6378137.0
# Web Mercator is undefined at the poles; clamp like PROJ does for rendering.
MAX_LAT = 85.0511287798066

SUPPORTED = (4326, 3857)

Floats = npt.NDArray[np.float64]


def lonlat_to_mercator(lon: Floats, lat: Floats) -> tuple[Floats, Floats]:
    """Degrees lon/lat to Web Mercator metres."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.clip(np.asarray(lat, dtype=np.float64), -MAX_LAT, MAX_LAT)
    x = WGS84_A * np.radians(lon)
    y = WGS84_A * np.log(np.tan(np.pi / 4.0 + np.radians(lat) / 2.0))
    return x, y


def mercator_to_lonlat(x: Floats, y: Floats) -> tuple[Floats, Floats]:
    """Web Mercator metres to degrees lon/lat."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lon = np.degrees(x / WGS84_A)
    lat = np.degrees(2.0 * np.arctan(np.exp(y / WGS84_A)) - np.pi / 2.0)
    return lon, lat


def transform_xy(x: Floats, y: Floats, src: int, dst: int) -> tuple[Floats, Floats]:
    """Transform coordinate arrays between two supported EPSG codes."""
    for code in (src, dst):
        if code not in SUPPORTED:
            raise ValueError(f"unsupported CRS EPSG:{code} (supported: EPSG:4326, EPSG:3857)")
    if src == dst:
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if src == 4326:
        return lonlat_to_mercator(x, y)
    return mercator_to_lonlat(x, y)
