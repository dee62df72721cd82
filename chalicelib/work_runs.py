"""What a work runs: resolve its artefact, build the batch Job, start it.

A work names its artefact in ``work_directory`` (see docs/tasks.md); it must be its owner's:

- ``s3://<stage bucket>/uploads/<owner's user id>/<key>``: one of the owner's uploads
  (``user_files.upload_key``; other prefixes and buckets are refused);
- a local file in the owner's own area or a work root (``SPARKGATE_WORK_ROOTS``, colon-separated;
  when unset, the shared ``SPARKGATE_DATA_ROOTS``): absolute, or relative to the own area, then to
  each root (``user_files.resolve_local``). ``..``, patterns and anything resolving elsewhere
  (symlinks included) are refused, with the same message as a missing file.

The path is checked when the work is saved (400 naming ``work_directory``) and again at each run.
The file's extension must fit the work's category: ``.sql`` for SPARK_SQL / FLINK_SQL, ``.py`` for
PYSPARK, ``.jar`` (with ``main_class_name``) for SPARK_JAR / FLINK_JAR. Problems found here do not
answer 400: the task is created and fails at once with the reason kept in its ``error``, so a
scheduled run that cannot start is as visible as a manual one.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from chalicelib import jobs, quotas, user_files
from chalicelib.config import settings
from chalicelib.errors import BadRequest, QuotaExceeded
from chalicelib.records import JobExtra, JobFields, JobRecord, TaskRecord, WorkRecord
from chalicelib.store import jobs as job_store
from chalicelib.store import results as result_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal

EXTENSIONS = {"SPARK_SQL": ".sql", "FLINK_SQL": ".sql", "PYSPARK": ".py", "SPARK_JAR": ".jar", "FLINK_JAR": ".jar"}
FLINK_HELP = (
    "no local Flink: install apache-flink (`make install` / `make run` do; see requirements-flink.txt) or set "
    "SPARKGATE_FLINK_HOME to a Flink 2.x installation (the folder holding lib/flink-dist-*.jar), or run the "
    "work on the EMR runner"
)
#: A run's Job opens its log with its driver's start (each SQL or Python run gets a driver of its own).
BATCH_START = (("INFO", jobs.BATCH_DRIVER_LOG),)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*|[0-9]+)\}")


class RunError(Exception):
    """The work cannot run as configured; the message is kept as the task's error."""


@dataclass(frozen=True)
class Artefact:
    """A resolved artefact: a local file path, or an object key in the stage bucket."""

    location: str  # "local" | "s3"
    path: str  # absolute local path, or the S3 key
    uri: str  # what the work named, normalised (file path or s3://bucket/key)
    suffix: str


def work_roots() -> tuple[Path, ...]:
    """The shared folders work artefacts may live in (``SPARKGATE_WORK_ROOTS`` or the data roots)."""
    raw = os.environ.get("SPARKGATE_WORK_ROOTS")
    roots = tuple(p for p in raw.split(":") if p) if raw else settings().data_roots
    return tuple(Path(r).resolve() for r in roots)


def _roots_setting() -> str:
    return "SPARKGATE_WORK_ROOTS" if os.environ.get("SPARKGATE_WORK_ROOTS") else "SPARKGATE_DATA_ROOTS"


def flink_home() -> str | None:
    """The local Flink installation (``SPARKGATE_FLINK_HOME``, else the pip-installed ``pyflink``), or None."""
    from chalicelib.runners.flink import flink_home as local_flink_home

    home = local_flink_home()
    return str(home) if home else None


def _artefact(work_directory: Any, owner_id: str, *, must_exist: bool) -> Artefact:
    """Where ``work_directory`` points for its owner; BadRequest (field ``work_directory``) otherwise."""
    if user_files.is_upload_uri(work_directory):
        key = user_files.upload_key(owner_id, work_directory, what="work_directory")
        uri = f"s3://{settings().bucket_name}/{key}"
        return Artefact("s3", key, uri, PurePosixPath(key).suffix.lower())
    (real,) = user_files.resolve_local(
        owner_id,
        work_directory,
        what="work_directory",
        must_exist=must_exist,
        shared=work_roots(),
        shared_setting=_roots_setting(),
    )
    return Artefact("local", real, real, PurePosixPath(real).suffix.lower())


