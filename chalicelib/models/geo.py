"""Geo surface (spec 004, Arctern's web server): request bodies and their checks.

``chalicelib.geo`` validates every body with these models (:func:`parse`); each validator raises the
message the hand-written checks answered (the messages are the contract). Checks of paths need the
caller: :func:`parse` passes ``context={"principal": ...}`` and the path fields resolve through
``chalicelib.geo`` (its allow-lists). What needs the store (does the scope exist, is the session there)
stays in the domain, after the body is valid. A body with several faults answers the first in its
model's ``ORDER``. Unknown fields are allowed, as Arctern allows them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, model_validator

from chalicelib.errors import BadRequest
from chalicelib.models.base import RequestModel, fail, storable, worded

DEFAULT_SESSION = "spark"
DEFAULT_MASTER = "local[*]"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
FORMATS = ("csv", "json", "parquet")
MASTER_RE = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|yarn|spark://[A-Za-z0-9_.:,\-]+|k8s://[A-Za-z0-9_.:/\-]+)$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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
MAX_TABLES = 50
MAX_SQL_BYTES = 64 * 1024
MAX_COMMAND_BYTES = 128 * 1024
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

_STRING = WithJsonSchema({"type": "string"})
_OPTIONAL_STRING = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})
_OBJECT = WithJsonSchema({"anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}]})


# ---- checks (pure: the domain reuses them) ------------------------------------------------------


def name(value: Any, field: str, *, default: str | None = None) -> str:
    """A scope or session name (1-64 of letters, digits, ``_ . -``); absent: ``default`` or required."""
    if value is None or value == "":
        if default is not None:
            return default
        raise BadRequest(f"{field} is required", field=field)
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise BadRequest(f"{field} must be 1-64 letters, digits, '_', '.' or '-'", field=field)
    return value


def table_name(value: Any, field: str = "name") -> str:
    """An SQL identifier naming a table."""
    if not isinstance(value, str) or not TABLE_RE.match(value):
        raise BadRequest(f"table {field} must be an SQL identifier (letters, digits, '_')", field=field)
    return value


def sql_text(value: Any, field: str = "sql") -> str:
    """Non-empty SQL of at most ``MAX_SQL_BYTES``."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field} must be a non-empty SQL string", field=field)
    if len(value.encode()) > MAX_SQL_BYTES:
        raise BadRequest(f"{field} exceeds {MAX_SQL_BYTES} bytes", field=field)
    return value


def str_map(value: Any, field: str) -> dict[str, str]:
    """An object of scalars as strings (booleans ``true``/``false``); absent: ``{}``."""
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


def _principal(info: ValidationInfo) -> Any:
    principal = (info.context or {}).get("principal")
    if principal is None:
        raise RuntimeError("a geo body with paths is parsed with context={'principal': ...}")
    return principal


# ---- validators ----------------------------------------------------------------------------------


def _name_field(default: str | None = None, *, optional: bool = False) -> BeforeValidator:
    """A scope/session name; ``optional``: absent stays None (the domain picks one)."""

    @worded
    def check(value: Any, info: ValidationInfo) -> Any:
        if optional and value in (None, ""):
            return None
        return name(value, str(info.field_name), default=default)

    return BeforeValidator(check)


@worded
def _sql(value: Any) -> Any:
    return sql_text(value)


@worded
def _format(value: Any) -> Any:
    if value not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}", field="format")
    return value


def _table(field: str) -> BeforeValidator:
    return BeforeValidator(worded(lambda value: table_name(value, field)))


def _map(field: str) -> BeforeValidator:
    return BeforeValidator(worded(lambda value: str_map(value, field)))


