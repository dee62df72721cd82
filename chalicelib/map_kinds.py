"""The map kinds of the geo surface (spec 004, Arctern-compatible), declared once.

Each :class:`MapKind` names the engine's renderer (``kind``), every HTTP route that draws it (the kind
itself first, then Arctern's shipped aliases) and whether it is drawn from points. The domain
(``chalicelib.geo``), the routes (``chalicelib.api.geo``) and the OpenAPI document read :data:`ROUTES`;
the engine maps ``kind`` to its draw function (``chalicelib.engine.geo.render.RENDERERS``, checked
against :data:`KINDS` by ``tests/engine/test_map_kinds.py``).

Pure data: no pyspark, no numpy, so the domain may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CHOROPLETH",
    "FISHNETMAP",
    "HEATMAP",
    "ICON_VIZ",
    "KINDS",
    "POINTMAP",
    "ROUTES",
    "WEIGHTED",
    "MapKind",
    "by_kind",
    "by_route",
]


@dataclass(frozen=True)
class MapKind:
    """One map type: its engine name, the routes that draw it, and how its SQL is read."""

    #: The engine's name for it (``op["map"]`` of a render Job), also a route.
    kind: str
    #: Drawn from points: a ``SELECT ST_Point(a, b), ...`` is binned from the raw ``a``/``b`` columns.
    point_map: bool
    #: Further routes drawing the same map (Arctern's shipped names).
    aliases: tuple[str, ...] = ()

    @property
    def routes(self) -> tuple[str, ...]:
        """Every route name of this map: the kind, then its aliases."""
        return (self.kind, *self.aliases)


POINTMAP = MapKind("pointmap", point_map=True)
HEATMAP = MapKind("heatmap", point_map=True)
CHOROPLETH = MapKind("choropleth", point_map=False, aliases=("choroplethmap",))
WEIGHTED = MapKind("weighted", point_map=True, aliases=("weighted_pointmap",))
ICON_VIZ = MapKind("icon_viz", point_map=True)
FISHNETMAP = MapKind("fishnetmap", point_map=True)

#: Every map kind, in route order.
KINDS: tuple[MapKind, ...] = (POINTMAP, HEATMAP, CHOROPLETH, WEIGHTED, ICON_VIZ, FISHNETMAP)
#: Route name (``POST /<route>``) -> its map kind.
ROUTES: dict[str, MapKind] = {route: kind for kind in KINDS for route in kind.routes}
_BY_KIND: dict[str, MapKind] = {kind.kind: kind for kind in KINDS}


def by_route(route: str) -> MapKind | None:
    """The map kind a route (the kind's own name or an alias) draws, or None for no map."""
    return ROUTES.get(route)


def by_kind(kind: str) -> MapKind | None:
    """The map kind of an engine name (aliases are not engine names), or None."""
    return _BY_KIND.get(kind)
