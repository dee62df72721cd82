"""Every registered map kind has a renderer in the engine, and every renderer a registered kind."""

from __future__ import annotations

import pytest

from chalicelib import map_kinds
from chalicelib.engine.geo import render


def test_every_kind_has_a_renderer_and_every_renderer_a_kind() -> None:
    registered = {kind.kind for kind in map_kinds.KINDS}
    assert set(render.RENDERERS) == registered


@pytest.mark.parametrize("route", sorted(map_kinds.ROUTES))
def test_render_map_dispatches_every_route_to_its_kind(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = map_kinds.ROUTES[route].kind
    monkeypatch.setitem(render.RENDERERS, kind, lambda df, params: kind.encode())
    assert render.render_map(route, None, {}) == kind.encode()  # type: ignore[arg-type]


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(render.MapParamError, match="unknown map type 'nomap'"):
        render.render_map("nomap", None, {})  # type: ignore[arg-type]