def check_work_directory(owner_id: str, work_directory: Any) -> None:
    """When a work is saved: ``work_directory`` must be its owner's (the file may come later)."""
    _artefact(work_directory, owner_id, must_exist=False)


def resolve_artefact(work_directory: str | None, owner_id: str) -> Artefact:
    """Where ``work_directory`` points, if it is ``owner_id``'s file; :class:`RunError` otherwise."""
    if not work_directory:
        raise RunError("the work has no work_directory: set it to the .sql, .py or .jar to run")
    try:
        return _artefact(work_directory, owner_id, must_exist=True)
    except BadRequest as err:
        raise RunError(err.message) from None


def _not_found(artefact: Artefact) -> str:
    """A missing upload answers like an upload that is not the owner's (``upload_key``'s message)."""
    prefix = "/".join(artefact.path.split("/", 2)[:2])
    return f"work_directory is not an object in your uploads (s3://{settings().bucket_name}/{prefix}/)"


def run_artefact(run: dict[str, Any]) -> Artefact:
    """The artefact an artefact run (a Job's ``artefact_run``) names."""
    path = str(run["path"])
    return Artefact(str(run.get("location") or "local"), path, str(run["artefact"]), Path(path).suffix)


def open_jar(artefact: Artefact) -> BinaryIO:
    """A jar as an open file: the very local file the work's check resolved, or an unlinked copy of the upload."""
    if artefact.location == "local":
        return open_local(artefact)  # never a link planted after the run was checked
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - the upload's bytes, unlinked; closed by the caller
    copy.write(result_store.get_object(artefact.path))
    copy.seek(0)
    return copy


def open_local(artefact: Artefact) -> BinaryIO:
    """Open a local artefact for reading, only if it is still the very file :func:`resolve_artefact` checked.

    The reader is root (a handler, an artefact supervisor) and the path may be in the owner's own area,
    which the owner's kernels can change at any time: a symlink planted at the path (or at a folder on the
    way) after it was resolved would make root read any file (the state dir, another user's area). So the
    last component is opened without following a link, and the file actually opened must still be a
    regular file at exactly the resolved real path (``/proc/self/fd``); anything else is an ``OSError``.
    """
    fd = os.open(artefact.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.readlink(f"/proc/self/fd/{fd}") != artefact.path:
            raise OSError(errno.ENOENT, "the file changed after it was checked", artefact.uri)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(artefact: Artefact) -> str:
    """The artefact's text (a .sql or .py file)."""
    try:
        if artefact.location == "local":
            with open_local(artefact) as handle:
                raw = handle.read()
        else:
            raw = result_store.get_object(artefact.path)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"cannot read {artefact.uri}: {err}") from err
    except Exception as err:  # S3 errors surface as botocore exceptions; keep the domain boto-free
        if "NoSuchKey" in str(err) or "Not Found" in str(err):
            raise RunError(_not_found(artefact)) from None
        raise RunError(f"cannot read {artefact.uri}: {err}") from err


def sql_variables(extra_params: list[str]) -> dict[str, str]:
    """SQL substitution variables: ``-Dname=value`` gives ``${name}``; other params ``${1}``, ``${2}``..."""
    named: dict[str, str] = {}
    position = 0
    for param in extra_params:
        if param.startswith("-D") and "=" in param:
            name, _, value = param[2:].partition("=")
            named[name.strip()] = value
        else:
            position += 1
            named[str(position)] = param
    return named


def substitute_sql(text: str, extra_params: list[str]) -> str:
    """``text`` with every ``${name}`` replaced; an undefined variable is a :class:`RunError`."""
    variables = sql_variables(extra_params)
    missing = sorted({m.group(1) for m in _VAR.finditer(text) if m.group(1) not in variables})
    if missing:
        raise RunError(f"SQL variables not defined by extra_params: {', '.join(missing)} (pass -Dname=value)")
    return _VAR.sub(lambda m: variables[m.group(1)], text)


