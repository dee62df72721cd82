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
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from chalicelib import jobs, masters, quotas, user_files
from chalicelib.config import settings
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.store import geo as geo_store
from chalicelib.store import jobs as job_store
from chalicelib.timeutil import now_iso
from chalicelib.tokens import Principal

DEFAULT_SESSION = "spark"
DEFAULT_MASTER = "local[*]"
DEFAULT_SYNC_WAIT_SECONDS = 25.0
MAX_SYNC_WAIT_SECONDS = 28.0
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
FORMATS = ("csv", "json", "parquet")
MASTER_RE = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|yarn|spark://[A-Za-z0-9_.:,\-]+|k8s://[A-Za-z0-9_.:/\-]+)$")
#: Column types accepted in a /loadfile schema (Spark SQL DDL names; aliases mapped).
SCHEMA_TYPES = {
    "string": "string",
    "str": "string",
    "varchar": "string",
    "text": "string",
    "double": "double",
    "float64": "double",
    "float": "float",
    "float32": "float",
    "int": "int",
    "integer": "int",
    "int32": "int",
    "bigint": "bigint",
    "long": "bigint",
    "int64": "bigint",
    "smallint": "smallint",
    "short": "smallint",
    "int16": "smallint",
    "tinyint": "tinyint",
    "byte": "tinyint",
    "int8": "tinyint",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "binary": "binary",
}
DECIMAL_RE = re.compile(r"^decimal\(\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)$")
#: Map routes -> the render function the engine calls (Arctern's shipped names included).
MAPS = {
    "pointmap": "pointmap",
    "heatmap": "heatmap",
    "choropleth": "choropleth",
    "choroplethmap": "choropleth",
    "weighted": "weighted",
    "weighted_pointmap": "weighted",
    "icon_viz": "icon_viz",
    "fishnetmap": "fishnetmap",
}
MAX_TABLES = 50
MAX_SQL_BYTES = 64 * 1024
MAX_COMMAND_BYTES = 128 * 1024
MAX_ICON_BYTES = 5 * 1024 * 1024


@dataclass
class Outcome:
    """What a geo call answers: the finished result, or the ids of a Job still running."""

    result: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None


# ---- validation ---------------------------------------------------------------------------------


def _name(value: Any, field: str, *, default: str | None = None) -> str:
    if value is None or value == "":
        if default is not None:
            return default
        raise BadRequest(f"{field} is required", field=field)
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise BadRequest(f"{field} must be 1-64 letters, digits, '_', '.' or '-'", field=field)
    return value


def _table_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not TABLE_RE.match(value):
        raise BadRequest(f"table {field} must be an SQL identifier (letters, digits, '_')", field=field)
    return value