def _tables(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise fail("tables must be a non-empty list")
    if len(value) > MAX_TABLES:
        raise fail(f"at most {MAX_TABLES} tables per call")
    if not all(isinstance(t, dict) for t in value):
        raise fail("each table must be an object")
    return value


class GeoModel(RequestModel):
    """Arctern bodies tolerate fields they do not know."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    #: the fields an absent value is still checked for (as null: the field's own message)
    CHECKED: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _absent_checked(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.CHECKED:
            return {**{key: None for key in cls.CHECKED}, **data}
        return data


class ScopeRequest(GeoModel):
    """``POST /scope``: a uuid hex name when the body has none."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"scope": "scope1"}]})

    scope: Annotated[str | None, _name_field(optional=True), _OPTIONAL_STRING] = None


def _command(value: Any) -> Any:
    """Python code; absent, null, empty or blank: None (a no-op, as in Arctern)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise fail("command must be Python code (a string)")
    if len(value.encode()) > MAX_COMMAND_BYTES:
        raise fail(f"command exceeds {MAX_COMMAND_BYTES} bytes")
    return value


class CommandRequest(GeoModel):
    """``POST /command``: Python in the scope's namespace; no ``command`` is a successful no-op."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope"],
            "examples": [{"scope": "scope1", "session": "spark", "command": "print(1)"}],
        }
    )
    ORDER: ClassVar[tuple[str, ...]] = ("command", "scope", "session")
    CHECKED = ("scope",)

    scope: Annotated[str, _name_field(), _STRING]
    session: Annotated[str, _name_field(DEFAULT_SESSION), _OPTIONAL_STRING] = DEFAULT_SESSION
    command: Annotated[str | None, BeforeValidator(_command), _OPTIONAL_STRING] = Field(
        None, description="Python; absent, null or blank: a successful no-op."
    )


def _master(value: Any) -> Any:
    from chalicelib import masters
    from chalicelib.config import settings

    master = value or settings().spark_master or DEFAULT_MASTER  # the stage's master, as a scope's own session
    if not isinstance(master, str) or not MASTER_RE.match(master) or not masters.allowed(master):
        raise fail(
            f"master-addr must be one of the allowed masters ({', '.join(masters.allowlist())}); "
            "an administrator sets SPARKGATE_MASTER_ALLOWLIST"
        )
    return master


def _app_name(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 128):
        raise fail("app_name must be a string of at most 128 characters")
    return value


@worded
def _configs(value: Any) -> Any:
    configs = str_map(value, "configs")
    if any(not key.startswith("spark.") for key in configs):
        raise fail("configs keys must be Spark settings (spark.*)")
    return configs


@worded
def _envs(value: Any) -> Any:
    envs = str_map(value, "envs")
    if any(not ENV_NAME_RE.match(key) for key in envs):
        raise fail("envs keys must be environment variable names")
    return envs


