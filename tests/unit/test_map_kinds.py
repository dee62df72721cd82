"""The one registry of map kinds (``chalicelib.map_kinds``): routes, aliases, point maps, purity."""

from __future__ import annotations

import subprocess
import sys

from chalicelib import map_kinds
from tests.conftest import ROOT


def test_routes_name_the_engine_kinds_arctern_ships() -> None:
    assert {route: kind.kind for route, kind in map_kinds.ROUTES.items()} == {
        "pointmap": "pointmap",
        "heatmap": "heatmap",
        "choropleth": "choropleth",
        "choroplethmap": "choropleth",
        "weighted": "weighted",
        "weighted_pointmap": "weighted",
        "icon_viz": "icon_viz",
        "fishnetmap": "fishnetmap",
    }
    assert list(map_kinds.ROUTES)[:2] == ["pointmap", "heatmap"]  # route (and OpenAPI) order


def test_every_route_is_declared_once() -> None:
    routes = [route for kind in map_kinds.KINDS for route in kind.routes]
    assert len(routes) == len(set(routes)) == len(map_kinds.ROUTES)
    assert len({kind.kind for kind in map_kinds.KINDS}) == len(map_kinds.KINDS)


def test_point_maps_are_binned_from_raw_coordinates() -> None:
    points = {route for route, kind in map_kinds.ROUTES.items() if kind.point_map}
    assert points == {"pointmap", "heatmap", "weighted", "weighted_pointmap", "fishnetmap", "icon_viz"}


def test_lookups() -> None:
    assert map_kinds.by_route("weighted_pointmap") is map_kinds.WEIGHTED
    assert map_kinds.by_route("nomap") is None
    assert map_kinds.by_kind("choropleth") is map_kinds.CHOROPLETH
    assert map_kinds.by_kind("choroplethmap") is None  # an alias is a route, not an engine name


def test_the_registry_imports_neither_pyspark_nor_numpy() -> None:
    code = "import sys, chalicelib.map_kinds; print(sorted(m for m in ('pyspark', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
