"""The Linkis entrance dialect over Jobs: execute/submit, status, progress, log, kill, history, results.

Everything here answers plain dicts (the ``data`` of the Linkis envelope); the HTTP blueprint and
the WebSocket handler wrap them, so both transports share one behaviour.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from chalicelib import jobs
from chalicelib import submit as submit_path
from chalicelib.config import settings
from chalicelib.errors import BadRequest, Forbidden, NotFound
from chalicelib.models import entrance as requests
from chalicelib.models import parse
from chalicelib.models.entrance import DEFAULT_PAGE_SIZE, HISTORY_PAGE_SIZE, MAX_PAGE_SIZE, SUPPORTED_ENGINES
from chalicelib.models.entrance import flag as _flag
from chalicelib.models.entrance import int_arg as _int_arg
from chalicelib.records import JobRecord
from chalicelib.store import logs as log_store
from chalicelib.store import results as result_store
from chalicelib.timeutil import parse_iso
from chalicelib.tokens import Principal

__all__ = ["DEFAULT_PAGE_SIZE", "HISTORY_PAGE_SIZE", "MAX_PAGE_SIZE", "SUPPORTED_ENGINES", "_flag", "_int_arg"]
MAX_LOG_LINES = 10000
#: how many of a user's most recent Jobs ``jobhistory/list`` filters and pages over
HISTORY_WINDOW = 5000
ACTIVE_STATUSES = ("Inited", "WaitForRetry", "Scheduled", "Running")


def entrance_session_id(principal: Principal, engine: str) -> str:
    """The warm session that runs a user's entrance Jobs for one engine type (as Linkis reuses engines)."""
    return f"entrance-{principal.user_id}-{engine}"


def _start(
    principal: Principal,
    engine: str,
    code: Any,
    run_type: Any,
    params: dict[str, Any],
    source: Any,
    connection_id: str | None,
    app: str | None,
) -> dict[str, Any]:
    session_id = entrance_session_id(principal, engine)
    request = jobs.JobRequest(
        owner=principal,
        code=code,
        run_type=run_type,
        kind="entrance",
        session_id=session_id,
        params=params,
        source=source if isinstance(source, dict) else {},
        submitter_connection=connection_id,
        extra={"engine_type": engine, "request_app": app},
    )
    # the driver first: a request that cannot run, or is over the session cap (QuotaExceeded), queues
    # nothing; a warm driver just answers, a cold start opens the Job's log (docs/architecture.md)
    job = submit_path.submit(
        request,
        order=submit_path.DRIVER_FIRST,
        driver_config={"master": settings().spark_master, "app_name": f"sparkgate-{principal.username}"},
    )
    return {"execID": job["exec_id"], "taskID": job["task_id"]}


def execute(principal: Principal, body: dict[str, Any], connection_id: str | None = None) -> dict[str, Any]:
    """``POST /entrance/execute`` (spec 000 body, :class:`~chalicelib.models.entrance.ExecuteRequest`)."""
    request = parse(requests.ExecuteRequest, body, order=requests.EXECUTE_ORDER)
    app = request.requestApplicationName
    return _start(
        principal,
        request.executeApplicationName,
        request.executionCode,
        request.runType,
        request.params or {},
        request.source,
        connection_id,
        app if isinstance(app, str) else None,
    )


def submit(principal: Principal, body: dict[str, Any], connection_id: str | None = None) -> dict[str, Any]:
    """``POST /entrance/submit`` (Linkis 1.x body: executionContent, labels;
    :class:`~chalicelib.models.entrance.SubmitRequest`). ``labels.userCreator`` must name the caller."""
    request = parse(requests.SubmitRequest, body, order=requests.SUBMIT_ORDER)
    creator = request.labels.get("userCreator")
    app = None
    if isinstance(creator, str) and "-" in creator:
        user, app = creator.split("-", 1)
        if user != principal.username:
            raise Forbidden(f"labels.userCreator names user {user!r}, not you")
    return _start(
        principal,
        request.engine,
        request.executionContent.code,
        request.executionContent.runType,
        request.params or {},
        request.source,
        connection_id,
        app,
    )


def status(job: JobRecord) -> dict[str, Any]:
    """``{execID, taskID, status}``."""
    return {"execID": job["exec_id"], "taskID": job["task_id"], "status": job["status"]}


def progress(job: JobRecord) -> dict[str, Any]:
    """``{execID, taskID, progress, progressInfo}``."""
    return {
        "execID": job["exec_id"],
        "taskID": job["task_id"],
        "progress": float(job.get("progress") or 0),
        "progressInfo": job.get("progress_info") or [],
    }


