"""The OpenAPI 3.1 document, generated from the route table and the request models.

Every route the Chalice app registers is an operation; its surface (the api module's ``Surface``)
gives the envelope and the auth schemes, :data:`OPERATIONS` the request models, success status and
response data. ``python -m chalicelib.openapi`` (``make openapi``) writes ``docs/openapi.json``;
``GET /openapi.json`` serves the same document and ``GET /docs`` renders it (Swagger UI, vendored).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chalicelib import map_kinds
from chalicelib.dialects import GeoDialect, LinkisDialect, WorksDialect
from chalicelib.models import entrance as linkis_models
from chalicelib.models import geo as geo_models
from chalicelib.models.identity import LinkisLogin, TokenRequest, UserCreate, UserUpdate
from chalicelib.models.works import LenientPageQuery, PageQuery, TaskStart, WorkCreate, WorksQuery, WorkUpdate
from chalicelib.works import FIELDS as WORK_FIELDS

VERSION = "0.1.0"
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
ASYNCAPI_PATH = DOC_PATH.with_name("asyncapi.json")
REF = "#/components/schemas/"

#: The routes the document itself is served on (documented, not fuzzed for envelopes).
DOC_ROUTES = ("/openapi.json", "/docs", "/docs/{asset}", "/console", "/console/{asset}", "/console/vendor/{asset}")


@dataclass(frozen=True)
class Operation:
    """What the route table does not say about one route."""

    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    status: int = 200
    data: dict[str, Any] | None = None
    headers: tuple[str, ...] = ()
    response_headers: tuple[str, ...] = ()
    #: other success statuses (a geo call whose driver is starting answers 202)
    also: tuple[int, ...] = ()
    content: dict[str, Any] = field(default_factory=dict)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF + name}


WORK = _ref("Work")
TASK = _ref("Task")
PAGE = ("X-Total-Count",)
CSV_XLSX = {
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
        "schema": {"type": "string", "contentEncoding": "base64"}
    },
}

#: Keyed by ``"METHOD path"`` as the route table spells it.
OPERATIONS: dict[str, Operation] = {
    "POST /token": Operation(body=TokenRequest, data=None),
    "POST /api/v1/users": Operation(body=UserCreate, status=201),
    "GET /api/v1/users": Operation(query=PageQuery, response_headers=PAGE),
    "PATCH /api/v1/users/{username}": Operation(body=UserUpdate),
    "POST /api/v1/works": Operation(
        body=WorkCreate, status=201, data=WORK, headers=("Idempotency-Key",), response_headers=("ETag",)
    ),
    "GET /api/v1/works": Operation(query=WorksQuery, data={"type": "array", "items": WORK}, response_headers=PAGE),
    "GET /api/v1/works/search": Operation(
        query=WorksQuery, data={"type": "array", "items": WORK}, response_headers=PAGE
    ),
    "GET /api/v1/works/{work_id}": Operation(data=WORK, response_headers=("ETag",)),
    "PATCH /api/v1/works/{work_id}": Operation(
        body=WorkUpdate, data=WORK, headers=("If-Match",), response_headers=("ETag",)
    ),
    "DELETE /api/v1/works/{work_id}": Operation(headers=("If-Match",)),
    "POST /api/v1/works/{work_id}/tasks": Operation(
        body=TaskStart, body_required=False, status=201, data=TASK, headers=("Idempotency-Key",)
    ),
    "GET /api/v1/works/{work_id}/tasks": Operation(
        query=LenientPageQuery, data={"type": "array", "items": TASK}, response_headers=PAGE
    ),
    "GET /api/v1/tasks/{task_id}": Operation(data=TASK),
    "POST /api/v1/tasks/{task_id}/cancel": Operation(data=TASK),
    "POST /api/v1/tasks/{task_id}/retry": Operation(status=201, data=TASK),
    "POST /api/rest_j/v1/user/login": Operation(body=LinkisLogin),
    "POST /api/rest_j/v1/entrance/execute": Operation(body=linkis_models.ExecuteRequest),
    "POST /api/rest_j/v1/entrance/submit": Operation(body=linkis_models.SubmitRequest),
    "POST /api/rest_j/v1/entrance/{exec_id}/killJobs": Operation(body=linkis_models.KillJobsRequest),
    "GET /api/rest_j/v1/entrance/{exec_id}/log": Operation(query=linkis_models.LogQuery),
    "GET /api/rest_j/v1/jobhistory/list": Operation(query=linkis_models.JobHistoryQuery),
    "GET /api/rest_j/v1/filesystem/getDirFileTrees": Operation(query=linkis_models.PathQuery),
    "GET /api/rest_j/v1/filesystem/openFile": Operation(query=linkis_models.OpenFileQuery),
    "GET /api/rest_j/v1/filesystem/openLog": Operation(query=linkis_models.PathQuery),
    "GET /api/rest_j/v1/filesystem/getUserRootPath": Operation(query=linkis_models.RootPathQuery),
    "GET /api/rest_j/v1/filesystem/resultsetToExcel": Operation(query=linkis_models.PathQuery, content=CSV_XLSX),
    "POST /scope": Operation(body=geo_models.ScopeRequest, body_required=False),
    "POST /command": Operation(body=geo_models.CommandRequest, also=(202,)),
    "POST /session": Operation(body=geo_models.SessionRequest, also=(202,)),
    "POST /loadfile": Operation(body=geo_models.LoadfileRequest, also=(202,)),
    "POST /createtable": Operation(body=geo_models.CreatetableRequest, also=(202,)),
    "POST /savefile": Operation(body=geo_models.SavefileRequest, also=(202,)),
    "GET /table/schema": Operation(query=geo_models.TableQuery, also=(202,)),
    "POST /query": Operation(body=geo_models.QueryRequest, also=(202,)),
    **{f"POST /{kind}": Operation(body=geo_models.MapRequest, also=(202,)) for kind in map_kinds.ROUTES},
}

#: OpenAPI links (the stateful flows): ``"METHOD path"`` -> link name -> (operationId, parameter, expression).
LINKS: dict[str, dict[str, tuple[str, str, str]]] = {
    "POST /api/v1/works": {
        name: (op, "work_id", "$response.body#/data/work_id")
        for name, op in (
            ("GetWork", "works_get_get"),
            ("UpdateWork", "works_update_patch"),
            ("DeleteWork", "works_delete_delete"),
            ("StartTask", "tasks_start_post"),
            ("ListTasks", "tasks_work_tasks_get"),
        )
    },
    "POST /api/v1/works/{work_id}/tasks": {
        name: (op, "task_id", "$response.body#/data/task_id")
        for name, op in (("GetTask", "tasks_detail_get"), ("CancelTask", "tasks_cancel_post"))
    },
    **{
        f"POST /api/rest_j/v1/entrance/{route}": {
            name: (op, "exec_id", "$response.body#/data/execID")
            for name, op in (
                ("Status", "entrance_status_get"),
                ("Progress", "entrance_progress_get"),
                ("Log", "entrance_log_get"),
                ("Kill", "entrance_kill_get"),
            )
        }
        for route in ("execute", "submit")
    },
}

HEADERS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {
        "description": "A retried POST with the same key (per user and action) answers the first result.",
        "schema": {"type": "string", "maxLength": 128},
    },
    "If-Match": {
        "description": "The work's version (its ETag); a stale one answers 409.",
        "schema": {"type": "string", "pattern": '^(W/)?"?[0-9]{1,18}"?$'},
    },
}
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Total-Count": {"description": "Rows before paging.", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "ETag": {"description": "The work's version, quoted.", "schema": {"type": "string"}},
}


@dataclass(frozen=True)
class SurfaceDoc:
    """How one surface answers and authenticates."""

    tag: str
    ok: str
    error: str
    security: list[dict[str, list[str]]]


WORKS = SurfaceDoc("works", "WorksOk", "WorksError", [{"tokenHeader": []}, {"bearer": []}])
GEO = SurfaceDoc("geo", "GeoOk", "GeoError", [{"tokenHeader": []}, {"bearer": []}])
LINKIS = SurfaceDoc(
    "entrance",
    "LinkisEnvelope",
    "LinkisError",
    [{"tokenHeader": []}, {"bearer": []}, {"linkisCookie": []}, {"linkisTokenUser": [], "linkisTokenCode": []}],
)

ERROR_STATUSES = {
    "400": "Malformed request (the message names the field).",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "Not allowed for this user.",
    "404": "Unknown (or another user's) resource.",
    "409": "Conflict: stale version, a name in use, a work already running.",
    "429": "Throttled or over quota; see Retry-After.",
}


def _surface(module_name: str) -> SurfaceDoc:
    module = sys.modules.get(module_name)
    surface = getattr(module, "surface", None)
    dialect = getattr(surface, "dialect", None)
    if isinstance(dialect, LinkisDialect):
        return LINKIS
    if isinstance(dialect, GeoDialect):
        return GEO if module_name.rsplit(".", 1)[-1] != "token" else SurfaceDoc("token", "GeoOk", "GeoError", [])
    if isinstance(dialect, WorksDialect):
        tag = module_name.rsplit(".", 1)[-1]
        return SurfaceDoc(tag, "WorksOk", "WorksError", WORKS.security)
    return WORKS


def _nullable(kind: str | list[str]) -> dict[str, Any]:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"]}


def _work_schema() -> dict[str, Any]:
    kinds: dict[str, Any] = {"version": {"type": "integer"}, "paused": {"type": "boolean"}}
    kinds["timezone"] = {"type": "string"}
    kinds["status"] = _nullable("integer")
    kinds["extra_params"] = {"type": ["array", "null"], "items": {"type": "string"}}
    props = {name: kinds.get(name, _nullable("string")) for name in WORK_FIELDS}
    return {"type": "object", "properties": props, "required": list(WORK_FIELDS)}


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "WorksOk": {
            "type": "object",
            "description": "Spec 003 success: `code` 0 and the answer in `data` (absent on delete).",
            "properties": {"code": {"const": 0}, "data": {}},
            "required": ["code"],
        },
        "WorksError": {
            "type": "object",
            "description": "Spec 003 error: a six-digit business code (HTTP status * 1000 + n) and a message.",
            "properties": {"code": {"type": "integer", "minimum": 100000}, "msg": {"type": "string"}},
            "required": ["code", "msg"],
            "examples": [{"code": 400100, "msg": "name must be at most 128 characters"}],
        },
        "GeoOk": {
            "type": "object",
            "description": "Spec 004 success: `status` success, `code` the HTTP status, the answer beside them.",
            "properties": {"status": {"const": "success"}, "code": {"type": "integer"}},
            "required": ["status", "code"],
            "additionalProperties": True,
            "examples": [{"status": "success", "code": 200, "data": {"token": "<jwt>", "expired": 604800}}],
        },
        "GeoError": {
            "type": "object",
            "description": "Spec 004 error: HTTP 400 for every refusal except 401, 429 and 5xx.",
            "properties": {
                "status": {"const": "error"},
                "code": {"type": "integer"},
                "message": {"type": "string"},
            },
            "required": ["status", "code", "message"],
            "examples": [{"status": "error", "code": 400, "message": "scope is required"}],
        },
        "LinkisEnvelope": {
            "type": "object",
            "description": "Specs 000-002: `{method, status, message, data}`; status 0 is success.",
            "properties": {
                "method": {"type": "string"},
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "data": {},
            },
            "required": ["method", "status", "message", "data"],
            "examples": [
                {
                    "method": "/api/rest_j/v1/entrance/execute",
                    "status": 0,
                    "message": "OK",
                    "data": {"execID": "030418IDEhivebdpdwc010004:10087", "taskID": 123},
                }
            ],
        },
        "LinkisError": {
            "type": "object",
            "description": "The Linkis envelope of a refusal: status -1 (login required), 1 (error), "
            "2 (validation), 3 (auth) ...; `data.errorType` names the error.",
            "properties": {
                "method": {"type": "string"},
                "status": {"type": "integer", "not": {"const": 0}},
                "message": {"type": "string"},
                "data": {"type": "object", "properties": {"errorType": {"type": "string"}}},
            },
            "required": ["method", "status", "message", "data"],
        },
        "Work": _work_schema(),
        "Task": {
            "type": "object",
            "description": "A run of a work (spec 003 section 6) plus sparkgate's fields.",
            "properties": {
                "task_id": {"type": "string"},
                "work_id": {"type": "string"},
                "status": _nullable("integer"),
                "error": _nullable("string"),
                "exec_id": _nullable("string"),
                "job_task_id": _nullable("integer"),
            },
            "required": ["task_id"],
        },
    }
    responses = {
        f"{error}{status.capitalize()}": {
            "description": ERROR_STATUSES.get(status, "Any other refusal, in the surface's error envelope."),
            "content": {"application/json": {"schema": _ref(error)}},
        }
        for error in ("WorksError", "GeoError", "LinkisError")
        for status in (*ERROR_STATUSES, "default")
    }
    return {
        "schemas": schemas,
        "responses": responses,
        "securitySchemes": {
            "tokenHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`Authorization: Token <jwt>` (the JWT from `POST /token` or the Linkis login).",
            },
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "linkisCookie": {
                "type": "apiKey",
                "in": "cookie",
                "name": "linkis_user_session_ticket_id_v1",
                "description": "Set by `POST /api/rest_j/v1/user/login` (Linkis surface only).",
            },
            "linkisTokenUser": {"type": "apiKey", "in": "header", "name": "Token-User"},
            "linkisTokenCode": {
                "type": "apiKey",
                "in": "header",
                "name": "Token-Code",
                "description": "A Linkis service token (basedata-manager/gateway-auth-token) with `Token-User`.",
            },
        },
    }


def _model_schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF + "{model}", mode="validation")
    for name, sub in schema.pop("$defs", {}).items():
        defs.setdefault(name, sub)
    defs.setdefault(model.__name__, schema)
    return _ref(model.__name__)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _summary(doc: str | None) -> tuple[str, str]:
    text = " ".join((doc or "").split())
    first = text.split(". ")[0].rstrip(".")
    return first[:120], text


def _preflight(path: str) -> dict[str, Any]:
    return {
        "operationId": "preflight_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_"),
        "tags": ["cors"],
        "summary": "CORS preflight (browsers on an allowed origin)",
        "security": [],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in re.findall(r"{([^}]+)}", path)
        ],
        "responses": {
            "200": {"description": "The origin is allowed: Access-Control-Allow-* headers, no body."},
            "204": {"description": "The origin is allowed, no body."},
            "403": {"description": "No or a disallowed Origin: an empty 403 (as API Gateway answers)."},
        },
    }


def _operation(method: str, path: str, view: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if method == "OPTIONS":
        return _preflight(path)
    key = f"{method} {path}"
    spec = OPERATIONS.get(key, Operation())
    surface = _surface(view.__module__)
    summary, description = _summary(view.__doc__)
    op: dict[str, Any] = {
        "operationId": f"{view.__module__.rsplit('.', 1)[-1]}_{view.__name__}_{method.lower()}",
        "tags": [surface.tag],
        "summary": summary,
        "description": description,
        "security": surface.security,
    }
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"{([^}]+)}", path)
    ]
    params += [{"name": name, "in": "header", "required": False, **HEADERS[name]} for name in spec.headers]
    if spec.query is not None:
        params += _query_parameters(spec.query)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": spec.body_required,
            "content": {"application/json": {"schema": _model_schema(spec.body, defs)}},
        }
    ok: dict[str, Any] = _ref(surface.ok)
    if spec.data is not None and surface.ok == "WorksOk":
        ok = {"allOf": [ok, {"properties": {"data": spec.data}, "required": ["data"]}]}
    success: dict[str, Any] = {
        "description": "Success, in the surface's envelope.",
        "content": spec.content or {"application/json": {"schema": ok}},
    }
    if spec.response_headers:
        success["headers"] = {name: RESPONSE_HEADERS[name] for name in spec.response_headers}
    if key in LINKS:
        success["links"] = {
            name: {"operationId": op_id, "parameters": {param: expression}}
            for name, (op_id, param, expression) in LINKS[key].items()
        }
    responses: dict[str, Any] = {str(spec.status): success}
    for extra in spec.also:
        responses[str(extra)] = {
            "description": "Accepted: the scope's Spark driver is starting; retry shortly.",
            "content": {"application/json": {"schema": _ref(surface.ok)}},
        }
    for status in (*ERROR_STATUSES, "default"):
        if status == "401" and not surface.security:
            continue
        responses[status] = {"$ref": f"#/components/responses/{surface.error}{status.capitalize()}"}
    op["responses"] = responses
    return op


def _doc_routes(paths: dict[str, Any]) -> None:
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi_document",
            "tags": ["docs"],
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {}}}}},
        }
    }
    paths["/docs"] = {
        "get": {
            "operationId": "openapi_ui",
            "tags": ["docs"],
            "summary": "The document rendered by Swagger UI (vendored, no CDN)",
            "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    }
    paths["/console"] = {
        "get": {
            "operationId": "console",
            "tags": ["docs"],
            "summary": "The web console (docs/console.md); its modules are under /console/",
            "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    }


def build(routes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The document for a Chalice route table (``app.routes``: path -> method -> RouteEntry)."""
    components = _components()
    defs: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for path in sorted(routes):
        if path in DOC_ROUTES:
            continue
        for method in sorted(routes[path]):
            entry = routes[path][method]
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, entry.view_function, defs)
    _doc_routes(paths)
    components["schemas"].update(defs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sparkgate",
            "version": VERSION,
            "summary": "Serverless gateway to Spark: Linkis entrance, works and tasks, Arctern geo.",
            "description": "Generated from the route table and the request models (`make openapi`). "
            "Four surfaces, each with its envelope: token (`POST /token`), works (`/api/v1`), entrance "
            "(Linkis, `/api/rest_j/v1`) and geo (Arctern). See docs/api.md; the WebSocket protocol is in "
            "docs/websocket.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8000", "description": "the local stack (make run)"}],
        "tags": [
            {"name": "token", "description": "Login shared by every surface (geo envelope)."},
            {"name": "users", "description": "User admin (works envelope)."},
            {"name": "works", "description": "Works, spec 003."},
            {"name": "tasks", "description": "Runs of a work (works envelope)."},
            {"name": "entrance", "description": "Linkis, specs 000-002."},
            {"name": "geo", "description": "Arctern web server, spec 004."},
        ],
        "paths": paths,
        "components": components,
        "security": WORKS.security,
    }


