"""Tasks API (spec 003 sections 6-7): runs of a work, in the works envelope."""

from __future__ import annotations

from chalice import Response

from chalicelib import tasks
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import WorksDialect
from chalicelib.idempotency import once_per_key

surface = Surface(__name__, WorksDialect())
blueprint = surface.blueprint


@surface.route("/api/v1/works/{work_id}/tasks", methods=["POST"])
def start(call: Call, work_id: str) -> Response:
    """Start a run now; a retried POST with the same ``Idempotency-Key`` answers the same task."""
    body = call.body(optional=True)
    task = once_per_key(
        call.user,
        call.header("Idempotency-Key"),
        f"start-task#{work_id}",
        body,
        lambda: tasks.start_for_owner(call.user, work_id),
    )
    return WorksDialect.ok(task, status=201)


@surface.route("/api/v1/works/{work_id}/tasks", methods=["GET"])
def work_tasks(call: Call, work_id: str) -> Response:
    """The work's tasks, newest first, paged like works (``X-Total-Count``)."""
    page = tasks.list_tasks(call.user, work_id, call.query)
    return WorksDialect.ok(page.items, headers={"X-Total-Count": str(page.total)})


@surface.route("/api/v1/tasks/{task_id}", methods=["GET"])
def detail(call: Call, task_id: str) -> Response:
    """One task: list fields plus trigger, attempt, retry_of, error, exec_id and job_task_id."""
    return WorksDialect.ok(tasks.present_detail(tasks.owned_task(call.user, task_id)))


@surface.route("/api/v1/tasks/{task_id}/cancel", methods=["POST"])
def cancel(call: Call, task_id: str) -> Response:
    """Cancel a task (idempotent): stops the compute and frees the work."""
    return WorksDialect.ok(tasks.cancel_task(call.user, task_id))


@surface.route("/api/v1/tasks/{task_id}/retry", methods=["POST"])
def retry(call: Call, task_id: str) -> Response:
    """Start a new task linked to a failed, cancelled or timed-out one (409 otherwise)."""
    return WorksDialect.ok(tasks.retry_task(call.user, task_id), status=201)
