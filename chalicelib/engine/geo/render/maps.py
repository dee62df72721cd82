"""The map types: each validates its params, bins or aggregates its SQL result in Spark
(:mod:`.aggregate`) and draws it (:mod:`.shade`).  Registered by kind in
:data:`chalicelib.engine.geo.render.RENDERERS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely
from PIL import Image
from pyspark.sql import functions as F

from chalicelib.engine.geo.render.aggregate import Source, XYPoints, bin_points, column_count
from chalicelib.engine.geo.render.params import (
    Floats,
    MapParamError,
    color_list,
    number,
    numbers,
    parse_color,
    viewport,
)
from chalicelib.engine.geo.render.shade import (
    bound_ratio,
    draw_discs,
    encode_png,
    fill_polygons,
    heat_u8,
    image_png,
    paste_clipped,
    ramp,
    to_u8,
)

__all__ = ["choropleth", "fishnetmap", "heatmap", "icon_viz", "pointmap", "weighted"]


def pointmap(df: Source, params: dict[str, Any]) -> bytes:
    """Point map: every point a disc of ``point_size`` px, ``point_color``, ``opacity``."""
    vp = viewport(params)
    size = number(params, "point_size", 3, lo=0.5, hi=200)
    color = parse_color(params.get("point_color", "#115f9a"), "point_color")
    opacity = number(params, "opacity", 1.0, lo=0, hi=1)
    count, _ = bin_points(df, vp, 0)
    ys, xs = np.nonzero(count)
    rgba = np.tile(np.array([*color, opacity]), (len(ys), 1))
    return encode_png(draw_discs((vp.height, vp.width), ys, xs, np.full(len(ys), size), rgba))


def heatmap(df: Source, params: dict[str, Any]) -> bytes:
    """Heat map of the summed weights (column 1), Arctern's kernel and colour ramp."""
    vp = viewport(params)
    zoom = number(params, "map_zoom_level", 10, lo=0, hi=22)
    _, sums = bin_points(df, vp, 1)
    return encode_png(heat_u8(sums[0], zoom))


def weighted(df: Source, params: dict[str, Any]) -> bytes:
    """Weighted point map: colour by column ``c`` within ``color_bound`` and/or size by
    column ``s`` within ``size_bound`` (sums per pixel, as Arctern aggregates them).

    Columns: ``point`` only (one colour, ``size_bound[0]``); ``point, c`` with two
    colours in ``color_gradient``; ``point, s`` with two values in ``size_bound``;
    ``point, c, s`` with both.
    """
    vp = viewport(params)
    colors = color_list(params, "color_gradient", [1, 2])
    opacity = number(params, "opacity", 1.0, lo=0, hi=1)
    size_bound = numbers(params, "size_bound", [1, 2], [3])
    color_bound = numbers(params, "color_bound", [2], [0, 1])
    if size_bound[0] < 0 or size_bound[-1] > 200:
        raise MapParamError(f"parameter 'size_bound' out of range: {size_bound}")
    ncols = column_count(df)
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
    rgba = ramp(bound_ratio(cvals, color_bound), colors if multi_color else colors[:1], opacity)
    return encode_png(draw_discs((vp.height, vp.width), ys, xs, sizes, rgba))


def choropleth(df: Source, params: dict[str, Any]) -> bytes:
    """Choropleth: polygons (column 0) filled by their summed weight (column 1)."""
    if isinstance(df, XYPoints):
        raise MapParamError("choropleth needs polygons in column 0, not points")
    vp = viewport(params)
    colors = color_list(params, "color_gradient", [1, 2])
    bound = numbers(params, "color_bound", [2])
    opacity = number(params, "opacity", 1.0, lo=0, hi=1)
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
        rgba = ramp(bound_ratio(vals, bound), colors, opacity)
        fill_polygons(img, vp, geoms, rgba)
    return image_png(img)


def fishnetmap(df: Source, params: dict[str, Any]) -> bytes:
    """Fishnet map: square cells of ``cell_size`` px (``cell_spacing`` gap) coloured
    by the aggregated weight (``aggregation_type`` sum/mean/count/max/min)."""
    vp = viewport(params)
    colors = color_list(params, "color_gradient", [1, 2])
    cell = int(number(params, "cell_size", 4, lo=1, hi=512))
    spacing = int(number(params, "cell_spacing", 1, lo=0, hi=511))
    opacity = number(params, "opacity", 1.0, lo=0, hi=1)
    agg = str(params.get("aggregation_type", "sum"))
    if agg not in ("sum", "mean", "count"):
        raise MapParamError(f"parameter 'aggregation_type' must be sum, mean or count, got {agg!r}")
    if spacing >= cell:
        raise MapParamError("parameter 'cell_spacing' must be smaller than 'cell_size'")
    nweights = 1 if column_count(df) > 1 else 0
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
        rgba = ramp(ratio, colors, opacity)
        src = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:] ** 2], axis=-1)
        src[~lit] = 0
        block = np.zeros((cell, cell), dtype=bool)
        block[: cell - spacing, : cell - spacing] = True
        full = np.kron(src, np.ones((cell, cell, 1)))[: vp.height, : vp.width]
        mask = np.tile(block, (gh, gw))[: vp.height, : vp.width]
        out[mask] = full[mask]
    return encode_png(to_u8(out))


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
        paste_clipped(img, icon, x - iw // 2, y - ih // 2)
    return image_png(img)
