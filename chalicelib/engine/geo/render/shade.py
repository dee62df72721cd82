"""Rasterising on the driver (numpy/Pillow): smooth GL discs, the heat kernel (gaussian and box
blur) and its ramp, colour ramps, polygon fills, icons and PNG encoding.

Output colours follow OpenGL's ``SRC_ALPHA, ONE_MINUS_SRC_ALPHA`` blending onto a transparent
framebuffer, which is what Arctern's PNGs contain: a fragment of colour ``c`` and alpha ``a``
leaves ``(a*c, a*a)``.  Grids are in GL order (row 0 at the bottom) until :func:`encode_png`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from PIL import Image, ImageDraw

from chalicelib.engine.geo.render.params import Floats, Ints, Viewport


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


def to_u8(rgba: Floats) -> npt.NDArray[np.uint8]:
    """Float RGBA in [0, 1] to 8 bits, truncated."""
    return np.asarray(np.clip(rgba * 255.0, 0, 255), dtype=np.uint8)


def encode_png(rgba_gl: npt.NDArray[np.uint8]) -> bytes:
    """GL-ordered (bottom row first) RGBA array to PNG bytes, north up."""
    return image_png(Image.fromarray(np.ascontiguousarray(rgba_gl[::-1]), "RGBA"))


def image_png(img: Image.Image) -> bytes:
    """A Pillow image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


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


def _box_mean(img: Floats, r: int, full: tuple[int, int] | None = None, origin: tuple[int, int] = (0, 0)) -> Floats:
    """Arctern's MeanKernel: mean over the (2r+1)^2 window clipped to the image.

    ``img`` may be a window of a bigger image (of shape ``full``, window corner ``origin``)
    that is zero around the window: the divisor (the window size clipped to the image) is
    the full image's."""
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
    height, width = full or img.shape
    ones_y = np.convolve(np.ones(height), np.ones(2 * r + 1), mode="same")[origin[0] : origin[0] + img.shape[0]]
    ones_x = np.convolve(np.ones(width), np.ones(2 * r + 1), mode="same")[origin[1] : origin[1] + img.shape[1]]
    return out / np.outer(ones_y, ones_x)


_HEAT_STOPS = np.array([[0, 0, 1, 0.0], [0, 1, 1, 0.25], [0, 1, 0, 0.5], [1, 1, 0, 0.75], [1, 0, 0, 1.0]])


def heat_ramp(value: Floats) -> Floats:
    """Arctern's default heat gradient: blue, cyan, green, yellow, red."""
    stops = _HEAT_STOPS[:, 3]
    return np.stack([np.interp(value, stops, _HEAT_STOPS[:, ch]) for ch in range(3)], axis=-1)


