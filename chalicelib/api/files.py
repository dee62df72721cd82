"""Each user's own files (``/api/v1/files``, works envelope) over ``chalicelib.files``: presigned URLs."""

from __future__ import annotations

from chalice import Response

from chalicelib import files
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import WorksDialect

surface = Surface(__name__, WorksDialect())
blueprint = surface.blueprint


@surface.route("/api/v1/files", methods=["POST"])
def upload(call: Call) -> Response:
    """A presigned PUT for one file of the caller's (``{path, size, content_type?}``)."""
    return WorksDialect.ok(files.start_upload(call.user, call.body()), status=201)


@surface.route("/api/v1/files", methods=["GET"])
def list_files(call: Call) -> Response:
    """The caller's files (``?prefix=``)."""
    found = files.list_files(call.user, call.query)
    return WorksDialect.ok(found, headers={"X-Total-Count": str(len(found))})


@surface.route("/api/v1/files/download", methods=["GET"])
def download(call: Call) -> Response:
    """A presigned GET of one of the caller's files (``?path=``)."""
    return WorksDialect.ok(files.download(call.user, call.query.get("path")))


@surface.route("/api/v1/files", methods=["DELETE"])
def delete(call: Call) -> Response:
    """Remove one of the caller's files (``?path=``)."""
    return WorksDialect.ok(files.delete(call.user, call.query.get("path")))