def _sql(value: Any, field: str = "sql") -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field} must be a non-empty SQL string", field=field)
    if len(value.encode()) > MAX_SQL_BYTES:
        raise BadRequest(f"{field} exceeds {MAX_SQL_BYTES} bytes", field=field)
    return value


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object", field=field)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise BadRequest(f"{field}.{key} must be a string, number or boolean", field=field)
        out[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def schema_ddl(schema: Any) -> str | None:
    """A Spark DDL string from a spec schema ``[{"col": "type"}, ...]`` (None when absent)."""
    if schema is None:
        return None
    if not isinstance(schema, list) or not schema:
        raise BadRequest("schema must be a non-empty list of {column: type}", field="schema")
    columns: list[str] = []
    for entry in schema:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise BadRequest("each schema entry must be one {column: type}", field="schema")
        ((col, kind),) = entry.items()
        if not isinstance(col, str) or not col or "`" in col or len(col) > 128:
            raise BadRequest(f"invalid column name {col!r}", field="schema")
        if not isinstance(kind, str):
            raise BadRequest(f"type of column {col!r} must be a string", field="schema")
        lowered = kind.strip().lower()
        spark_type = SCHEMA_TYPES.get(lowered)
        if spark_type is None and DECIMAL_RE.match(lowered):
            spark_type = lowered.replace(" ", "")
        if spark_type is None:
            allowed = ", ".join(sorted(set(SCHEMA_TYPES.values()))) + ", decimal(p,s)"
            raise BadRequest(f"unsupported type {kind!r} for column {col!r}; use one of {allowed}", field="schema")
        columns.append(f"`{col}` {spark_type}")
    return ", ".join(columns)


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


def session_config(body: dict[str, Any]) -> dict[str, Any]:
    """The SparkSession config of a /session body: master, app name, Spark configs, environment."""
    master = body.get("master-addr", body.get("master_addr")) or DEFAULT_MASTER
    if not isinstance(master, str) or not MASTER_RE.match(master) or not masters.allowed(master):
        raise BadRequest(
            f"master-addr must be one of the allowed masters ({', '.join(masters.allowlist())}); "
            "an administrator sets SPARKGATE_MASTER_ALLOWLIST",
            field="master-addr",
        )
    app_name = body.get("app_name")
    if app_name is not None and (not isinstance(app_name, str) or not 0 < len(app_name) <= 128):
        raise BadRequest("app_name must be a string of at most 128 characters", field="app_name")
    configs = _str_map(body.get("configs"), "configs")
    if any(not key.startswith("spark.") for key in configs):
        raise BadRequest("configs keys must be Spark settings (spark.*)", field="configs")
    envs = _str_map(body.get("envs"), "envs")
    if any(not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) for key in envs):
        raise BadRequest("envs keys must be environment variable names", field="envs")
    return {
        "master": master,
        "app_name": app_name or f"sparkgate-geo-{uuid.uuid4().hex[:8]}",
        "configs": configs,
        "envs": envs,
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
    name = _name(body.get("scope"), "scope", default=uuid.uuid4().hex)
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
    scope = _name(name, "scope")
    if geo_store.get_scope(principal.user_id, scope) is None:
        raise NotFound("scope not found", field="scope")
    return scope


def _session(principal: Principal, scope: str, name: Any) -> dict[str, Any]:
    session = _name(name, "session", default=DEFAULT_SESSION)
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
    scope = _scope(principal, body.get("scope"))
    name = _name(body.get("session"), "session", default=DEFAULT_SESSION)
    config = session_config(body)
    record = _new_session_record(scope, name, config)
    quotas.reserve_session(principal.user_id, record["session_id"])  # before the record: 429 leaves nothing
    if not geo_store.create_session(principal.user_id, scope, record):
        quotas.release_session(principal.user_id, record["session_id"])
        raise Conflict(f"session {name} already exists in scope {scope}", field="session")
    _ensure_driver(principal, scope, record)
    return {"scope": scope, "session": name, "app_name": config["app_name"], "master": config["master"]}


# ---- geo Jobs -----------------------------------------------------------------------------------


def _ensure_driver(principal: Principal, scope: str, record: dict[str, Any]) -> dict[str, Any]:
    """Start the session's driver unless it runs (answers the driver record); a new driver loads the
    session's catalog itself (``geo_catalog`` in its config) before it takes a Job."""
    from chalicelib import sessions

    ref = {"user_id": principal.user_id, "scope": scope, "session": record["session"]}
    return sessions.ensure_session_driver(
        record["session_id"], principal.user_id, {**record["config"], "geo_catalog": ref}
    )


def _queue(
    principal: Principal, record: dict[str, Any], op: dict[str, Any], code: str, driver: dict[str, Any] | None = None
) -> dict[str, Any]:
    from chalicelib import sessions

    job = jobs.new_job(
        jobs.JobRequest(
            owner=principal,
            code=code or op["op"],
            run_type="geo",
            kind="geo",
            session_id=record["session_id"],
            extra={"geo_op": op, "scope": record.get("scope"), "geo_session": record["session"]},
            opening_log=jobs.opening_log(driver),  # a cold start says so in the Job's log
        )
    )
    sessions.wake(driver)
    return job


def job_result(job: dict[str, Any]) -> dict[str, Any]:
    """The geo result document of a finished Job: its one result set's JSON cell (preview or S3), PNG inlined."""
    preview = job.get("result_preview") or {}
    rows = preview.get("rows") if isinstance(preview, dict) else None
    if rows and not preview.get("truncated"):
        text = rows[0][0]
    elif int(job.get("result_sets") or 0) > 0:
        text = job_store.get_result_set(job["owner"], job["exec_id"], 0)["rows"][0][0]
    else:
        return {}
    loaded: dict[str, Any] = json.loads(text)
    if loaded.get("png_key"):
        loaded["png"] = base64.b64encode(job_store.get_object(str(loaded.pop("png_key")))).decode()
    return loaded


def pending_message(pending: dict[str, Any]) -> str:
    """The 202's message: why the answer is not there yet and how to follow the Job."""
    if pending.get("driver") == "starting":
        return (
            "starting a Spark driver for this session (this usually takes 10-30 s); the job is queued: "
            "follow it by execID or call again"
        )
    return "still running; follow the job by execID"


def _wait(job: dict[str, Any]) -> Outcome:
    deadline = time.monotonic() + sync_wait_seconds()
    delay = 0.05
    current = job
    while True:
        if current["status"] in jobs.FINAL:
            break
        if time.monotonic() >= deadline:
            pending = {"execID": job["exec_id"], "taskID": job["task_id"], "jobStatus": current["status"]}
            if current["status"] in jobs.QUEUED and jobs.driver_starting(job_store.get_session(job["session_id"])):
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
    driver = _ensure_driver(principal, scope, record)
    job = _queue(principal, record, op, code, driver)
    return _wait(job)


def command(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/command``: Python in the scope's namespace, run by its default session's driver. Without a
    ``command`` (absent, null, empty or blank) it is a successful no-op, as in Arctern: nothing is queued
    and no driver starts, but the scope must be the caller's."""
    code = body.get("command")
    if code is None or (isinstance(code, str) and not code.strip()):
        _session(principal, _scope(principal, body.get("scope")), body.get("session"))
        return Outcome(result={"output": "", "result": None})
    if not isinstance(code, str):
        raise BadRequest("command must be Python code (a string)", field="command")
    if len(code.encode()) > MAX_COMMAND_BYTES:
        raise BadRequest(f"command exceeds {MAX_COMMAND_BYTES} bytes", field="command")
    scope = _scope(principal, body.get("scope"))
    return run(principal, scope, body.get("session"), {"op": "command", "code": code, "scope": scope}, code)


def _tables(body: dict[str, Any]) -> list[Any]:
    tables = body.get("tables")
    if not isinstance(tables, list) or not tables:
        raise BadRequest("tables must be a non-empty list", field="tables")
    if len(tables) > MAX_TABLES:
        raise BadRequest(f"at most {MAX_TABLES} tables per call", field="tables")
    if not all(isinstance(t, dict) for t in tables):
        raise BadRequest("each table must be an object", field="tables")
    return tables


def loadfile_tables(principal: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validated /loadfile table definitions (paths resolved, schema as DDL)."""
    out = []
    for table in _tables(body):
        fmt = table.get("format", "csv")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}", field="format")
        paths = loadfile_paths(principal, table.get("path"))
        definition: dict[str, Any] = {"kind": "file", "name": _table_name(table.get("name")), "format": fmt}
        # one file: ``path``; a pattern with several matches: ``paths`` (the engine reads the list)
        definition.update({"path": paths[0]} if len(paths) == 1 else {"paths": paths})
        definition["options"] = _str_map(table.get("options"), "options")
        definition["schema"] = schema_ddl(table.get("schema"))
        out.append(definition)
    return out


def createtable_tables(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validated /createtable definitions."""
    return [{"kind": "sql", "name": _table_name(t.get("name")), "sql": _sql(t.get("sql"))} for t in _tables(body)]


def define_tables(principal: Principal, body: dict[str, Any], definitions: list[dict[str, Any]], op: str) -> Outcome:
    """Run /loadfile or /createtable and record each definition in the catalog once it succeeded."""
    scope = _scope(principal, body.get("scope"))
    record = _session(principal, scope, body.get("session"))
    driver = _ensure_driver(principal, scope, record)
    job = _queue(
        principal,
        record,
        {"op": op, "tables": definitions},
        f"{op} " + ", ".join(d["name"] for d in definitions),
        driver,
    )
    outcome = _wait(job)
    if outcome.result is not None:
        for definition in definitions:
            geo_store.append_catalog(principal.user_id, scope, record["session"], definition)
    return outcome


def loadfile(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/loadfile``."""
    return define_tables(principal, body, loadfile_tables(principal, body), "loadfile")


def createtable(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/createtable``."""
    return define_tables(principal, body, createtable_tables(body), "createtable")


def table_info(principal: Principal, scope: Any, session: Any, table: Any) -> Outcome:
    """``/table/<scope>/<session>/<table>``: schema and row count."""
    name = _table_name(table, "table")
    return run(principal, scope, session, {"op": "table_info", "table": name}, f"describe {name}")


def arctern_schema(schema: Any) -> list[dict[str, Any]]:
    """``[{"col": "type"}]`` as Arctern's shipped ``/table/schema`` answers it (Spark's ``DESCRIBE`` rows):
    ``[{"col_name", "data_type", "comment"}]``."""
    out: list[dict[str, Any]] = []
    for entry in schema if isinstance(schema, list) else []:
        if isinstance(entry, dict):
            out.extend({"col_name": str(k), "data_type": str(v), "comment": None} for k, v in entry.items())
    return out


#: what /savefile may pass to Spark's writer (no path-like option: the one output path is ``path``)
SAVE_OPTIONS = frozenset(
    {
        "header",
        "delimiter",
        "sep",
        "quote",
        "escape",
        "quoteall",
        "nullvalue",
        "emptyvalue",
        "dateformat",
        "timestampformat",
        "encoding",
        "charset",
        "compression",
        "linesep",
        "ignoreleadingwhitespace",
        "ignoretrailingwhitespace",
    }
)
SAVE_MODES = ("error", "errorifexists", "overwrite", "append", "ignore")
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


def savefile_tables(principal: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validated /savefile outputs: ``{sql | table, format, path, options?, mode?}`` each."""
    out = []
    for table in _tables(body):
        fmt = table.get("format", "csv")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}", field="format")
        if table.get("sql") is not None:
            source: dict[str, Any] = {"sql": _sql(table.get("sql"))}
        else:
            source = {"table": _table_name(table.get("table", table.get("name")), "table")}
        options = _str_map(table.get("options"), "options")
        unknown = sorted(k for k in options if k.lower() not in SAVE_OPTIONS)
        if unknown:
            raise BadRequest(f"options not allowed on /savefile: {', '.join(unknown)}", field="options")
        mode = str(table.get("mode") or "error").lower()
        if mode not in SAVE_MODES:
            raise BadRequest(f"mode must be one of {', '.join(SAVE_MODES)}", field="mode")
        out.append(
            {
                **source,
                "format": fmt,
                "path": output_path(principal, table.get("path")),
                "options": options,
                "mode": mode,
            }
        )
    return out


def savefile(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/savefile``: write tables or query results to the caller's own area; the engine writes them."""
    outputs = savefile_tables(principal, body)
    area = str(user_files.user_area(principal.user_id))
    op = {"op": "savefile", "tables": outputs, "area": os.path.realpath(area)}
    code = "savefile " + ", ".join(o["path"] for o in outputs)
    return run(principal, body.get("scope"), body.get("session"), op, code)


def query(principal: Principal, body: dict[str, Any]) -> Outcome:
    """``/query``: rows of a SELECT, or the effect of DDL."""
    sql = _sql(body.get("sql"))
    outcome = run(principal, body.get("scope"), body.get("session"), {"op": "query", "sql": sql}, sql)
    created = _created_view((outcome.result or {}).get("created_table"))
    if created is not None:
        session = _name(body.get("session"), "session", default=DEFAULT_SESSION)
        geo_store.append_catalog(principal.user_id, str(body.get("scope")), session, created)
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
    """``/pointmap`` and the other maps: base64 PNG of ``sql``'s rows drawn with ``params``."""
    kind = MAPS.get(route)
    if kind is None:
        raise NotFound(f"unknown map {route}")
    sql = _sql(body.get("sql"))
    params = render_params(principal, body.get("params"))
    return run(
        principal,
        body.get("scope"),
        body.get("session"),
        {"op": "render", "map": kind, "sql": sql, "params": params},
        sql,
    )
