"""The geo surface (spec 004, Arctern-compatible routes) over ``chalicelib.geo``.

Answers ``{"status": "success", "code": 200, ...}``; errors ``{"status": "error", "code": 400, "message"}``.
A Job that outlasts the synchronous wait answers HTTP 202 ``{"status": "success", "code": 202,
"execID", "taskID", "jobStatus"}`` (``"driver": "starting"`` and a message saying so while the session's
Spark driver is still starting): follow it through ``/api/rest_j/v1/entrance/{execID}/...`` or the WebSocket.
"""

from __future__ import annotations

from typing import Any

from chalice import Response

from chalicelib import geo, map_kinds
from chalicelib.api.routing import Call, Surface
from chalicelib.dialects import GeoDialect

surface = Surface(__name__, GeoDialect(), cors=True)  # browser map clients on other origins
blueprint = surface.blueprint


def _answer(outcome: geo.Outcome, shape: str, extra: dict[str, Any] | None = None) -> Response:
    """The spec's answer for a finished Job, or 202 with the Job's ids."""
    if outcome.pending is not None:
        return GeoDialect.ok(202, message=geo.pending_message(outcome.pending), **outcome.pending)
    result = outcome.result or {}
    fields: dict[str, Any] = dict(extra or {})
    if shape == "result":
        fields["result"] = result.get("result")
    elif shape == "png":
        fields["result"] = result.get("png")
    elif shape == "command":
        fields.update(
            message="execute command successfully!", output=result.get("output", ""), result=result.get("result")
        )
    elif shape == "table":
        fields.update(schema=result.get("schema", []), num_rows=result.get("num_rows", 0))
    return GeoDialect.ok(200, **fields)


@surface.route("/scope", methods=["POST"])
def create_scope(call: Call) -> Response:
    """Create a scope (uuid hex name when the body has none); an existing name is an error."""
    name = geo.create_scope(call.user, call.body(optional=True))
    return GeoDialect.ok(message="create scope successfully!", scope=name)


@surface.route("/scope/{scope}", methods=["DELETE"])
def delete_scope(call: Call, scope: str) -> Response:
    """Stop the scope's drivers and remove its state."""
    geo.delete_scope(call.user, scope)
    return GeoDialect.ok(message=f"remove scope {scope} successfully!")


@surface.route("/command", methods=["POST"])
def command(call: Call) -> Response:
    """Python in the scope's namespace (in its driver): printed output and the final expression's value."""
    return _answer(geo.command(call.user, call.body()), "command")


@surface.route("/session", methods=["POST"])
def create_session(call: Call) -> Response:
    """A named SparkSession in a scope (master-addr, app_name, configs, envs)."""
    created = geo.create_session(call.user, call.body())
    return GeoDialect.ok(message="create session successfully!", **created)


@surface.route("/loadfile", methods=["POST"])
def loadfile(call: Call) -> Response:
    """Load files (csv, json, parquet) under the allowed roots as tables."""
    return _answer(geo.loadfile(call.user, call.body()), "message", {"message": "load table successfully!"})


@surface.route("/createtable", methods=["POST"])
def createtable(call: Call) -> Response:
    """Create tables from SQL over existing ones."""
    return _answer(geo.createtable(call.user, call.body()), "message", {"message": "create table successfully!"})


@surface.route("/table/{scope}/{session}/{table}", methods=["GET"])
def table_info(call: Call, scope: str, session: str, table: str) -> Response:
    """``{"schema": [{"col": "type"}], "num_rows": N}``."""
    return _answer(geo.table_info(call.user, scope, session, table), "table", {"table": table})


@surface.route("/table/schema", methods=["GET"])
def table_schema(call: Call) -> Response:
    """Arctern's ``/table/schema?scope=&session=&table=``."""
    args = call.query
    table = args.get("table")
    outcome = geo.table_info(call.user, args.get("scope"), args.get("session"), table)
    if outcome.result is not None:  # Arctern's shipped shape: DESCRIBE rows
        outcome.result = {**outcome.result, "schema": geo.arctern_schema(outcome.result.get("schema"))}
    return _answer(outcome, "table", {"table": table})


@surface.route("/savefile", methods=["POST"])
def savefile(call: Call) -> Response:
    """Write tables or query results to the caller's own area as csv, json or parquet (Arctern's ``/savefile``)."""
    return _answer(geo.savefile(call.user, call.body()), "message", {"message": "save table successfully!"})


@surface.route("/query", methods=["POST"])
def query(call: Call) -> Response:
    """Rows of a query (a single column answers a list of values), or DDL's effect."""
    return _answer(geo.query(call.user, call.body()), "result")


def _map_route(name: str) -> None:
    def view(call: Call) -> Response:
        return _answer(geo.render(call.user, name, call.body()), "png")

    view.__name__ = f"map_{name}"
    view.__doc__ = f"``POST /{name}``: base64 PNG."
    surface.route(f"/{name}", methods=["POST"])(view)


for _name in map_kinds.ROUTES:
    _map_route(_name)