def log_data(job: JobRecord, lines: list[tuple[str, str]], start: int, distinct_level: bool = True) -> dict[str, Any]:
    """The Linkis log shape for ``lines`` read from 0-based line ``start``: ``log = [error, warn, info, all]``
    (one string when ``distinct_level`` is false) and ``fromLine``, Linkis's 1-based number of the next
    line to ask for."""
    all_lines = "\n".join(text for _, text in lines)
    if distinct_level:
        by_level: dict[str, list[str]] = {"ERROR": [], "WARN": [], "INFO": []}
        for level, text in lines:
            by_level.get(level, by_level["INFO"]).append(text)
        log: Any = ["\n".join(by_level["ERROR"]), "\n".join(by_level["WARN"]), "\n".join(by_level["INFO"]), all_lines]
    else:
        log = all_lines
    return {"execID": job["exec_id"], "taskID": job["task_id"], "log": log, "fromLine": start + len(lines) + 1}


def _window(query: requests.LogQuery) -> tuple[int, int]:
    count = query.size
    return max(query.fromLine, 1) - 1, MAX_LOG_LINES if count <= 0 else min(count, MAX_LOG_LINES)


def log_window(from_line: Any = None, size: Any = None) -> tuple[int, int]:
    """Linkis's log cursor as (0-based first line, line count): ``fromLine`` is 1-based and a value below 1
    means the first line; ``size`` <= 0 or absent means all (at most ``MAX_LOG_LINES`` per answer)."""
    return _window(parse(requests.LogQuery, _present(fromLine=from_line, size=size), order=LOG_ORDER))


#: the order the log cursor's parameters were checked in
LOG_ORDER = ("fromLine", "size", "distinctLevel")


def _present(**values: Any) -> dict[str, Any]:
    """The given parameters (None: not given)."""
    return {k: v for k, v in values.items() if v is not None}


def log(job: JobRecord, from_line: Any = None, size: Any = None, distinct_level: Any = None) -> dict[str, Any]:
    """``GET .../log?fromLine=&size=&distinctLevel=``, as Linkis answers it (see :func:`log_window`)."""
    query = parse(
        requests.LogQuery, _present(fromLine=from_line, size=size, distinctLevel=distinct_level), order=LOG_ORDER
    )
    start, count = _window(query)
    lines = log_store.read_log(job["exec_id"], start, count)
    return log_data(job, lines, start, query.distinctLevel)


def kill(job: JobRecord) -> dict[str, Any]:
    """Cancel; answers the status after the request."""
    return status(jobs.request_cancel(job))


