"""Each user's own files in the stage bucket: ``s3://<bucket>/uploads/<user_id>/<path>``.

Bytes never pass through a handler: an upload is a presigned ``PUT`` (its ``Content-Length`` and
``Content-Type`` are signed, so the object is exactly the size declared, at most
``SPARKGATE_MAX_UPLOAD_BYTES``, default 100 MiB); a download is a presigned ``GET``. The URLs last
``SPARKGATE_UPLOAD_URL_SECONDS`` (default 900). Locally they point at the embedded AWS, which checks
their signature as S3 does.

A ``path`` is relative to the caller's own prefix: 1-8 segments of letters, digits, ``.``, ``_``,
``-`` (no segment ``.``/``..`` or starting with ``.``), at most 512 characters. Nothing a caller sends
can name another prefix, so another user's file answers exactly like a missing one. The ``uri`` of a
file (``s3://<bucket>/uploads/<user_id>/<path>``) is what works (``work_directory``) and ``/loadfile``
take (``user_files.upload_key``).
"""

from __future__ import annotations

import os
import re
from typing import Any

from chalicelib.config import settings
from chalicelib.errors import BadRequest, NotFound
from chalicelib.store import uploads as upload_store
from chalicelib.timeutil import iso
from chalicelib.tokens import Principal

SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
MAX_PATH_CHARS = 512
MAX_SEGMENTS = 8
MAX_LISTED = 1000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")


def max_upload_bytes() -> int:
    """The largest file one upload may store (``SPARKGATE_MAX_UPLOAD_BYTES``)."""
    raw = os.environ.get("SPARKGATE_MAX_UPLOAD_BYTES", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_BYTES


def url_seconds() -> int:
    """How long a presigned URL stays valid (``SPARKGATE_UPLOAD_URL_SECONDS``, 60-43200)."""
    raw = os.environ.get("SPARKGATE_UPLOAD_URL_SECONDS", "").strip()
    return min(max(int(raw), 60), 43200) if raw.isdigit() else 900


def prefix(user_id: str) -> str:
    """The caller's own prefix in the bucket."""
    return f"uploads/{user_id}/"


def clean_path(raw: Any) -> str:
    """``raw`` as a path inside the caller's prefix; BadRequest (field ``path``) for anything else."""
    if not isinstance(raw, str) or not raw:
        raise BadRequest("path is required: a file name such as rollup.sql or data/trips.csv", field="path")
    if len(raw) > MAX_PATH_CHARS:
        raise BadRequest(f"path must be at most {MAX_PATH_CHARS} characters", field="path")
    segments = raw.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise BadRequest(f"path must have at most {MAX_SEGMENTS} segments", field="path")
    for segment in segments:
        if not SEGMENT.match(segment) or segment.strip(".") == "":
            raise BadRequest(
                "path must be relative: segments of letters, digits, '.', '_' and '-' (no '..', no leading "
                "'/' or '.', no empty segment)",
                field="path",
            )
    return raw


def _uri(key: str) -> str:
    return f"s3://{settings().bucket_name}/{key}"


def _view(principal: Principal, key: str, size: int, modified: Any) -> dict[str, Any]:
    return {
        "path": key[len(prefix(principal.user_id)) :],
        "uri": _uri(key),
        "size": size,
        "last_modified": iso(modified) if hasattr(modified, "astimezone") else str(modified),
    }


def _size(raw: Any) -> int:
    limit = max_upload_bytes()
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise BadRequest("size must be the file's size in bytes (a whole number)", field="size")
    if raw > limit:
        raise BadRequest(
            f"size {raw} is over the upload limit of {limit} bytes (SPARKGATE_MAX_UPLOAD_BYTES)", field="size"
        )
    return raw


def start_upload(principal: Principal, body: Any) -> dict[str, Any]:
    """``POST /api/v1/files``: a presigned PUT for ``{path, size, content_type?}`` in the caller's prefix."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    path = clean_path(body.get("path"))
    size = _size(body.get("size"))
    content_type = body.get("content_type") or "application/octet-stream"
    if not isinstance(content_type, str) or not CONTENT_TYPE.match(content_type):
        raise BadRequest("content_type must be a media type such as text/plain", field="content_type")
    key = prefix(principal.user_id) + path
    seconds = url_seconds()
    return {
        "path": path,
        "uri": _uri(key),
        "method": "PUT",
        "url": upload_store.presigned_put(key, size, content_type, seconds),
        "headers": {"Content-Type": content_type, "Content-Length": str(size)},
        "expires_in": seconds,
        "max_bytes": max_upload_bytes(),
    }


def list_files(principal: Principal, params: dict[str, str]) -> list[dict[str, Any]]:
    """The caller's files (optionally under ``prefix``), in path order."""
    under = params.get("prefix") or ""
    if under:
        clean_path(under.rstrip("/"))
    own = prefix(principal.user_id)
    found = upload_store.list_objects(own + under, MAX_LISTED)
    return [_view(principal, o["key"], o["size"], o["last_modified"]) for o in found]


def _existing(principal: Principal, raw: Any) -> tuple[str, dict[str, Any]]:
    path = clean_path(raw)
    key = prefix(principal.user_id) + path
    meta = upload_store.head(key)
    if meta is None:
        raise NotFound(f"no file {path} in your uploads ({_uri(prefix(principal.user_id))})")
    return key, meta


def download(principal: Principal, raw: Any) -> dict[str, Any]:
    """``GET /api/v1/files/download?path=``: a presigned GET of one of the caller's files."""
    key, meta = _existing(principal, raw)
    seconds = url_seconds()
    name = key.rsplit("/", 1)[-1]
    view = _view(principal, key, meta["size"], meta["last_modified"])
    return {**view, "method": "GET", "url": upload_store.presigned_get(key, name, seconds), "expires_in": seconds}


def delete(principal: Principal, raw: Any) -> dict[str, Any]:
    """``DELETE /api/v1/files?path=``: remove one of the caller's files (404 when there is none)."""
    key, _ = _existing(principal, raw)
    upload_store.delete(key)
    return {"path": key[len(prefix(principal.user_id)) :], "deleted": True}