class SessionRequest(GeoModel):
    """``POST /session``: a named SparkSession in a scope (``master_addr`` is accepted for ``master-addr``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "app_name": "arctern",
                    "master-addr": "local[*]",
                    "configs": {"spark.executorEnv.PYSPARK_PYTHON": "/usr/bin/python3"},
                    "envs": {},
                }
            ],
        }
    )
    ORDER: ClassVar[tuple[str, ...]] = ("scope", "session", "master-addr", "app_name", "configs", "envs")
    CHECKED = ("scope",)

    scope: Annotated[str, _name_field(), _STRING]
    session: Annotated[str, _name_field(DEFAULT_SESSION), _STRING] = DEFAULT_SESSION
    app_name: Annotated[str | None, BeforeValidator(_app_name), _OPTIONAL_STRING] = None
    master_addr: Annotated[str, BeforeValidator(_master), _OPTIONAL_STRING] = Field(
        None,
        alias="master-addr",
        validate_default=True,  # None: the stage's master (SPARKGATE_SPARK_MASTER)
    )
    configs: Annotated[dict[str, str], BeforeValidator(_configs), _OBJECT] = Field(default_factory=dict)
    envs: Annotated[dict[str, str], BeforeValidator(_envs), _OBJECT] = Field(default_factory=dict)


@worded
def _read_paths(value: Any, info: ValidationInfo) -> Any:
    from chalicelib import geo

    return geo.loadfile_paths(_principal(info), value)


class LoadTable(GeoModel):
    """One table of ``/loadfile``: a file (or folder, or pattern) under your area, a shared root or your
    uploads, read as ``format`` with Spark ``options`` and an optional ``schema``."""

    CHECKED = ("path", "name")

    format: Annotated[str, BeforeValidator(_format), _STRING] = Field("csv", examples=["csv"])
    path: Annotated[list[str], BeforeValidator(_read_paths), _STRING] = Field(
        description="A file, folder or pattern in your data area or a shared root, or s3://<bucket>/uploads/<you>/..."
    )
    name: Annotated[str, _table("name"), _STRING]
    options: Annotated[dict[str, str], _map("options"), _OBJECT] = Field(default_factory=dict)
    schema_: Annotated[
        str | None,
        BeforeValidator(worded(schema_ddl)),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}},
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(None, alias="schema", description='[{"column": "type"}, ...]')


class SqlTable(GeoModel):
    """One table of ``/createtable``: a view of ``sql`` over existing tables."""

    CHECKED = ("name", "sql")

    name: Annotated[str, _table("name"), _STRING]
    sql: Annotated[str, BeforeValidator(_sql), _STRING]


@worded
def _save_options(value: Any) -> Any:
    options = str_map(value, "options")
    unknown = sorted(k for k in options if k.lower() not in SAVE_OPTIONS)
    if unknown:
        raise fail(f"options not allowed on /savefile: {', '.join(unknown)}")
    return options


def _mode(value: Any) -> Any:
    mode = str(value or "error").lower()
    if mode not in SAVE_MODES:
        raise fail(f"mode must be one of {', '.join(SAVE_MODES)}")
    return mode


@worded
def _output_path(value: Any, info: ValidationInfo) -> Any:
    from chalicelib import geo

    return geo.output_path(_principal(info), value)


class SaveTable(GeoModel):
    """One output of ``/savefile``: ``sql`` (a query) or ``table`` (``name`` is accepted for it), written as
    ``format`` to ``path`` in your own area or uploads."""

    CHECKED = ("path", "mode")

    format: Annotated[str, BeforeValidator(_format), _STRING] = Field("csv", examples=["csv"])
    sql: Annotated[str | None, BeforeValidator(lambda v: None if v is None else _sql(v)), _OPTIONAL_STRING] = None
    table: Annotated[str | None, _table("table"), _OPTIONAL_STRING] = Field(
        None, description="Used when there is no sql; `name` is accepted for it."
    )
    options: Annotated[dict[str, str], BeforeValidator(_save_options), _OBJECT] = Field(default_factory=dict)
    mode: Annotated[str, BeforeValidator(_mode), _OPTIONAL_STRING] = Field("error", examples=["overwrite"])
    path: Annotated[str, BeforeValidator(_output_path), _STRING] = Field(
        description="A file or folder in your own area (relative: inside it), or s3://<bucket>/uploads/<you>/..."
    )

    @model_validator(mode="before")
    @classmethod
    def _source(cls, data: Any) -> Any:
        """Without sql the source is ``table`` (or ``name``), checked; with sql no table is looked at."""
        if not isinstance(data, dict):
            return data
        rest = {k: v for k, v in data.items() if k != "table"}
        return rest if data.get("sql") is not None else {**rest, "table": data.get("table", data.get("name"))}


def _tables_of(model: type[GeoModel]) -> Any:
    return Annotated[list[model], BeforeValidator(_tables)]  # type: ignore[valid-type]


class TablesRequest(GeoModel):
    """What ``/loadfile``, ``/createtable`` and ``/savefile`` share: the scope, session and tables."""

    ORDER: ClassVar[tuple[str, ...]] = ("tables", "scope", "session")
    CHECKED = ("scope", "tables")

    scope: Annotated[str, _name_field(), _STRING]
    session: Annotated[str, _name_field(DEFAULT_SESSION), _OPTIONAL_STRING] = DEFAULT_SESSION


class LoadfileRequest(TablesRequest):
    """``POST /loadfile``."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "tables"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "tables": [
                        {
                            "name": "raw_data",
                            "format": "csv",
                            "path": "/data/0_5M_nyc_taxi_and_building.csv",
                            "options": {"header": "True", "delimiter": ","},
                            "schema": [{"VendorID": "string"}, {"pickup_longitude": "double"}],
                        }
                    ],
                }
            ],
        }
    )

    tables: _tables_of(LoadTable)  # type: ignore[valid-type]