def kill_jobs(principal: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """``killJobs {idList, taskIDList}``: one answer per id, in order."""
    request = parse(requests.KillJobsRequest, body, order=requests.KILL_LISTS)
    ids, task_ids = request.idList, request.taskIDList
    targets = [jobs.owned_job(principal, str(i)) for i in ids]
    targets += [
        jobs.owned_job_by_task(principal, t) for t in task_ids if str(t) not in {str(j["task_id"]) for j in targets}
    ]
    return [kill(job) for job in targets]


def _millis(value: str | None) -> int | None:
    return int(parse_iso(value).timestamp() * 1000) if value else None


def linkis_progress(job: JobRecord) -> str:
    """Progress as Linkis's job history stores it: a decimal string, ``"1.0"`` once succeeded."""
    value = float(job.get("progress") or 0)
    return str(1.0 if job.get("status") == "Succeed" else min(max(value, 0.0), 1.0))


def log_path(job: JobRecord) -> str:
    """The opaque path of a Job's log that ``filesystem/openLog`` reads (as Linkis's ``logPath``)."""
    return f"s3://{settings().bucket_name}/logs/{job['owner']}/{job['exec_id']}.log"


def _labels(job: JobRecord) -> list[str]:
    app = job.get("request_app") or "IDE"
    return [
        f"engineType:{job.get('engine_type', 'spark')}",
        f"userCreator:{job.get('username')}-{app}",
        f"codeType:{job.get('run_type')}",
    ]


def _engine_instance(job: JobRecord) -> str | None:
    """The driver that ran the Job (``host:session#generation``; a batch Job's own driver: ``host:exec_id``)."""
    host = job.get("driver_host")
    if not host and job.get("driver_generation") is None:
        return None
    where = job.get("session_id") or job["exec_id"]
    generation = job.get("driver_generation")
    return f"{host or 'driver'}:{where}" + (f"#{generation}" if generation is not None else "")


def history(job: JobRecord) -> dict[str, Any]:
    """``jobhistory/{taskID}/get`` -> ``data.task`` (also each of ``jobhistory/list``'s ``tasks``): Linkis's
    ``QueryTaskVO`` fields."""
    created = _millis(job.get("created_at"))
    started, ended = _millis(job.get("started_at")), _millis(job.get("ended_at"))
    cost = (ended - (started or created or ended)) if ended else None
    return {
        "taskID": job["task_id"],
        "instance": f"sparkgate-{settings().stage}",
        "execId": job["exec_id"],
        "strongerExecId": job["exec_id"],
        "umUser": job.get("username"),
        "engineInstance": _engine_instance(job),
        "status": job["status"],
        "progress": linkis_progress(job),
        "executionCode": job.get("code"),
        "runType": job.get("run_type"),
        "engineType": job.get("engine_type", "spark"),
        "executeApplicationName": job.get("engine_type", "spark"),
        "requestApplicationName": job.get("request_app") or "IDE",
        "paramsJson": json.dumps(job.get("params") or {}, default=str),
        "sourceJson": json.dumps(job.get("source") or {}, default=str),
        "labels": _labels(job),
        "logPath": log_path(job),
        "resultLocation": job.get("result_location"),
        "resultSets": int(job.get("result_sets") or 0),
        "errCode": job.get("error_code"),
        "errDesc": job.get("error"),
        "createdTime": created,
        "updatedTime": _millis(job.get("updated_at")),
        "startTime": started,
        "engineStartTime": started,
        "endTime": ended,
        "costTime": cost,
    }


def history_list(principal: Principal, query: dict[str, str]) -> dict[str, Any]:
    """``GET /jobhistory/list``: the caller's Jobs newest first, as Linkis's ``QueryRestfulApi.list``.

    Filters: ``status`` (comma-separated), ``startDate``/``endDate`` (epoch ms, default 0 and now; equal
    values mean that day), ``executeApplicationName``, ``creator`` (the request application), ``taskID``;
    ``pageNow`` from 1 (default 1), ``pageSize`` (default 20, at most 100). ``totalPage`` is, as in
    Linkis, the number of matching tasks.
    """
    from chalicelib.store import history as history_store

    args = parse(requests.JobHistoryQuery, query, order=requests.HISTORY_ORDER)
    statuses = {s.strip().lower() for s in (args.status or "").split(",") if s.strip()}
    start = args.startDate
    end = args.endDate if args.endDate is not None else int(time.time() * 1000)
    if start == end:
        end += 86_400_000
    app = (args.executeApplicationName or "").strip().lower()
    creator = (args.creator or "").strip()
    task_id, page, size = args.taskID, args.pageNow, args.pageSize
    matching: list[JobRecord] = []
    for job in history_store.recent_user_jobs(principal.user_id, HISTORY_WINDOW):
        created = _millis(job.get("created_at")) or 0
        if statuses and str(job.get("status", "")).lower() not in statuses:
            continue
        if not start <= created <= end:
            continue
        if app and str(job.get("engine_type", "spark")).lower().split("-", 1)[0] != app.split("-", 1)[0]:
            continue
        if creator and (job.get("request_app") or "IDE") != creator:
            continue
        if task_id and int(job["task_id"]) != task_id:
            continue
        matching.append(job)
    chosen = matching[(page - 1) * size : page * size]
    return {"tasks": [history(job) for job in chosen], "totalPage": len(matching)}


def _log_job(principal: Principal, path: Any) -> JobRecord:
    """The caller's Job a ``logPath`` names; another user's or an unknown one alike (not found)."""
    path = parse(requests.PathQuery, _present(path=path)).path
    prefix = f"s3://{settings().bucket_name}/logs/{principal.user_id}/"
    name = path[len(prefix) :] if path.startswith(prefix) else ""
    if not name.endswith(".log") or "/" in name or ".." in name:
        raise NotFound(f"no log at {path[:300]}")
    try:
        return jobs.owned_job(principal, name[: -len(".log")])
    except NotFound as err:
        raise NotFound(f"no log at {path[:300]}") from err


def open_log(principal: Principal, path: Any) -> dict[str, Any]:
    """``filesystem/openLog?path=<logPath>``: the whole log as ``[error, warn, info, all]``."""
    job = _log_job(principal, path)
    lines = log_store.read_log(job["exec_id"], 0, None)
    return {"log": log_data(job, lines, 0)["log"]}


def user_root_path(principal: Principal, path_type: Any) -> dict[str, Any]:
    """``filesystem/getUserRootPath?pathType=``: ``userLocalRootPath`` (the default, the caller's own area),
    ``userHDFSRootPath`` / ``userS3RootPath`` (``hdfs`` / ``s3``: the caller's upload prefix)."""
    from chalicelib import user_files

    kind = parse(requests.RootPathQuery, _present(pathType=path_type)).pathType
    if kind in ("hdfs", "s3"):
        key = "userHDFSRootPath" if kind == "hdfs" else "userS3RootPath"
        return {key: f"s3://{settings().bucket_name}/uploads/{principal.user_id}/"}
    return {"userLocalRootPath": f"file://{user_files.user_area(principal.user_id)}"}


def progress_with_resource(job: JobRecord) -> dict[str, Any]:
    """``entrance/{id}/progressWithResource``: the progress plus Linkis's resource block (sparkgate has no
    YARN queue nor per-user resource accounting: both ``null``)."""
    return {**progress(job), "personalResource": None, "yarnResource": None}


def _active_jobs(principal: Principal) -> list[JobRecord]:
    from chalicelib.store import history as history_store

    recent = history_store.recent_user_jobs(principal.user_id, HISTORY_WINDOW)
    return [j for j in recent if j.get("status") in ACTIVE_STATUSES]


def running_tasks(principal: Principal) -> dict[str, Any]:
    """``entrance/operation/metrics/runningtask``: the caller's unfinished Jobs (Linkis counts the entrance's)."""
    active = _active_jobs(principal)
    return {"runningTaskNumber": len(active), "isCompleted": not active}


def task_info(principal: Principal, query: dict[str, str]) -> dict[str, Any]:
    """``entrance/operation/metrics/taskinfo?user=&creator=&engineTypeLabel=``: the caller's unfinished Jobs,
    running and queued. ``user`` other than the caller counts nothing (other users' Jobs are not shown)."""
    user = (query.get("user") or "").strip()
    if user and user != principal.username:
        return {"taskNumber": 0, "runningNumber": 0, "queuedNumber": 0}
    creator = (query.get("creator") or "").strip()
    engine = (query.get("engineTypeLabel") or "").strip().lower().split("-", 1)[0]
    chosen = [
        j
        for j in _active_jobs(principal)
        if (not creator or (j.get("request_app") or "IDE") == creator)
        and (not engine or str(j.get("engine_type", "spark")).lower() == engine)
    ]
    running = sum(1 for j in chosen if j.get("status") == "Running")
    return {"taskNumber": len(chosen), "runningNumber": running, "queuedNumber": len(chosen) - running}


def _result_job(principal: Principal, path: Any) -> tuple[JobRecord, int | None]:
    """The caller's Job a result path names, and the result-set index it names (None for the folder)."""
    path = parse(requests.PathQuery, _present(path=path)).path
    prefix = f"s3://{settings().bucket_name}/results/"
    if not path.startswith(prefix) or ".." in path or "//" in path[len("s3://") :]:
        raise Forbidden("path is outside your result sets")
    parts = path[len(prefix) :].split("/")
    if len(parts) < 2 or parts[0] != principal.user_id or len(parts) > 3:
        raise Forbidden("path is outside your result sets")
    job = jobs.owned_job(principal, parts[1])
    name = parts[2] if len(parts) > 2 and parts[2] else None
    if name is None:
        return job, None
    match = result_store.RESULT_FILE.fullmatch(name)
    if match is None or int(match.group(1)) >= int(job.get("result_sets") or 0):
        raise NotFound(f"no result file {path}")
    return job, int(match.group(1))


def dir_file_trees(principal: Principal, path: Any) -> dict[str, Any]:
    """``filesystem/getDirFileTrees``: one child per result set, in order (the Job knows how many)."""
    job, _ = _result_job(principal, path)
    base = f"s3://{settings().bucket_name}/"
    root = f"{base}{result_store.result_prefix(job['owner'], job['exec_id'])}"
    names = [result_store.result_file(i) for i in range(int(job.get("result_sets") or 0))]
    children = [{"name": n, "path": root + n, "isLeaf": True, "parentPath": root.rstrip("/")} for n in names]
    return {"dirFileTrees": {"name": job["exec_id"], "path": root.rstrip("/"), "isLeaf": False, "children": children}}


#: Spark type names (``simpleString``) -> the names Linkis's storage layer gives a result set's columns
_LINKIS_TYPES = {
    "bigint": "long",
    "smallint": "short",
    "integer": "int",
    "void": "null",
    "timestamp_ntz": "timestamp",
}
#: how Linkis writes a NULL cell of a table result set
LINKIS_NULL = "NULL"
_JAVA_FLOATS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def linkis_type(spark_type: Any) -> str:
    """A Spark column type as Linkis names it: ``decimal(10,2)`` -> ``decimal``, ``array<int>`` -> ``array``,
    ``bigint`` -> ``long``, ``smallint`` -> ``short``, ``void`` -> ``null``; ``int``, ``double``, ``string``,
    ``boolean``, ``date``, ``timestamp``, ``binary`` and the like unchanged."""
    name = str(spark_type or "string").lower()
    for cut in ("(", "<"):
        name = name.split(cut, 1)[0]
    return _LINKIS_TYPES.get(name.strip(), name.strip())


def linkis_value(value: Any, data_type: str = "string") -> str:
    """A stored cell as Linkis sends it: text. ``NULL`` for null, ``true``/``false``, numbers as their text,
    complex values as JSON, timestamps ``yyyy-MM-dd HH:mm:ss[.f]`` (ISO with a space), NaN/Infinity as Java."""
    if value is None:
        return LINKIS_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _JAVA_FLOATS.get(str(value), str(value))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    if data_type == "timestamp" and "T" in text[:11]:
        return text.replace("T", " ", 1)
    if data_type in ("double", "float"):
        return _JAVA_FLOATS.get(text, text)
    return text


#: Linkis's result set types (``type`` of ``openFile``): TEXT, a Python job's printed output; TABLE
TEXT_RESULT, TABLE_RESULT = "1", "2"


def result_type(document: dict[str, Any]) -> str:
    """A stored result set's Linkis type: ``"1"`` (TEXT) or ``"2"`` (TABLE)."""
    return TEXT_RESULT if document.get("type") == TEXT_RESULT else TABLE_RESULT


def open_file(
    principal: Principal, path: Any, page: Any = None, page_size: Any = None, typed: Any = None
) -> dict[str, Any]:
    """``filesystem/openFile``: a page of one result set with its column metadata, values as Linkis sends
    them (strings, ``NULL``, Linkis type names); ``typed=true`` answers JSON-typed values and Spark's type
    names instead. A TEXT set (``type: "1"``, printed output) answers ``metadata: "NULL"`` and one
    ``[line]`` per row, as Linkis's ``FileSplit`` does."""
    query = parse(
        requests.OpenFileQuery,
        _present(path=path, page=page, pageSize=page_size, typed=typed),
        order=requests.OPEN_FILE_ORDER,
    )
    job, index = _result_job(principal, query.path)
    if index is None:
        raise BadRequest("path must name a result file", field="path")
    native, number, size = query.typed, query.page, query.pageSize
    owner, exec_id = job["owner"], job["exec_id"]
    document = result_store.get_result_set(owner, exec_id, index)
    total = int(document.get("total_rows", len(document.get("rows", []))))
    rows = _rows(owner, exec_id, index, document, (number - 1) * size, size)
    kind = result_type(document)
    metadata: Any = list(document.get("metadata", []))
    if kind == TEXT_RESULT:  # Linkis's TEXT set: metadata "NULL", each line a row of one string
        metadata, rows = LINKIS_NULL, [[str(row[0]) if row else ""] for row in rows]
    elif not native:
        metadata = [{**m, "dataType": linkis_type(m.get("dataType"))} for m in metadata]
        types = [str(m["dataType"]) for m in metadata]
        rows = [[linkis_value(v, types[i] if i < len(types) else "string") for i, v in enumerate(row)] for row in rows]
    return {
        "metadata": metadata,
        "fileContent": rows,
        "type": kind,
        "totalLine": total,
        "page": number,
        "totalPage": max(1, math.ceil(total / size)),
    }


def _rows(owner: str, exec_id: str, index: int, document: dict[str, Any], start: int, count: int) -> list[Any]:
    """Rows ``start .. start+count`` of a result set, reading only the stored pages that hold them."""
    stored = int(document.get("page_rows") or 0) or max(1, len(document.get("rows", [])))
    total = int(document.get("total_rows", len(document.get("rows", []))))
    end = min(start + count, total)
    rows: list[Any] = []
    for number in range(start // stored, (end - 1) // stored + 1) if end > start else ():
        page = document.get("rows", []) if number == 0 else result_store.get_result_page(owner, exec_id, index, number)
        first = number * stored
        rows.extend(page[max(start - first, 0) : end - first])
    return rows
