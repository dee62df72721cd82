"""Tasks: the runs of a work (spec 003 section 6)."""

from __future__ import annotations

from typing import Any

from chalicelib.store import tasks as task_store
from chalicelib.tokens import Principal
from chalicelib.works import Page, get_owned_work, paging

TASK_FIELDS = ("task_id", "work_id", "status", "started_at", "ended_at", "run_time")


def present_task(task: dict[str, Any]) -> dict[str, Any]:
    """A task as the spec's list shows it, empty fields as ``null``."""
    out = {field: task.get(field) for field in TASK_FIELDS}
    for field in ("status", "run_time"):
        value = out[field]
        if value is not None:
            out[field] = int(value)
    return out


def list_tasks(principal: Principal, work_id: str, params: dict[str, str]) -> Page:
    """A page of the work's tasks, newest first (deleted works keep their tasks)."""
    get_owned_work(principal, work_id, include_deleted=True)
    limit, offset = paging(params)
    found = task_store.list_work_tasks(work_id)
    start = offset * limit
    return Page([present_task(t) for t in found[start : start + limit]], len(found))
