"""The Linkis entrance dialect over Jobs: execute/submit, status, progress, log, kill, history, results.

Everything here answers plain dicts (the ``data`` of the Linkis envelope); the HTTP blueprint and
the WebSocket handler wrap them, so both transports share one behaviour.
"""

from __future__ import annotations

import math
from typing import Any

from chalicelib import jobs
from chalicelib.config import settings
from chalicelib.errors import BadRequest, Forbidden, NotFound
from chalicelib.store import jobs as job_store
from chalicelib.timeutil import parse_iso
from chalicelib.tokens import Principal

SUPPORTED_ENGINES = ("spark",)
DEFAULT_PAGE_SIZE = 5000
MAX_PAGE_SIZE = 50000
MAX_LOG_LINES = 10000


def entrance_session_id(principal: Principal, engine: str) -> str:
    """The warm session that runs a user's entrance Jobs for one engine type (as Linkis reuses engines)."""
    return f"entrance-{principal.user_id}-{engine}"


def _engine(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise BadRequest("executeApplicationName is required (spark)", field="executeApplicationName")
    engine = name.lower().split("-", 1)[0]
    if engine not in SUPPORTED_ENGINES:
        raise BadRequest(f"engine {name!r} is not supported; use spark", field="executeApplicationName")
    return engine


def _params(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("params must be an object", field="params")
    return value


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
    from chalicelib import sessions

    if isinstance(run_type, str) and run_type.lower() in jobs.INTERNAL_RUN_TYPES:
        raise BadRequest(f"runType {run_type!r} is internal; use one of: sql, python (py, pyspark)", field="runType")
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
    jobs.check_request(request)  # a request that cannot run starts no driver
    # the driver first: at the session cap nothing is queued (QuotaExceeded); a warm driver just answers
    driver = sessions.ensure_session_driver(
        session_id,
        principal.user_id,
        {"master": settings().spark_master, "app_name": f"sparkgate-{principal.username}"},
    )
    request.opening_log = jobs.opening_log(driver)  # a cold start says so in the Job's log
    job = jobs.new_job(request)  # QuotaExceeded at the Job cap
    return {"execID": job["exec_id"], "taskID": job["task_id"]}


def execute(principal: Principal, body: dict[str, Any], connection_id: str | None = None) -> dict[str, Any]:
    """``POST /entrance/execute`` (spec 000 body)."""
    return _start(
        principal,
        _engine(body.get("executeApplicationName")),
        body.get("executionCode"),
        body.get("runType"),
        _params(body.get("params")),
        body.get("source"),
        connection_id,
        body.get("requestApplicationName"),
    )


def submit(principal: Principal, body: dict[str, Any], connection_id: str | None = None) -> dict[str, Any]:
    """``POST /entrance/submit`` (Linkis 1.x body: executionContent, labels)."""
    content = body.get("executionContent")
    if not isinstance(content, dict):
        raise BadRequest("executionContent {code, runType} is required", field="executionContent")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict):
        raise BadRequest("labels must be an object", field="labels")
    creator = labels.get("userCreator")
    app = None
    if isinstance(creator, str) and "-" in creator:
        user, app = creator.split("-", 1)
        if user != principal.username:
            raise Forbidden(f"labels.userCreator names user {user!r}, not you")
    return _start(
        principal,
        _engine(labels.get("engineType", "spark")),
        content.get("code"),
        content.get("runType"),
        _params(body.get("params")),
        body.get("source"),
        connection_id,
        app,
    )


def status(job: dict[str, Any]) -> dict[str, Any]:
    """``{execID, taskID, status}``."""
    return {"execID": job["exec_id"], "taskID": job["task_id"], "status": job["status"]}


def progress(job: dict[str, Any]) -> dict[str, Any]:
    """``{execID, taskID, progress, progressInfo}``."""
    return {
        "execID": job["exec_id"],
        "taskID": job["task_id"],
        "progress": float(job.get("progress") or 0),
        "progressInfo": job.get("progress_info") or [],
    }


def log_data(
    job: dict[str, Any], lines: list[tuple[str, str]], start: int, distinct_level: bool = True
) -> dict[str, Any]:
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


def _int_arg(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise BadRequest(f"{name} must be an integer", field=name) from err
    if not low <= number <= high:
        raise BadRequest(f"{name} must be from {low} to {high}", field=name)
    return number


def log_window(from_line: Any = None, size: Any = None) -> tuple[int, int]:
    """Linkis's log cursor as (0-based first line, line count): ``fromLine`` is 1-based and a value below 1
    means the first line; ``size`` <= 0 or absent means all (at most ``MAX_LOG_LINES`` per answer)."""
    first = _int_arg(from_line, "fromLine", 1, -(10**9), 10**9)
    count = _int_arg(size, "size", MAX_LOG_LINES, -(10**9), 10**9)
    return max(first, 1) - 1, MAX_LOG_LINES if count <= 0 else min(count, MAX_LOG_LINES)


def _flag(value: Any, name: str, default: bool) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise BadRequest(f"{name} must be true or false", field=name)


def log(job: dict[str, Any], from_line: Any = None, size: Any = None, distinct_level: Any = None) -> dict[str, Any]:
    """``GET .../log?fromLine=&size=&distinctLevel=``, as Linkis answers it (see :func:`log_window`)."""
    start, count = log_window(from_line, size)
    lines = job_store.read_log(job["exec_id"], start, count)
    return log_data(job, lines, start, _flag(distinct_level, "distinctLevel", True))


def kill(job: dict[str, Any]) -> dict[str, Any]:
    """Cancel; answers the status after the request."""
    return status(jobs.request_cancel(job))


def kill_jobs(principal: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """``killJobs {idList, taskIDList}``: one answer per id, in order."""
    ids = body.get("idList") or []
    task_ids = body.get("taskIDList") or []
    if not isinstance(ids, list) or not isinstance(task_ids, list):
        raise BadRequest("idList and taskIDList must be lists", field="idList")
    if len(ids) + len(task_ids) > 100:
        raise BadRequest("at most 100 jobs per killJobs call", field="idList")
    targets = [jobs.owned_job(principal, str(i)) for i in ids]
    targets += [
        jobs.owned_job_by_task(principal, t) for t in task_ids if str(t) not in {str(j["task_id"]) for j in targets}
    ]
    return [kill(job) for job in targets]


def _millis(value: str | None) -> int | None:
    return int(parse_iso(value).timestamp() * 1000) if value else None


def history(job: dict[str, Any]) -> dict[str, Any]:
    """``jobhistory/{taskID}/get`` -> ``data.task``."""
    created = _millis(job.get("created_at"))
    started, ended = _millis(job.get("started_at")), _millis(job.get("ended_at"))
    cost = (ended - (started or created or ended)) if ended else None
    return {
        "taskID": job["task_id"],
        "execId": job["exec_id"],
        "umUser": job.get("username"),
        "status": job["status"],
        "progress": float(job.get("progress") or 0),
        "executionCode": job.get("code"),
        "runType": job.get("run_type"),
        "engineType": job.get("engine_type", "spark"),
        "resultLocation": job.get("result_location"),
        "resultSets": int(job.get("result_sets") or 0),
        "errCode": job.get("error_code"),
        "errDesc": job.get("error"),
        "createdTime": created,
        "updatedTime": _millis(job.get("updated_at")),
        "startTime": started,
        "endTime": ended,
        "costTime": cost,
    }


def _result_job(principal: Principal, path: Any) -> tuple[dict[str, Any], int | None]:
    """The caller's Job a result path names, and the result-set index it names (None for the folder)."""
    if not isinstance(path, str) or not path:
        raise BadRequest("path is required", field="path")
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
    match = job_store.RESULT_FILE.fullmatch(name)
    if match is None or int(match.group(1)) >= int(job.get("result_sets") or 0):
        raise NotFound(f"no result file {path}")
    return job, int(match.group(1))


def dir_file_trees(principal: Principal, path: Any) -> dict[str, Any]:
    """``filesystem/getDirFileTrees``: one child per result set, in order (the Job knows how many)."""
    job, _ = _result_job(principal, path)
    base = f"s3://{settings().bucket_name}/"
    root = f"{base}{job_store.result_prefix(job['owner'], job['exec_id'])}"
    names = [job_store.result_file(i) for i in range(int(job.get("result_sets") or 0))]
    children = [{"name": n, "path": root + n, "isLeaf": True, "parentPath": root.rstrip("/")} for n in names]
    return {"dirFileTrees": {"name": job["exec_id"], "path": root.rstrip("/"), "isLeaf": False, "children": children}}


def open_file(principal: Principal, path: Any, page: Any = None, page_size: Any = None) -> dict[str, Any]:
    """``filesystem/openFile``: a page of one result set with its column metadata."""
    job, index = _result_job(principal, path)
    if index is None:
        raise BadRequest("path must name a result file", field="path")
    owner, exec_id = job["owner"], job["exec_id"]
    document = job_store.get_result_set(owner, exec_id, index)
    number = _int_arg(page, "page", 1, 1, 10**9)
    size = _int_arg(page_size, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    total = int(document.get("total_rows", len(document.get("rows", []))))
    return {
        "metadata": document.get("metadata", []),
        "fileContent": _rows(owner, exec_id, index, document, (number - 1) * size, size),
        "type": "2",
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
        page = document.get("rows", []) if number == 0 else job_store.get_result_page(owner, exec_id, index, number)
        first = number * stored
        rows.extend(page[max(start - first, 0) : end - first])
    return rows
