"""The heat map computed on the window around its non-zero weights gives the whole grid's bytes."""

from __future__ import annotations

import numpy as np
import pytest

from chalicelib.engine.geo.render import shade


def _whole_grid(weights: np.ndarray, zoom: float) -> np.ndarray:
    """The heat map's RGBA computed on the whole grid (what heat_u8 did before the window)."""
    value = shade.heat_grid(weights, zoom)
    a = value * shade.HEAT_FRAGMENT_COVERAGE
    cover = 1.0 - (1.0 - a) ** shade.HEAT_FRAGMENTS
    rgb = shade.heat_ramp(value)
    return shade.to_u8(np.concatenate([rgb * cover[..., None], (a * cover)[..., None]], axis=-1))


def _grid(shape: tuple[int, int], cells: dict[tuple[int, int], float]) -> np.ndarray:
    g = np.zeros(shape)
    for (r, c), v in cells.items():
        g[r, c] = v
    return g


RNG = np.random.default_rng(7)
_BLOCK = np.zeros((300, 340))
_BLOCK[100:170, 120:200] = RNG.integers(0, 5, (70, 80))
CASES = {
    "block in the middle": (_BLOCK, 10),
    "cells at the corners": (_grid((300, 340), {(0, 0): 1, (1, 4): 2, (299, 339): 3, (298, 335): 1}), 10),
    "one negative cell": (_grid((300, 340), {(150, 150): -2}), 10),
    "negative and positive": (_grid((300, 340), {(100, 100): -2, (110, 100): 1}), 12),
    "no weights": (np.zeros((300, 340)), 10),
    "huge weights (running sums may overflow)": (_grid((300, 340), {(10, 10): 1e300, (11, 10): 1e308}), 10),
    "infinite weight": (_grid((300, 340), {(10, 10): np.inf, (50, 60): 1}), 10),
    "negative zero": (_grid((300, 340), {(200, 200): -0.0, (10, 10): 1}), 10),
    "zoom 0": (_grid((60, 70), {(30, 35): 1, (2, 3): 4}), 0),
    "zoom 22 (kernel wider than the grid)": (_grid((60, 70), {(30, 35): 1, (2, 3): 4}), 22),
    "dense": (RNG.random((120, 130)), 10),
}


@pytest.mark.parametrize("name", list(CASES))
def test_window_equals_whole_grid(name: str) -> None:
    weights, zoom = CASES[name]
    with np.errstate(all="ignore"):
        expected = _whole_grid(weights, zoom)
        got = shade.heat_u8(weights, zoom)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert np.array_equal(got, expected)


def _discs(shape: tuple[int, int], n: int, sizes: list[float], colours: int, region: tuple[int, int, int, int] | None):
    h, w = shape
    rh, rw, oy, ox = region or (h, w, 0, 0)
    ys, xs = np.divmod(RNG.choice(rh * rw, n, replace=False), rw)
    ys, xs = ys + oy, xs + ox
    order = np.lexsort((xs, ys))
    ys, xs = ys[order], xs[order]
    sz = RNG.choice(sizes, n).astype(float)
    if colours == 1:
        rgba = np.tile([0.2, 0.5, 0.9, 0.5], (n, 1))
    else:
        rgba = np.column_stack([RNG.random((n, 3)), np.full(n, 0.8)])
    return ys, xs, sz, rgba


DISCS = {
    "dense block, many colours": ((300, 340), 12000, [3], 2, (110, 120, 100, 90)),
    "dense block, one colour": ((300, 340), 12000, [3], 1, (110, 120, 100, 90)),
    "touching every edge": ((50, 60), 2500, [5], 2, None),
    "several sizes": ((120, 130), 9000, [1, 3, 7, 12], 2, None),
    "in a corner": ((40, 40), 300, [9], 2, (20, 20, 0, 0)),
    "sparse (scattered)": ((300, 340), 200, [3], 2, None),
}


@pytest.mark.parametrize("name", list(DISCS))
def test_dense_discs_equal_scattered(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shape, n, sizes, colours, region = DISCS[name]
    ys, xs, sz, rgba = _discs(shape, n, sizes, colours, region)
    got = shade.draw_discs(shape, ys, xs, sz, rgba)
    monkeypatch.setattr(shade, "DENSE_MIN_SHARE", 10**12)  # always the per-point scatter
    assert np.array_equal(got, shade.draw_discs(shape, ys, xs, sz, rgba))
