"""Works: job definitions owned by a user (spec 003), validated here, stored by ``store.works``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from chalicelib import work_runs
from chalicelib.errors import BadRequest, NotFound
from chalicelib.models import parse
from chalicelib.models.works import (  # the domain's vocabulary, declared with the request models
    CATEGORIES,
    CATEGORY_ALIASES,
    DEFAULT_LIMIT,
    FREQUENCIES,
    JAVA_VERSIONS,
    MAX_LIMIT,
    REQUIRED_ON_CREATE,
    SERVER_FIELDS,
    STATUS_RANGE,
    TYPES,
    WORKS_QUERY_ORDER,
    LenientPageQuery,
    WorkCreate,
    WorksQuery,
    WorkUpdate,
)
from chalicelib.records import WorkRecord
from chalicelib.store import works as work_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal

__all__ = [
    "CATEGORIES",
    "CATEGORY_ALIASES",
    "DEFAULT_LIMIT",
    "FREQUENCIES",
    "JAVA_VERSIONS",
    "MAX_LIMIT",
    "SERVER_FIELDS",
    "STATUS_RANGE",
    "TYPES",
]

#: Every field of a work as answered, in the spec's order (then sparkgate's additions).
FIELDS = (
    "work_id",
    "lambda_id",
    "user_id",
    "name",
    "description",
    "type",
    "category",
    "status",
    "work_directory",
    "main_class_name",
    "extra_params",
    "java_version",
    "run_frequency",
    "created_at",
    "updated_at",
    "deleted_at",
    "version",
    "paused",
    "timezone",
    "active_task_id",
)
IMMUTABLE = ("type",)


def _validate(body: Any, principal: Principal, *, creating: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = WorkCreate if creating else WorkUpdate
    clean: dict[str, Any] = parse(model, body).model_dump(exclude_unset=True)
    if clean.get("user_id") not in (None, principal.user_id):
        raise BadRequest("user_id must be your own user id (or omitted)", field="user_id")
    clean.pop("user_id", None)
    if clean.get("work_directory") is not None:
        # the artefact must be the owner's (own area, a work root, own uploads); the file may come later
        work_runs.check_work_directory(principal.user_id, clean["work_directory"])
    if creating:
        for field in REQUIRED_ON_CREATE:
            if clean.get(field) is None:
                raise BadRequest(f"{field} is required", field=field)
    else:
        for field in ("name", "type", "category"):
            if field in clean and clean[field] is None:
                raise BadRequest(f"{field} cannot be null", field=field)
    return clean


def present(work: WorkRecord) -> dict[str, Any]:
    """A work as answered: every field present, empty ones as ``null``."""
    out = {field: work.get(field) for field in FIELDS}
    out["version"] = out["version"] or 0
    out["paused"] = bool(out["paused"])
    out["timezone"] = out["timezone"] or "UTC"
    return out


def create_work(principal: Principal, body: Any) -> dict[str, Any]:
    """Create a work owned by ``principal``."""
    clean = _validate(body, principal, creating=True)
    stamp = now_iso()
    work = cast(WorkRecord, {field: None for field in FIELDS if field != "active_task_id"})
    work.update(
        {
            "status": 0,
            "extra_params": [],
            "run_frequency": "once",
            "paused": False,
            "timezone": "UTC",
        }
    )
    work.update(cast(WorkRecord, {k: v for k, v in clean.items() if v is not None}))
    work.update(
        {
            "work_id": uuid.uuid4().hex,
            "user_id": principal.user_id,
            "owner_username": principal.username,  # not answered: names the owner of scheduled runs
            "created_at": stamp,
            "updated_at": stamp,
            "version": 1,
        }
    )
    work_store.insert_work(work, order_key=f"{time.time_ns():020d}#{work['work_id']}")
    return present(work)


def get_owned_work(principal: Principal, work_id: str, *, include_deleted: bool = False) -> WorkRecord:
    """The caller's work; :class:`NotFound` for unknown, deleted or other users' works."""
    work = work_store.get_work(work_id) if len(work_id) <= 64 else None
    if not work or work["user_id"] != principal.user_id or (work.get("deleted_at") and not include_deleted):
        raise NotFound(f"work {work_id} not found")
    return work


def _expected_version(work: WorkRecord, if_match: str | None) -> int:
    current = work["version"]
    if if_match is None:
        return current
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²" is a digit to str.isdigit, not to int
        raise BadRequest("If-Match must be the work's version number", field="If-Match")
    return int(raw)


def update_work(principal: Principal, work_id: str, body: Any, if_match: str | None) -> dict[str, Any]:
    """Apply a partial update; 409 when ``If-Match`` is stale or another writer won."""
    work = get_owned_work(principal, work_id)
    clean = _validate(body, principal, creating=False)
    stored: Mapping[str, Any] = work
    for field in IMMUTABLE:
        if field in clean and clean[field] != stored[field]:
            raise BadRequest(f"{field} cannot be changed after creation", field=field)
    expected = _expected_version(work, if_match)
    old_name = work["name"]
    work.update(cast(WorkRecord, clean))
    if work.get("extra_params") is None:
        work["extra_params"] = []
    work["version"] = expected + 1
    work["updated_at"] = now_iso()
    work["owner_username"] = principal.username
    work_store.replace_work(work, expected, old_name)
    return present(work)


def delete_work(principal: Principal, work_id: str, if_match: str | None) -> None:
    """Soft delete: ``deleted_at`` set, hidden from list and search, tasks kept, name freed."""
    work = get_owned_work(principal, work_id)
    expected = _expected_version(work, if_match)
    stamp = now_iso()
    work.update({"deleted_at": stamp, "updated_at": stamp, "version": expected + 1})
    work_store.replace_work(work, expected, work["name"], release_name=True, forbid_active=True)


@dataclass(frozen=True)
class Page:
    """A page of works and the total count before paging."""

    items: list[dict[str, Any]]
    total: int


def paging(params: dict[str, str]) -> tuple[int, int]:
    """``limit`` (1..100, default 10) and ``offset`` (a page number from 0) from query parameters."""
    page = parse(LenientPageQuery, params, order=("limit", "offset"))
    return page.limit, page.offset


def list_works(principal: Principal, params: dict[str, str], *, search: bool) -> Page:
    """List (exact filters) or search (case-insensitive substrings of name/description).

    ``offset`` counts pages, as the spec's 页数 says: page ``offset`` holds rows
    ``offset*limit .. offset*limit+limit-1``. Order is newest first.
    """
    query = parse(WorksQuery, params, order=WORKS_QUERY_ORDER)
    limit, offset = query.limit, query.offset
    if query.user_id not in (None, principal.user_id):
        return Page([], 0)
    status, freq = query.status, query.run_frequency
    name, desc, q = query.name, query.description, query.q

    def matches(work: WorkRecord) -> bool:
        if work.get("deleted_at"):
            return False
        if status is not None and work.get("status") != status:
            return False
        if freq is not None and work.get("run_frequency") != freq:
            return False
        wname, wdesc = work.get("name") or "", work.get("description") or ""
        if search:
            if name and name.lower() not in wname.lower():
                return False
            if desc and desc.lower() not in wdesc.lower():
                return False
            return not q or q.lower() in wname.lower() or q.lower() in wdesc.lower()
        return (name is None or wname == name) and (desc is None or wdesc == desc) and q is None

    found = [w for w in work_store.list_user_works(principal.user_id) if matches(w)]
    start = offset * limit
    return Page([present(w) for w in found[start : start + limit]], len(found))
