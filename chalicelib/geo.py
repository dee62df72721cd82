"""The geo domain (spec 004, Arctern-compatible): scopes, sessions, the table catalog, geo Jobs.

Every call that touches Spark becomes a Job of kind ``geo`` and run type ``geo`` queued for the
scope's session driver (one warm driver per scope session); the handler only validates, queues
and waits. The wait is bounded by ``SPARKGATE_SYNC_WAIT_SECONDS`` (default 25, below API Gateway's
29 s): a Job that has not finished by then is answered as pending, with its ``execID``/``taskID``,
so the client follows it through the entrance routes or the WebSocket.

No boto3 and no pyspark here: persistence goes through ``chalicelib.store``.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from chalicelib import jobs, map_kinds, quotas, submit, user_files
from chalicelib.config import settings
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.models import geo as requests
from chalicelib.models import parse
from chalicelib.models.geo import DEFAULT_MASTER, DEFAULT_SESSION, FORMATS, TABLE_RE, schema_ddl
from chalicelib.records import JobRecord, SessionRecord
from chalicelib.store import geo as geo_store
from chalicelib.store import jobs as job_store
from chalicelib.store import results as result_store
from chalicelib.store import sessions as session_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal

DEFAULT_SYNC_WAIT_SECONDS = 25.0
MAX_SYNC_WAIT_SECONDS = 28.0
MAX_ICON_BYTES = 5 * 1024 * 1024


@dataclass
class Outcome:
    """What a geo call answers: the finished result, or the ids of a Job still running."""

    result: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None


# ---- validation (the checks are the request models', chalicelib.models.geo) --------------------------

__all__ = ["DEFAULT_MASTER", "DEFAULT_SESSION", "FORMATS", "schema_ddl"]
_Body = TypeVar("_Body", bound=requests.GeoModel)


def _body(model: type[_Body], principal: Principal, body: dict[str, Any]) -> _Body:
    """``body`` validated as ``model`` (paths checked for ``principal``)."""
    order = getattr(model, "ORDER", None)
    return parse(model, body, order=order, context={"principal": principal})


def loadfile_paths(principal: Principal, raw: Any) -> list[str]:
    """What Spark reads for a /loadfile ``path``: an upload as ``s3a://``, or the explicit local files.

    ``s3://<stage bucket>/uploads/<your user id>/...`` (``user_files.upload_key``), or a local file or
    folder in your own area or a shared root (``user_files.resolve_local``: symlinks followed, patterns
    expanded here and every match checked). Anything else, missing or not yours, is one refusal.
    """
    if user_files.is_upload_uri(raw):
        return [f"s3a://{settings().bucket_name}/{user_files.upload_key(principal.user_id, raw, what='path')}"]
    return user_files.resolve_local(principal.user_id, raw, what="path", kind="file_or_folder", patterns=True)


def sync_wait_seconds() -> float:
    """How long a handler waits for its Job (env ``SPARKGATE_SYNC_WAIT_SECONDS``, default 25, max 28)."""
    raw = os.environ.get("SPARKGATE_SYNC_WAIT_SECONDS", "")
    try:
        value = float(raw) if raw else DEFAULT_SYNC_WAIT_SECONDS
    except ValueError:
        value = DEFAULT_SYNC_WAIT_SECONDS
    return max(0.0, min(value, MAX_SYNC_WAIT_SECONDS))


# ---- scopes and sessions ------------------------------------------------------------------------


def session_config(body: requests.SessionRequest) -> dict[str, Any]:
    """The SparkSession config of a checked /session body: master, app name, Spark configs, environment."""
    return {
        "master": body.master_addr,
        "app_name": body.app_name or f"sparkgate-geo-{uuid.uuid4().hex[:8]}",
        "configs": body.configs,
        "envs": body.envs,
    }


def _new_session_record(scope: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "session": name,
        "session_id": f"geo-{uuid.uuid4().hex}",
        "config": config,
        "created_at": now_iso(),
        "scope": scope,
    }


def create_scope(principal: Principal, body: dict[str, Any]) -> str:
    """Create a scope (a uuid hex name when none is given) with its default session ``spark``."""
    name = _body(requests.ScopeRequest, principal, body).scope or uuid.uuid4().hex
    if not geo_store.create_scope(principal.user_id, name, now_iso()):
        raise Conflict(f"scope {name} already exists", field="scope")
    config = {
        "master": settings().spark_master or DEFAULT_MASTER,
        "app_name": f"sparkgate-geo-{name}",
        "configs": {},
        "envs": {},
    }
    geo_store.create_session(principal.user_id, name, _new_session_record(name, DEFAULT_SESSION, config))
    return name


def _scope(principal: Principal, name: Any) -> str:
    scope = requests.name(name, "scope")
    if geo_store.get_scope(principal.user_id, scope) is None:
        raise NotFound("scope not found", field="scope")
    return scope


def _session(principal: Principal, scope: str, name: Any) -> dict[str, Any]:
    session = requests.name(name, "session", default=DEFAULT_SESSION)
    record = geo_store.get_session(principal.user_id, scope, session)
    if record is None:
        raise NotFound(f"session {session} not found in scope {scope}", field="session")
    return record


def delete_scope(principal: Principal, name: str) -> None:
    """Stop the scope's drivers and remove its scope, sessions and catalog."""
    scope = _scope(principal, name)
    from chalicelib import sessions

    for record in geo_store.list_sessions(principal.user_id, scope):
        sessions.stop_session(record["session_id"])
    geo_store.delete_scope(principal.user_id, scope)