def python_code(text: str, artefact: Artefact, extra_params: list[str]) -> str:
    """The script with ``sys.argv`` set to ``[<artefact>, *extra_params]`` first."""
    argv = [artefact.uri, *extra_params]
    return f"import sys as _sg_sys\n_sg_sys.argv = {argv!r}\ndel _sg_sys\n{text}"


def check_java(requested: str | None) -> None:
    """Locally the runner cannot choose a JVM: ``java_version`` must equal the local Java major."""
    if not requested or settings().runner != "local":
        return
    from chalicelib.runners.jar import local_java_major

    local = local_java_major()
    if local is None:
        raise RunError("java_version is set but no local Java was found (install a JDK or unset java_version)")
    if str(local) != str(requested):
        raise RunError(
            f"java_version {requested} was requested but the local runner has Java {local}; "
            f"set java_version to {local} (or leave it empty) to run locally"
        )


def build_request(work: WorkRecord, owner: Principal, task: TaskRecord) -> jobs.JobRequest:
    """The batch :class:`JobRequest` for one run of ``work``; :class:`RunError` when it cannot run.

    The run takes one of its owner's active-Job slots here (so ``jobs.new_job`` does not): at the cap
    the run fails at once with the quota's message, as any run that cannot start does.
    """
    request = _build_request(work, owner, task)
    try:
        quotas.reserve_job(work["user_id"], str(request.exec_id))
    except QuotaExceeded as err:
        raise RunError(err.message) from None
    request.quota = False
    return request


def _build_request(work: WorkRecord, owner: Principal, task: TaskRecord) -> jobs.JobRequest:
    category = work.get("category") or ""
    params = [str(p) for p in (work.get("extra_params") or [])]
    source = {"work_id": work["work_id"], "task_id": task["task_id"], "category": category}
    exec_id = task_exec_id(task["task_id"])
    if category.startswith("FLINK") and settings().runner == "local" and not flink_home():
        raise RunError(FLINK_HELP)
    artefact = resolve_artefact(work.get("work_directory"), work["user_id"])
    expected = EXTENSIONS.get(category)
    if expected is None:
        raise RunError(f"category {category!r} cannot run")
    if artefact.suffix != expected:
        raise RunError(f"a {category} work runs a {expected} file; work_directory names {artefact.uri}")
    extra: JobExtra = {"work_id": work["work_id"], "work_task_id": task["task_id"]}
    if category in ("SPARK_JAR", "FLINK_JAR", "FLINK_SQL"):
        main_class = work.get("main_class_name")
        if category != "FLINK_SQL" and not main_class:
            raise RunError(f"a {category} work needs main_class_name")
        if category == "SPARK_JAR" or category.startswith("FLINK"):
            check_java(work.get("java_version"))
        run = {
            "engine": "flink" if category.startswith("FLINK") else "spark",
            "artefact": artefact.uri,
            "location": artefact.location,
            "path": artefact.path,
            "main_class": main_class,
            "args": params,
            "sql": category == "FLINK_SQL",
            "type": str(work.get("type") or "BATCH").upper(),  # Flink: STREAMING runs until cancelled
        }
        extra["artefact_run"] = run
        code = f"-- {category} {artefact.uri} {main_class or ''} {' '.join(params)}".strip()
        run_type = "jar" if category == "SPARK_JAR" else "flink"
        return jobs.JobRequest(owner, code, run_type, kind="task", source=source, extra=extra, exec_id=exec_id)
    text = read_text(artefact)
    if category == "SPARK_SQL":
        sql = substitute_sql(text, params)
        return jobs.JobRequest(
            owner, sql, "sql", kind="task", source=source, extra=extra, exec_id=exec_id, opening_log=BATCH_START
        )
    code = python_code(text, artefact, params)
    return jobs.JobRequest(
        owner, code, "python", kind="task", source=source, extra=extra, exec_id=exec_id, opening_log=BATCH_START
    )


_TASK_JOBS = uuid.UUID("5f0c7a43-3f1e-4a52-9d3b-7a4f9e2c1b60")


