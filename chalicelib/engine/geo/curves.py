"""Linearise curved WKT (what GEOS/shapely cannot hold) into linear WKT.

Supports CIRCULARSTRING, COMPOUNDCURVE, CURVEPOLYGON, MULTICURVE and MULTISURFACE
(2D).  Each circular arc is approximated with 32 segments per quarter circle, the
PostGIS/Arctern (GDAL) default.
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

SEGMENTS_PER_QUARTER = 32
_CURVED = re.compile(r"\b(CIRCULARSTRING|COMPOUNDCURVE|CURVEPOLYGON|MULTICURVE|MULTISURFACE)\b", re.I)
_TOKEN = re.compile(r"\s*([A-Za-z]+|\(|\)|,|[-+0-9.eE]+(?:\s+[-+0-9.eE]+)+)")

Coords = npt.NDArray[np.float64]


def is_curved(wkt: str) -> bool:
    """True when the WKT contains a curve type."""
    return bool(_CURVED.search(wkt))


def arc_to_points(p0: Coords, p1: Coords, p2: Coords) -> Coords:
    """Points along the circular arc through p0, p1, p2 (p0 excluded, p2 included)."""
    (x0, y0), (x1, y1), (x2, y2) = p0, p1, p2
    if np.allclose(p0, p2):  # full circle: p1 is diametrically opposite p0
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        r = math.hypot(x0 - cx, y0 - cy)
        a0 = math.atan2(y0 - cy, x0 - cx)
        n = 4 * SEGMENTS_PER_QUARTER
        angles = a0 + 2 * math.pi * np.arange(1, n + 1) / n
        pts = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])
        pts[-1] = p2
        return pts
    d = 2.0 * (x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1))
    if abs(d) < 1e-15:  # collinear: a straight segment
        return np.array([p1, p2], dtype=np.float64)
    s0, s1, s2 = x0 * x0 + y0 * y0, x1 * x1 + y1 * y1, x2 * x2 + y2 * y2
    cx = (s0 * (y1 - y2) + s1 * (y2 - y0) + s2 * (y0 - y1)) / d
    cy = (s0 * (x2 - x1) + s1 * (x0 - x2) + s2 * (x1 - x0)) / d
    r = math.hypot(x0 - cx, y0 - cy)
    a0 = math.atan2(y0 - cy, x0 - cx)
    a1 = math.atan2(y1 - cy, x1 - cx)
    a2 = math.atan2(y2 - cy, x2 - cx)
    ccw = d > 0

    def norm(a: float) -> float:
        return a % (2 * math.pi)

    sweep = norm(a2 - a0) if ccw else -norm(a0 - a2)
    # p1 must lie on the swept side, otherwise go the other way round
    mid = norm(a1 - a0) if ccw else norm(a0 - a1)
    if mid > abs(sweep):
        sweep = sweep - 2 * math.pi if ccw else sweep + 2 * math.pi
    n = max(2, math.ceil(abs(sweep) / (math.pi / 2) * SEGMENTS_PER_QUARTER))
    angles = a0 + sweep * np.arange(1, n + 1) / n
    pts = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])
    pts[-1] = p2
    return pts


def _circular(coords: Coords) -> Coords:
    if len(coords) < 3 or len(coords) % 2 == 0:
        raise ValueError("CIRCULARSTRING needs an odd number (>= 3) of points")
    out = [coords[:1]]
    for i in range(0, len(coords) - 2, 2):
        out.append(arc_to_points(coords[i], coords[i + 1], coords[i + 2]))
    return np.vstack(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = [t for t in _TOKEN.findall(text.strip())]
        self.i = 0

    def peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if expected is not None and tok.upper() != expected:
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def coords(self) -> Coords:
        self.take("(")
        pts = []
        while True:
            tok = self.take()
            pts.append([float(v) for v in tok.split()[:2]])
            if self.take() == ")":
                break
        return np.array(pts, dtype=np.float64)

    def curve(self) -> Coords:
        tok = self.peek().upper()
        if tok == "(":
            return self.coords()
        if tok == "LINESTRING":
            self.take()
            return self.coords()
        if tok == "CIRCULARSTRING":
            self.take()
            return _circular(self.coords())
        if tok == "COMPOUNDCURVE":
            self.take()
            self.take("(")
            parts: list[Coords] = []
            while True:
                part = self.curve()
                parts.append(part if not parts else part[1:])
                if self.take() == ")":
                    break
            return np.vstack(parts)
        raise ValueError(f"unexpected curve token {tok!r}")

    def surface(self) -> list[Coords]:
        tok = self.peek().upper()
        if tok in ("CURVEPOLYGON", "POLYGON"):
            self.take()
        self.take("(")
        rings = []
        while True:
            rings.append(self.curve())
            if self.take() == ")":
                break
        return rings

    def geometry(self) -> str:
        kind = self.take().upper()
        if kind in ("CIRCULARSTRING", "COMPOUNDCURVE"):
            self.i -= 1
            return "LINESTRING " + _fmt_line(self.curve())
        if kind == "CURVEPOLYGON":
            self.i -= 1
            return "POLYGON " + _fmt_poly(self.surface())
        if kind == "MULTICURVE":
            self.take("(")
            lines = []
            while True:
                lines.append(_fmt_line(self.curve()))
                if self.take() == ")":
                    break
            return "MULTILINESTRING (" + ", ".join(lines) + ")"
        if kind == "MULTISURFACE":
            self.take("(")
            polys = []
            while True:
                polys.append(_fmt_poly(self.surface()))
                if self.take() == ")":
                    break
            return "MULTIPOLYGON (" + ", ".join(polys) + ")"
        raise ValueError(f"not a curve type: {kind!r}")


def _fmt_line(coords: Coords) -> str:
    return "(" + ", ".join(f"{x!r} {y!r}" for x, y in coords.tolist()) + ")"


def _fmt_poly(rings: list[Coords]) -> str:
    return "(" + ", ".join(_fmt_line(r) for r in rings) + ")"


def linearize_wkt(wkt: str) -> str:
    """Curved WKT -> linear WKT (linear WKT is returned unchanged)."""
    if not is_curved(wkt):
        return wkt
    parser = _Parser(wkt)
    out = parser.geometry()
    if parser.i != len(parser.tokens):
        raise ValueError("trailing text after geometry")
    return out