class CreatetableRequest(TablesRequest):
    """``POST /createtable``."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "tables"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "tables": [{"name": "nyc", "sql": "select * from raw_data where fare_amount > 0"}],
                }
            ],
        }
    )

    tables: _tables_of(SqlTable)  # type: ignore[valid-type]


class SavefileRequest(TablesRequest):
    """``POST /savefile`` (shipped Arctern): tables or query results written to your own area."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "tables"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "tables": [{"table": "raw_data", "format": "parquet", "path": "out/raw", "mode": "overwrite"}],
                }
            ],
        }
    )

    tables: _tables_of(SaveTable)  # type: ignore[valid-type]


class QueryRequest(GeoModel):
    """``POST /query``."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "sql"],
            "examples": [{"scope": "scope1", "session": "session1", "sql": "select * from raw_data limit 1"}],
        }
    )
    ORDER: ClassVar[tuple[str, ...]] = ("sql", "scope", "session")
    CHECKED = ("sql", "scope")

    scope: Annotated[str, _name_field(), _STRING]
    session: Annotated[str, _name_field(DEFAULT_SESSION), _STRING] = DEFAULT_SESSION
    sql: Annotated[str, BeforeValidator(_sql), _STRING]
    collect_result: str | None = Field(None, examples=["1"])


@worded
def _render_params(value: Any, info: ValidationInfo) -> Any:
    from chalicelib import geo

    return storable(geo.render_params(_principal(info), value), "params")


class MapRequest(GeoModel):
    """``POST /pointmap``, ``/heatmap``, ``/choropleth``, ``/weighted`` ... : SQL plus render parameters
    (``width``/``height`` 1..8192, ``bounding_box`` [min_x, min_y, max_x, max_y]; the renderer checks the rest)."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "sql"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "sql": "select ST_Point(pickup_longitude, pickup_latitude) as point from raw_data",
                    "params": {
                        "width": 1024,
                        "height": 896,
                        "bounding_box": [-73.998427, 40.730309, -73.954348, 40.780816],
                        "coordinate_system": "EPSG:4326",
                        "point_color": "#2DEF4A",
                        "point_size": 3,
                        "opacity": 0.5,
                    },
                }
            ],
        }
    )
    ORDER: ClassVar[tuple[str, ...]] = ("sql", "params", "scope", "session")
    CHECKED = ("sql", "params", "scope")

    scope: Annotated[str, _name_field(), _STRING]
    session: Annotated[str, _name_field(DEFAULT_SESSION), _STRING] = DEFAULT_SESSION
    sql: Annotated[str, BeforeValidator(_sql), _STRING]
    params: Annotated[dict[str, Any], BeforeValidator(_render_params), _OBJECT]


class TableQuery(GeoModel):
    """``GET /table/<scope>/<session>/<table>`` and ``GET /table/schema?scope=&session=&table=``."""

    ORDER: ClassVar[tuple[str, ...]] = ("table", "scope", "session")
    CHECKED = ("table", "scope")

    scope: Annotated[str, _name_field(), _STRING]
    session: Annotated[str, _name_field(DEFAULT_SESSION), _OPTIONAL_STRING] = DEFAULT_SESSION
    table: Annotated[str, _table("table"), _STRING]