def task_exec_id(task_id: str) -> str:
    """The execID of a task's Job, derived from the task id: whoever finds a task whose start was
    interrupted can find (and stop) a Job made for it even though the task never recorded it."""
    return uuid.uuid5(_TASK_JOBS, task_id).hex


def failed_job(owner: Principal, task: TaskRecord, work: WorkRecord, error: str) -> JobRecord:
    """A Job that records a run which could not start: created, then moved to Failed with ``error``."""
    request = jobs.JobRequest(
        owner,
        f"-- {work.get('category')} {work.get('work_directory') or ''}",
        "sql",
        kind="task",
        source={"work_id": work["work_id"], "task_id": task["task_id"]},
        extra={"work_id": work["work_id"], "work_task_id": task["task_id"]},
        exec_id=task_exec_id(task["task_id"]),
        quota=False,  # born final: it never holds a slot
    )
    job = jobs.new_job(request)
    stamp = now_iso()
    moved = job_store.transition(
        job["exec_id"], jobs.ACTIVE, jobs.FAILED, {"error": error, "error_code": 21304, "ended_at": stamp}
    )
    return moved or job


def cancel_compute(job: JobRecord) -> None:
    """Stop the driver behind ``job`` (batch drivers only; queued jobs never started one)."""
    handle = job.get("runner_handle")
    if not handle:
        return
    from chalicelib.runners import runner

    runner(handle).cancel(handle)


def driver_alive(job: JobRecord) -> bool:
    """Whether the driver process behind ``job`` (its runner handle) is still running."""
    handle = job.get("runner_handle")
    if not handle:
        return False
    from chalicelib.runners import runner

    return runner(handle).probe(handle) == "running"


def stop_driver(job: JobRecord, wait: float) -> None:
    """Make sure no driver of ``job`` outlives it: give it ``wait`` seconds to exit by itself, then kill it.

    Used once a task's Job is final (a cancel); a Job without a runner handle has no driver to stop.
    """
    fresh = None if job.get("runner_handle") else job_store.get_job(job["exec_id"])
    handle = job.get("runner_handle") or (fresh.get("runner_handle") if fresh else None)
    if not handle:
        return
    from chalicelib.runners import runner

    chosen = runner(handle)
    deadline = time.monotonic() + wait
    while chosen.probe(handle) == "running":
        if time.monotonic() >= deadline:
            chosen.cancel(handle)
            return
        time.sleep(0.25)


def reconcile_artefact_run(job: JobRecord) -> JobRecord:
    """Bring an artefact run's Job (SPARK_JAR, FLINK_*) in line with its runner; answers the Job as it is now.

    On EMR nothing inside the step writes to the table, so the step's state is the truth: PENDING
    keeps the Job Scheduled, RUNNING moves it to Running, a final state ends it with the step's
    verdict and failure details. Locally the supervisor records the outcome itself; a supervisor
    that is gone while its Job is still active died, and the Job is Failed. Every move is
    conditional on the Job's status, so a supervisor finishing at the same moment wins cleanly.
    """
    handle = job.get("runner_handle")
    if not job.get("artefact_run") or not handle or job["status"] in jobs.FINAL:
        return job
    from chalicelib.runners import runner

    state = runner(handle).state(handle)
    exec_id = job["exec_id"]
    moved: JobRecord | None = None
    if state.probe == "running":
        if state.started and job["status"] in jobs.QUEUED:
            moved = job_store.transition(exec_id, jobs.QUEUED, jobs.RUNNING, {"started_at": now_iso()})
    elif state.probe in ("finished", "failed"):
        outcome = state.outcome or jobs.FAILED
        if outcome == jobs.FAILED and job.get("cancel_requested"):
            outcome = jobs.CANCELLED
        fields: JobFields = {"ended_at": now_iso()}
        if outcome == jobs.SUCCEED:
            fields["progress"] = 1
        else:
            fields["error"] = state.reason or "the run's supervisor exited without recording an outcome"
            fields["error_code"] = 21304
        moved = job_store.transition(exec_id, jobs.ACTIVE, outcome, fields)
    return moved or job_store.get_job(exec_id) or job