def create_session(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Add a named SparkSession to a scope; its driver starts now with the given settings."""
    request = _body(requests.SessionRequest, principal, body)
    scope = _scope(principal, request.scope)
    name = request.session
    config = session_config(request)
    record = _new_session_record(scope, name, config)
    quotas.reserve_session(principal.user_id, record["session_id"])  # before the record: 429 leaves nothing
    if not geo_store.create_session(principal.user_id, scope, record):
        quotas.release_session(principal.user_id, record["session_id"])
        raise Conflict(f"session {name} already exists in scope {scope}", field="session")
    _ensure_driver(principal, scope, record)
    return {"scope": scope, "session": name, "app_name": config["app_name"], "master": config["master"]}


# ---- geo Jobs -----------------------------------------------------------------------------------


def _driver_config(principal: Principal, scope: str, record: dict[str, Any]) -> dict[str, Any]:
    """The session's driver settings; a new driver loads the session's catalog itself (``geo_catalog``)
    before it takes a Job."""
    ref = {"user_id": principal.user_id, "scope": scope, "session": record["session"]}
    return {**record["config"], "geo_catalog": ref}


def _ensure_driver(principal: Principal, scope: str, record: dict[str, Any]) -> SessionRecord:
    """Start the session's driver unless it runs (answers the driver record)."""
    from chalicelib import sessions

    return sessions.ensure_session_driver(
        record["session_id"], principal.user_id, _driver_config(principal, scope, record)
    )


def _queue(principal: Principal, scope: str, record: dict[str, Any], op: dict[str, Any], code: str) -> JobRecord:
    """Queue ``op`` for the scope session's driver, starting the driver first (``submit.DRIVER_FIRST``: the
    catalog's session is there, a cold start opens the Job's log, the session cap queues nothing)."""
    request = jobs.JobRequest(
        owner=principal,
        code=code or op["op"],
        run_type="geo",
        kind="geo",
        session_id=record["session_id"],
        extra={"geo_op": op, "scope": record.get("scope"), "geo_session": record["session"]},
    )
    return submit.submit(request, order=submit.DRIVER_FIRST, driver_config=_driver_config(principal, scope, record))


def job_result(job: JobRecord) -> dict[str, Any]:
    """The geo result document of a finished Job: its one result set's JSON cell (preview or S3), PNG inlined."""
    preview = job.get("result_preview") or {}
    rows = preview.get("rows") if isinstance(preview, dict) else None
    if rows and not preview.get("truncated"):
        text = rows[0][0]
    elif int(job.get("result_sets") or 0) > 0:
        text = result_store.get_result_set(job["owner"], job["exec_id"], 0)["rows"][0][0]
    else:
        return {}
    loaded: dict[str, Any] = json.loads(text)
    if loaded.get("png_key"):
        loaded["png"] = base64.b64encode(result_store.get_object(str(loaded.pop("png_key")))).decode()
    return loaded


def pending_message(pending: dict[str, Any]) -> str:
    """The 202's message: why the answer is not there yet and how to follow the Job."""
    if pending.get("driver") == "starting":
        return (
            "starting a Spark driver for this session (this usually takes 10-30 s); the job is queued: "
            "follow it by execID or call again"
        )
    return "still running; follow the job by execID"


def _wait(job: JobRecord) -> Outcome:
    deadline = time.monotonic() + sync_wait_seconds()
    delay = 0.05
    current = job
    while True:
        if current["status"] in jobs.FINAL:
            break
        if time.monotonic() >= deadline:
            pending = {"execID": job["exec_id"], "taskID": job["task_id"], "jobStatus": current["status"]}
            session_id = job.get("session_id")
            driver = session_store.get_session(session_id) if session_id else None
            if current["status"] in jobs.QUEUED and jobs.driver_starting(driver):
                pending["driver"] = "starting"  # the 202 says why nothing ran yet
            return Outcome(pending=pending)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
        current = job_store.get_job(job["exec_id"]) or current
    if current["status"] != jobs.SUCCEED:
        message = current.get("error") or f"job {current['status'].lower()}"
        raise BadRequest(str(message))
    return Outcome(result=job_result(current))


def run(principal: Principal, scope_name: Any, session_name: Any, op: dict[str, Any], code: str) -> Outcome:
    """Queue ``op`` in the scope session's driver (starting it if needed) and wait for the answer."""
    scope = _scope(principal, scope_name)
    record = _session(principal, scope, session_name)
    return _wait(_queue(principal, scope, record, op, code))


def command(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/command``: Python in the scope's namespace, run by its default session's driver. Without a
    ``command`` (absent, null, empty or blank) it is a successful no-op, as in Arctern: nothing is queued
    and no driver starts, but the scope must be the caller's."""
    request = _body(requests.CommandRequest, principal, body)
    code = request.command
    if code is None:
        _session(principal, _scope(principal, request.scope), request.session)
        return Outcome(result={"output": "", "result": None})
    scope = _scope(principal, request.scope)
    return run(principal, scope, request.session, {"op": "command", "code": code, "scope": scope}, code)


def loadfile_tables(request: requests.LoadfileRequest) -> list[dict[str, Any]]:
    """The /loadfile table definitions of a checked body (paths resolved, schema as DDL)."""
    out = []
    for table in request.tables:
        definition: dict[str, Any] = {"kind": "file", "name": table.name, "format": table.format}
        # one file: ``path``; a pattern with several matches: ``paths`` (the engine reads the list)
        definition.update({"path": table.path[0]} if len(table.path) == 1 else {"paths": table.path})
        definition["options"] = table.options
        definition["schema"] = table.schema_
        out.append(definition)
    return out


def createtable_tables(request: requests.CreatetableRequest) -> list[dict[str, Any]]:
    """The /createtable definitions of a checked body."""
    return [{"kind": "sql", "name": t.name, "sql": t.sql} for t in request.tables]


def define_tables(
    principal: Principal, request: requests.TablesRequest, definitions: list[dict[str, Any]], op: str
) -> Outcome:
    """Run /loadfile or /createtable and record each definition in the catalog once it succeeded."""
    scope = _scope(principal, request.scope)
    record = _session(principal, scope, request.session)
    job = _queue(
        principal,
        scope,
        record,
        {"op": op, "tables": definitions},
        f"{op} " + ", ".join(d["name"] for d in definitions),
    )
    outcome = _wait(job)
    if outcome.result is not None:
        for definition in definitions:
            geo_store.append_catalog(principal.user_id, scope, record["session"], definition)
    return outcome


def loadfile(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/loadfile``."""
    request = _body(requests.LoadfileRequest, principal, body)
    return define_tables(principal, request, loadfile_tables(request), "loadfile")


def createtable(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/createtable``."""
    request = _body(requests.CreatetableRequest, principal, body)
    return define_tables(principal, request, createtable_tables(request), "createtable")


def table_info(principal: Principal, scope: Any, session: Any, table: Any) -> Outcome:
    """``/table/<scope>/<session>/<table>``: schema and row count."""
    given = {k: v for k, v in {"scope": scope, "session": session, "table": table}.items() if v is not None}
    request = _body(requests.TableQuery, principal, given)
    name = request.table
    return run(principal, request.scope, request.session, {"op": "table_info", "table": name}, f"describe {name}")


def arctern_schema(schema: Any) -> list[dict[str, Any]]:
    """``[{"col": "type"}]`` as Arctern's shipped ``/table/schema`` answers it (Spark's ``DESCRIBE`` rows):
    ``[{"col_name", "data_type", "comment"}]``."""
    out: list[dict[str, Any]] = []
    for entry in schema if isinstance(schema, list) else []:
        if isinstance(entry, dict):
            out.extend({"col_name": str(k), "data_type": str(v), "comment": None} for k, v in entry.items())
    return out


_PATTERN_CHARS = frozenset("*?[]{}\\")


def output_path(principal: Principal, raw: Any, what: str = "path") -> str:
    """Where /savefile may write: a new or existing file or folder inside the caller's own area (a
    relative path is taken inside it), or an object under their uploads (``s3://<bucket>/uploads/<id>/...``,
    written as ``s3a://``). Refused alike: ``..``, patterns, other schemes, the area itself, anything
    whose real path (symlinks followed) leaves the area, a symlink as the target, the shared roots."""
    text = user_files.check_text(raw, what)
    if any(c in _PATTERN_CHARS for c in text):
        raise BadRequest(f"{what} must not be a pattern (* ? [ ] {{ }} \\)", field=what)
    if user_files.is_upload_uri(text):
        return f"s3a://{settings().bucket_name}/{user_files.upload_key(principal.user_id, text, what=what)}"
    area = user_files.user_area(principal.user_id)
    refusal = BadRequest(f"{what} must be a path inside your own area ({area}) or your uploads", field=what)
    if "://" in text or text.startswith("file:"):
        raise refusal
    os.makedirs(area, mode=0o700, exist_ok=True)
    real_area = os.path.realpath(area)
    candidate = os.path.normpath(text if os.path.isabs(text) else os.path.join(area, text))
    for base in (str(area), real_area):  # the area as named, or its real path (where it is a link)
        if candidate == base or candidate.startswith(base.rstrip("/") + "/"):
            rest = candidate[len(base.rstrip("/")) + 1 :]
            break
    else:
        raise refusal
    if not rest or os.path.islink(os.path.join(real_area, rest)):
        raise refusal
    parts = rest.split("/")
    here = real_area
    for i, part in enumerate(parts[:-1]):  # the nearest existing folder's real path must stay inside
        step = os.path.join(here, part)
        if not os.path.lexists(step):
            here = os.path.join(here, *parts[i:-1])
            break
        here = os.path.realpath(step)
        if not (here == real_area or here.startswith(real_area + "/")) or not os.path.isdir(here):
            raise refusal
    target = os.path.join(here, parts[-1])
    if os.path.realpath(target) == real_area or not os.path.realpath(target).startswith(real_area + "/"):
        raise refusal
    return target


def savefile_tables(request: requests.SavefileRequest) -> list[dict[str, Any]]:
    """The /savefile outputs of a checked body: ``{sql | table, format, path, options, mode}`` each."""
    out = []
    for table in request.tables:
        source: dict[str, Any] = {"sql": table.sql} if table.sql is not None else {"table": table.table}
        out.append({**source, "format": table.format, "path": table.path, "options": table.options, "mode": table.mode})
    return out


def savefile(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/savefile``: write tables or query results to the caller's own area; the engine writes them."""
    request = _body(requests.SavefileRequest, principal, body)
    outputs = savefile_tables(request)
    area = str(user_files.user_area(principal.user_id))
    op = {"op": "savefile", "tables": outputs, "area": os.path.realpath(area)}
    code = "savefile " + ", ".join(o["path"] for o in outputs)
    return run(principal, request.scope, request.session, op, code)


def query(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/query``: rows of a SELECT, or the effect of DDL."""
    request = _body(requests.QueryRequest, principal, body)
    sql = request.sql
    outcome = run(principal, request.scope, request.session, {"op": "query", "sql": sql}, sql)
    created = _created_view((outcome.result or {}).get("created_table"))
    if created is not None:
        geo_store.append_catalog(principal.user_id, request.scope, request.session, created)
    return outcome


def _created_view(created: Any) -> dict[str, Any] | None:
    """The CTAS view a /query answer reports, if it is one: the engine's answer is not trusted to
    add anything else to the catalog (a file definition there would skip the path checks)."""
    if not isinstance(created, dict) or created.get("kind") != "sql":
        return None
    name, sql = created.get("name"), created.get("sql")
    if not isinstance(name, str) or not TABLE_RE.match(name) or not isinstance(sql, str) or not sql.strip():
        return None
    return {"kind": "sql", "name": name, "sql": sql}


def render_params(principal: Principal, params: Any) -> dict[str, Any]:
    """Structural checks of map ``params`` (the renderer checks the rest and answers ValueError text).

    ``icon_path`` must be a regular file of at most ``MAX_ICON_BYTES`` in the caller's own area or a
    shared root (``user_files.resolve_local``); it is handed on as its real path.
    """
    if not isinstance(params, dict):
        raise BadRequest("params must be an object", field="params")
    for key in ("width", "height"):
        value = params.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8192:
            raise BadRequest(f"params.{key} must be an integer from 1 to 8192", field="params")
    box = params.get("bounding_box")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    ):
        raise BadRequest("params.bounding_box must be [min_x, min_y, max_x, max_y]", field="params")
    if not (box[0] < box[2] and box[1] < box[3]):
        raise BadRequest("params.bounding_box must have min < max", field="params")
    if "icon_path" in params:
        (icon,) = user_files.resolve_local(
            principal.user_id, params["icon_path"], what="params.icon_path", max_bytes=MAX_ICON_BYTES
        )
        return {**params, "icon_path": icon}
    checked: dict[str, Any] = params
    return checked


def render(principal: Principal, route: str, body: dict[str, Any]) -> Outcome:
    """``/pointmap`` and the other maps (``map_kinds.ROUTES``): base64 PNG of ``sql``'s rows drawn with
    ``params``; the engine draws the route's ``map_kinds.MapKind.kind``."""
    spec = map_kinds.by_route(route)
    if spec is None:
        raise NotFound(f"unknown map {route}")
    request = _body(requests.MapRequest, principal, body)
    return run(
        principal,
        request.scope,
        request.session,
        {"op": "render", "map": spec.kind, "sql": request.sql, "params": request.params},
        request.sql,
    )
