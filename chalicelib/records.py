"""The core's records: the Job, the session, the task and the work, as the domain reads and writes them.

Each is a ``TypedDict`` (a plain ``dict`` at run time), so mypy checks field names while the stored and
answered shapes stay what they were. One store module owns each item and is the only code that turns
it into a record and back (``from_item``/``to_item``, adding and dropping the key and index attributes):

- :class:`JobRecord`:     ``chalicelib.store.jobs``     (``JOB#<exec_id>`` / ``JOB``)
- :class:`SessionRecord`: ``chalicelib.store.sessions`` (``SESSION#<session_id>`` / ``SESSION``)
- :class:`TaskRecord`:    ``chalicelib.store.tasks``    (``TASK#<task_id>`` / ``TASK``)
- :class:`WorkRecord`:    ``chalicelib.store.works``    (``WORK#<work_id>`` / ``WORK``)

Pure Python (no boto3, no pyspark): the domain, the runners and the engine's driver all import it.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict


class JobExtra(TypedDict, total=False):
    """What a surface may add to a new Job beyond the fields ``jobs.new_job`` validates and sets.

    Only these keys: a caller's extra can never replace ``run_type``, ``status``, ``owner`` or any
    other field ``new_job`` sets (those win over anything given here).
    """

    #: a work's run (``chalicelib.work_runs``): the work and its task
    work_id: str
    work_task_id: str
    #: a SPARK_JAR / FLINK_* run: what the artefact runner starts (``work_runs._build_request``)
    artefact_run: dict[str, Any]
    #: a geo Job (``chalicelib.geo``): the op, and the scope and named session it runs in
    geo_op: dict[str, Any]
    scope: str | None
    geo_session: str
    #: an entrance Job (``chalicelib.entrance``): the Linkis labels it was submitted with
    engine_type: str
    request_app: str | None


class JobFields(JobExtra, total=False):
    """The fields of a Job a write may set beside its status (``store.jobs.transition``, ``update_job_fields``)."""

    username: str
    kind: str  # entrance | geo | task
    code: str
    run_type: str  # sql | python | geo | jar | flink
    params: dict[str, Any]
    source: dict[str, Any]
    session_id: str | None
    mode: str  # session | batch
    #: a batch Job's driver settings (``JobRequest.session_config``; the keys of ``engine.config``)
    session_config: dict[str, Any] | None
    progress: float
    progress_info: list[dict[str, Any]]
    log_lines: int
    result_sets: int
    result_location: str | None
    result_preview: dict[str, Any] | None
    error_code: int | None
    error: str | None
    runtime_seconds: int
    cancel_requested: bool
    submitter_connection: str | None
    runner_handle: dict[str, Any] | None
    driver_generation: int
    driver_host: str
    created_at: str
    updated_at: str
    started_at: str | None
    ended_at: str | None


class JobRecord(JobFields, total=False):
    """A Job (``chalicelib.jobs``): written by ``jobs.new_job``, moved by ``store.jobs.transition``."""

    exec_id: Required[str]
    task_id: Required[int]
    owner: Required[str]
    status: Required[str]


class SessionFields(TypedDict, total=False):
    """The fields of a driver record a write may set (``store.sessions.update_session_fields``, heartbeats)."""

    owner: str
    kind: str  # session | batch
    state: str  # starting | running | stopping | stopped | dead
    config: dict[str, Any]
    created_at: str
    started_at: str
    started_epoch: float
    heartbeat_at: float | None
    heartbeat_every: float
    runner_handle: dict[str, Any] | None
    warm_start: bool
    current_exec_id: str | None
    stop_requested: bool
    stop_reason: str
    stopped_at: str
    driver_started_at: str
    catalog_replayed: dict[str, Any]
    first_job_at: float  # when the driver's first Job ended: the stream refills the warm pool then


class SessionRecord(SessionFields, total=False):
    """A driver record (``chalicelib.sessions``): a warm session's, or a batch Job's (``batch-<exec_id>``)."""

    session_id: Required[str]
    generation: Required[int]


class TaskFields(TypedDict, total=False):
    """The fields of a task a write may set (``store.tasks.update_task_fields``, ``end_without_job``)."""

    owner: str
    type: str | None
    trigger: str
    attempt: int
    retry_of: str | None
    slot: str | None
    error: str | None
    exec_id: str | None
    job_task_id: int | None
    final_status: int
    created_at: str
    ended_at: str | None
    #: not stored: whether the task still holds its work's ``active_task_id`` (``store.tasks.from_item``)
    active: bool


class TaskRecord(TaskFields, total=False):
    """A run of a work (``chalicelib.tasks``)."""

    task_id: Required[str]
    work_id: Required[str]


class TaskView(TaskRecord, total=False):
    """A task with the fields its Job decides filled in (``chalicelib.tasks``; answered, never stored)."""

    status: int
    started_at: str | None
    run_time: int | None
    progress: float | None


class WorkRecord(TypedDict, total=False):
    """A work (``chalicelib.works``, spec 003): a job definition owned by a user."""

    work_id: Required[str]
    user_id: Required[str]
    lambda_id: str | None
    name: str
    description: str | None
    type: str | None
    category: str | None
    status: int | None
    work_directory: str | None
    main_class_name: str | None
    extra_params: list[Any] | None
    java_version: str | None
    run_frequency: str | None
    created_at: str
    updated_at: str
    deleted_at: str | None
    version: int
    paused: bool | None
    timezone: str | None
    #: owned by the task writers (``store.tasks``): the task holding the work
    active_task_id: str | None
    #: not answered: names the owner of scheduled runs
    owner_username: str
