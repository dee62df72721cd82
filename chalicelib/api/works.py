"""Works API (spec 003): ``/api/v1/works``."""

from __future__ import annotations

from chalice import Response

from chalicelib import works
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import WorksDialect
from chalicelib.idempotency import once_per_key

surface = Surface(__name__, WorksDialect())
blueprint = surface.blueprint


def _page(page: works.Page) -> Response:
    return WorksDialect.ok(page.items, headers={"X-Total-Count": str(page.total)})


@surface.route("/api/v1/works", methods=["POST"])
def create(call: Call) -> Response:
    """Create a work; a retried POST with the same ``Idempotency-Key`` answers the first result."""
    body = call.body()
    work = once_per_key(
        call.user, call.header("Idempotency-Key"), "create-work", body, lambda: works.create_work(call.user, body)
    )
    return WorksDialect.ok(work, status=201, headers={"ETag": f'"{work["version"]}"'})


@surface.route("/api/v1/works", methods=["GET"])
def list_works(call: Call) -> Response:
    """Page through the caller's works, newest first."""
    return _page(works.list_works(call.user, call.query, search=False))


@surface.route("/api/v1/works/search", methods=["GET"])
def search(call: Call) -> Response:
    """Case-insensitive substring search over name and description."""
    return _page(works.list_works(call.user, call.query, search=True))


@surface.route("/api/v1/works/{work_id}", methods=["GET"])
def get(call: Call, work_id: str) -> Response:
    """One work."""
    work = works.present(works.get_owned_work(call.user, work_id))
    return WorksDialect.ok(work, headers={"ETag": f'"{work["version"]}"'})


@surface.route("/api/v1/works/{work_id}", methods=["PATCH"])
def update(call: Call, work_id: str) -> Response:
    """Partial update honouring ``If-Match``."""
    work = works.update_work(call.user, work_id, call.body(), call.header("If-Match"))
    return WorksDialect.ok(work, headers={"ETag": f'"{work["version"]}"'})


@surface.route("/api/v1/works/{work_id}", methods=["DELETE"])
def delete(call: Call, work_id: str) -> Response:
    """Soft delete honouring ``If-Match``."""
    works.delete_work(call.user, work_id, call.header("If-Match"))
    return WorksDialect.ok()