def asyncapi() -> dict[str, Any]:
    """The WebSocket protocol as AsyncAPI 3.0: every frame a JSON Schema (``chalicelib.models.websocket``)."""
    from chalicelib.models.websocket import FRAMES

    schemas: dict[str, Any] = {}
    for name, model in FRAMES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub, body in schema.pop("$defs", {}).items():
            schemas.setdefault(sub, body)
        schemas[name] = schema

    def message(name: str, title: str, schema: str) -> dict[str, Any]:
        return {"name": name, "title": title, "contentType": "application/json", "payload": _ref_async(schema)}

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "sparkgate WebSocket",
            "version": VERSION,
            "description": "Linkis's WebSocket (spec 000) as sparkgate serves it; see docs/websocket.md. "
            "Token in `Sec-WebSocket-Protocol: sparkgate, token.<jwt>`, `Authorization` or the Linkis cookie.",
        },
        "servers": {"local": {"host": "127.0.0.1:8001", "protocol": "ws", "description": "make run"}},
        "channels": {
            "entrance": {
                "address": "/",
                "messages": {
                    "request": message("request", "A request frame ($default)", "RequestFrame"),
                    "answer": message(
                        "answer", "An answer or a push (status, progress, log, waitingSize)", "AnswerFrame"
                    ),
                    "error": message("error", "A refused frame; the socket stays open", "ErrorFrame"),
                },
            }
        },
        "operations": {
            "send": {
                "action": "receive",
                "channel": {"$ref": "#/channels/entrance"},
                "messages": [{"$ref": "#/channels/entrance/messages/request"}],
            },
            "answer": {
                "action": "send",
                "channel": {"$ref": "#/channels/entrance"},
                "messages": [
                    {"$ref": "#/channels/entrance/messages/answer"},
                    {"$ref": "#/channels/entrance/messages/error"},
                ],
            },
        },
        "components": {"schemas": schemas},
    }


def _ref_async(name: str) -> dict[str, Any]:
    return {"$ref": "#/components/schemas/" + name}


def render(document: dict[str, Any]) -> str:
    """The document as written to ``docs/openapi.json`` (stable: sorted keys are not used, order is)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def app_document() -> dict[str, Any]:
    """The document for the sparkgate app."""
    from app import app

    return build(app.routes)


def main(argv: list[str] | None = None) -> int:
    """``python -m chalicelib.openapi [--check] [PATH]``: write (or check) the committed document."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    target = Path(args[0]) if args else DOC_PATH
    outputs = {target: render(app_document()), target.with_name(ASYNCAPI_PATH.name): render(asyncapi())}
    stale = 0
    for path, text in outputs.items():
        if check:
            if (path.read_text() if path.exists() else "") != text:
                print(f"{path} is stale: run make openapi", file=sys.stderr)
                stale = 1
            continue
        path.write_text(text)
        print(f"wrote {path} ({len(text)} bytes)")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