def _heat_radii(zoom: float) -> tuple[Floats, int, int]:
    """The heat kernel of ``zoom``: the gaussian, then the two box radii (clipped as applied)."""
    d = int(2 ** (zoom * 0.4))
    ksize = d * 2 + 3
    mean_radius = int(math.log((ksize - 3) / 2) / 0.4) if d > 0 else 0
    return _gaussian_1d(ksize), min(mean_radius // 2 + 1, 10), min(mean_radius + 1, 10)


def heat_grid(
    weights: Floats, zoom: float, full: tuple[int, int] | None = None, origin: tuple[int, int] = (0, 0)
) -> Floats:
    """Arctern's heat kernel on a weight grid; returns values normalised to [0, 1].

    With ``full``, ``weights`` is a window (corner ``origin``) of a zero grid of that shape
    holding all of its non-zero cells, with room for the kernel's reach on every side that
    is not the grid's edge (see :func:`heat_u8`): the result is that window of the full
    grid's result."""
    kernel, r1, r2 = _heat_radii(zoom)
    heat = _convolve_sep(weights, kernel)
    heat = _box_mean(heat, r1, full, origin)
    heat = _box_mean(heat, r2, full, origin)
    mx = heat.max() if heat.size else 0.0
    if full is not None and heat.shape != full:
        mx = max(mx, 0.0)  # the cells outside the window are 0
    return heat / mx if mx > 0 else np.zeros_like(heat)


#: Beyond this magnitude a weight could overflow the blur's running sums (inf - inf is NaN
#: everywhere after it), so the heat map is then computed on the whole grid.
_CROP_MAX_WEIGHT = 1e200


def heat_u8(weights: Floats, zoom: float) -> npt.NDArray[np.uint8]:
    """The heat map's 8-bit RGBA (GL order) of a weight grid.

    The kernel reaches a bounded distance (gaussian radius + both box radii), and a zero
    heat value is a transparent black pixel, so only the window around the non-zero
    weights is computed: every operation in it is the whole grid's, in the same order
    (the blur's running sums start from exact zeros), so the bytes are the same."""
    h, w = weights.shape
    out = np.zeros((h, w, 4), dtype=np.uint8)
    finite = np.isfinite(weights).all() and float(np.abs(weights).max(initial=0.0)) <= _CROP_MAX_WEIGHT
    if finite:
        rows = np.flatnonzero(weights.any(axis=1))
        cols = np.flatnonzero(weights.any(axis=0))
        if len(rows) == 0:
            return out
        kernel, r1, r2 = _heat_radii(zoom)
        reach = len(kernel) // 2 + r1 + r2 + 2
        r0, r1_ = max(int(rows[0]) - reach, 0), min(int(rows[-1]) + reach + 1, h)
        c0, c1 = max(int(cols[0]) - reach, 0), min(int(cols[-1]) + reach + 1, w)
    else:
        r0, r1_, c0, c1 = 0, h, 0, w
    value = heat_grid(weights[r0:r1_, c0:c1], zoom, (h, w), (r0, c0))
    a = value * HEAT_FRAGMENT_COVERAGE
    cover = 1.0 - (1.0 - a) ** HEAT_FRAGMENTS
    rgb = heat_ramp(value)
    out[r0:r1_, c0:c1] = to_u8(np.concatenate([rgb * cover[..., None], (a * cover)[..., None]], axis=-1))
    return out


# Arctern draws every heat pixel as a 1 px smooth GL point at a pixel corner: each
# pixel then gets 4 fragments (one per corner), each with alpha value * coverage,
# the coverage of a 1 px smooth point at sqrt(1/2) px being (1.207 - 0.707) / 1.414.
HEAT_FRAGMENT_COVERAGE = (0.5 + _SQRT_HALF - _SQRT_HALF) / (2 * _SQRT_HALF)
HEAT_FRAGMENTS = 4


def ramp(ratio: Floats, colors: Sequence[tuple[float, float, float]], opacity: float) -> Floats:
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


def bound_ratio(v: Floats, bound: Sequence[float]) -> Floats:
    """Where ``v`` lies between ``bound[0]`` and ``bound[-1]`` (0 -> 1; a one-value bound is a step)."""
    lo, hi = bound[0], bound[-1]
    if hi == lo:
        return np.where(v >= hi, 1.0, 0.0)
    return (v - lo) / (hi - lo)


def draw_discs(grid_shape: tuple[int, int], ys: Ints, xs: Ints, sizes: Floats, rgba: Floats) -> npt.NDArray[np.uint8]:
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
        if not _blend_dense(out, py, px, col, dxs, dys, covs):
            for dx, dy, cov in zip(dxs.tolist(), dys.tolist(), covs.tolist(), strict=True):
                tx, ty = px + dx, py + dy
                ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
                a = col[ok, 3:4] * cov
                dst = out[ty[ok], tx[ok]]
                src = np.concatenate([col[ok, :3] * a, a * a], axis=1)
                out[ty[ok], tx[ok]] = src + (1 - a) * dst
    return _gl_bytes(out)


#: Discs are blended on the dense window around them once they light at least
#: 1/DENSE_MIN_SHARE of it; sparser ones are scattered point by point.
DENSE_MIN_SHARE = 2


def _blend_dense(out: Floats, py: Ints, px: Ints, col: Floats, dxs: Ints, dys: Ints, covs: Floats) -> bool:
    """The scatter loop of :func:`draw_discs` for discs at distinct pixels ``(py, px)``, done
    on whole shifted slices of the window they reach: per offset, in the same order, every
    hit pixel gets the very same float operations, the others keep their value.  False
    (nothing drawn) when the discs are too sparse in that window."""
    h, w = out.shape[:2]
    if len(py) == 0 or len(dxs) == 0:
        return False
    y0 = max(min(int(py.min()), int(py.min()) + int(dys.min())), 0)
    y1 = min(max(int(py.max()), int(py.max()) + int(dys.max())) + 1, h)
    x0 = max(min(int(px.min()), int(px.min()) + int(dxs.min())), 0)
    x1 = min(max(int(px.max()), int(px.max()) + int(dxs.max())) + 1, w)
    wh, ww = y1 - y0, x1 - x0
    if len(py) * DENSE_MIN_SHARE < wh * ww:
        return False
    lit = np.zeros((wh, ww), dtype=bool)
    lit[py - y0, px - x0] = True
    if int(lit.sum()) != len(py):
        return False  # two discs at one pixel: the scatter loop's order matters
    colour = np.zeros((wh, ww, 4), dtype=np.float64)
    colour[py - y0, px - x0] = col
    win = out[y0:y1, x0:x1]
    for dx, dy, cov in zip(dxs.tolist(), dys.tolist(), covs.tolist(), strict=True):
        # targets (y + dy, x + dx) of the sources (y, x), both in the window
        ty0, ty1, tx0, tx1 = max(dy, 0), min(wh + dy, wh), max(dx, 0), min(ww + dx, ww)
        if ty0 >= ty1 or tx0 >= tx1:
            continue
        hit = lit[ty0 - dy : ty1 - dy, tx0 - dx : tx1 - dx]
        src_col = colour[ty0 - dy : ty1 - dy, tx0 - dx : tx1 - dx]
        dst = win[ty0:ty1, tx0:tx1]
        a = src_col[..., 3:4] * cov
        src = np.concatenate([src_col[..., :3] * a, a * a], axis=-1)
        dst[...] = np.where(hit[..., None], src + (1 - a) * dst, dst)
    return True


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
    """What :func:`draw_discs` computes for discs of one size and one colour, bit for
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


def fill_polygons(img: Image.Image, vp: Viewport, geoms: Any, rgba: Floats) -> None:
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
    img.paste(Image.fromarray(to_u8(canvas), "RGBA"))


def paste_clipped(img: Image.Image, icon: Image.Image, x: int, y: int) -> None:
    """Composite ``icon`` onto ``img`` with its top-left corner at ``(x, y)``, clipped to ``img``."""
    left, top = max(0, -x), max(0, -y)
    right = min(icon.size[0], img.size[0] - x)
    bottom = min(icon.size[1], img.size[1] - y)
    if right <= left or bottom <= top:
        return
    img.alpha_composite(icon.crop((left, top, right, bottom)), dest=(x + left, y + top))
