"""Arctern-compatible map rendering from a Spark DataFrame to PNG bytes.

The SQL result is positional: column 0 is the geometry (WKB), the next columns are
weights.  Points are projected from ``coordinate_system`` to Web Mercator and mapped
linearly onto the ``width`` x ``height`` pixel grid the way Arctern does it
(``px = int((x - min_x) * width / (max_x - min_x))``, origin bottom-left, then
drawn north up).

The stages, after datashader's:

- :mod:`.params`: the request's params (:class:`MapParamError`, :class:`~.params.Viewport`);
- :mod:`.aggregate`: binning inside Spark (Arrow partials, :class:`XYPoints`), at most
  ``width * height`` cells per partition reach the driver;
- :mod:`.shade`: rasterising on the driver (discs, blur, ramps, polygons, PNG);
- :mod:`.maps`: the map types, one function each.

:data:`RENDERERS` maps every kind of :mod:`chalicelib.map_kinds` to its function;
:func:`render_map` dispatches by route name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from chalicelib import map_kinds
from chalicelib.engine.geo.render.aggregate import Source, XYPoints
from chalicelib.engine.geo.render.maps import choropleth, fishnetmap, heatmap, icon_viz, pointmap, weighted
from chalicelib.engine.geo.render.params import MapParamError

__all__ = [
    "RENDERERS",
    "MapParamError",
    "Renderer",
    "XYPoints",
    "choropleth",
    "fishnetmap",
    "heatmap",
    "icon_viz",
    "pointmap",
    "render_map",
    "weighted",
]

Renderer: TypeAlias = Callable[[Source, dict[str, Any]], bytes]

#: Map kind (``map_kinds.MapKind.kind``) -> its draw function; one entry per registered kind.
RENDERERS: dict[str, Renderer] = {
    map_kinds.POINTMAP.kind: pointmap,
    map_kinds.HEATMAP.kind: heatmap,
    map_kinds.CHOROPLETH.kind: choropleth,
    map_kinds.WEIGHTED.kind: weighted,
    map_kinds.ICON_VIZ.kind: icon_viz,
    map_kinds.FISHNETMAP.kind: fishnetmap,
}


def render_map(kind: str, df: Source, params: dict[str, Any]) -> bytes:
    """Dispatch by route name ('pointmap', 'heatmap', 'choropleth', 'weighted',
    'fishnetmap', 'icon_viz' and their aliases, see :mod:`chalicelib.map_kinds`);
    raises MapParamError for an unknown kind or bad params."""
    spec = map_kinds.by_route(kind)
    fn = RENDERERS.get(spec.kind) if spec is not None else None
    if fn is None:
        raise MapParamError(f"unknown map type {kind!r}")
    return fn(df, params)
