"""Linkis surface (specs 000-002): the bodies and queries the entrance routes take, and their checks.

``chalicelib.entrance`` validates every body and query with these models (:func:`parse`); the messages
and Linkis status codes are the contract, so each validator raises the message the hand-written checks
answered. Unknown fields are allowed, as Linkis allows them. A body with several faults answers the first
in the order each ``*_ORDER`` gives (the order the checks always ran in).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, model_validator

from chalicelib.errors import BadRequest
from chalicelib.models.base import RequestModel, fail, storable, worded

SUPPORTED_ENGINES = ("spark",)
MAX_KILL_IDS = 100
#: Linkis's ``killJobs`` list fields, both optional
KILL_LISTS = ("idList", "taskIDList")
EXECUTE_ORDER = ("executeApplicationName", "params", "runType", "executionCode")
SUBMIT_ORDER = ("executionContent", "labels", "params")


# ---- checks (pure: the domain reuses them) ------------------------------------------------------


def engine_name(name: Any) -> str:
    """The engine of ``executeApplicationName`` / ``labels.engineType`` (``spark-3.5.1`` -> ``spark``)."""
    if not isinstance(name, str) or not name:
        raise BadRequest("executeApplicationName is required (spark)", field="executeApplicationName")
    engine = name.lower().split("-", 1)[0]
    if engine not in SUPPORTED_ENGINES:
        raise BadRequest(f"engine {name!r} is not supported; use spark", field="executeApplicationName")
    return engine


def int_arg(value: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter (absent or empty: ``default``) within ``low..high``."""
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise BadRequest(f"{name} must be an integer", field=name) from err
    if not low <= number <= high:
        raise BadRequest(f"{name} must be from {low} to {high}", field=name)
    return number


def flag(value: Any, name: str, default: bool) -> bool:
    """A boolean parameter: ``true``/``false`` (any case) or a JSON boolean; absent: ``default``."""
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise BadRequest(f"{name} must be true or false", field=name)


def _int(default: int | None, low: int, high: int) -> BeforeValidator:
    """A validator for an integer parameter (absent stays ``None`` when ``default`` is None)."""

    @worded
    def check(value: Any, info: ValidationInfo) -> Any:
        name = str(info.field_name)
        if default is None and value in (None, ""):
            return None
        return int_arg(value, name, default if default is not None else 0, low, high)

    return BeforeValidator(check)


def _flag(default: bool) -> BeforeValidator:
    return BeforeValidator(worded(lambda value, info: flag(value, str(info.field_name), default)))


@worded
def _engine(value: Any) -> str:
    return engine_name(value)


@worded
def _params(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("params must be an object")
    return storable(value, "params")


@worded
def _source(value: Any) -> Any:
    """An object is kept (it must be storable); anything else is dropped, as before."""
    return storable(value, "source") if isinstance(value, dict) else None


def _run_type(value: Any) -> Any:
    """Internal run types are refused here; the rest (``sql``, ``py`` ...) is the Job domain's to check."""
    from chalicelib.jobs import INTERNAL_RUN_TYPES

    if isinstance(value, str) and value.lower() in INTERNAL_RUN_TYPES:
        raise fail(f"runType {value!r} is internal; use one of: sql, python (py, pyspark)")
    return value


def _code(value: Any) -> Any:
    from chalicelib.jobs import MAX_CODE_BYTES

    if not isinstance(value, str) or not value.strip():
        raise fail("executionCode must be non-empty code")
    if len(value.encode()) > MAX_CODE_BYTES:
        raise fail(f"code exceeds {MAX_CODE_BYTES} bytes")
    return value


def _path(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise fail("path is required")
    return value


_OPTIONAL_OBJECT = {"anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}]}
#: the run types a user may give (any case), the engine names, and code: what the checks accept
RUN_TYPE_SCHEMA = {"type": "string", "enum": ["sql", "spark_sql", "python", "py", "pyspark"]}
ENGINE_SCHEMA = {"type": "string", "pattern": "^[sS][pP][aA][rR][kK](-.*)?$"}
CODE_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 256 * 1024, "pattern": "\\S"}


#: a field whose value reaches the domain as given (its checks, and the document's type, are declared)
def _as_given(schema: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema(schema)


class LinkisModel(RequestModel):
    """Linkis bodies tolerate fields they do not know."""

    model_config = ConfigDict(extra="allow")


class ExecuteRequest(LinkisModel):
    """``POST /api/rest_j/v1/entrance/execute`` (spec 000)."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["executeApplicationName", "executionCode", "runType"],
            "examples": [
                {
                    "executeApplicationName": "spark",
                    "executionCode": "show tables",
                    "runType": "sql",
                    "source": {"scriptPath": "/home/Linkis/Linkis.sql"},
                    "params": {"variable": {}, "configuration": {}},
                }
            ],
        }
    )

    executionCode: Annotated[Any, BeforeValidator(_code), _as_given(CODE_SCHEMA)] = Field(
        description="The code to run (at most 256 KiB)."
    )
    runType: Annotated[Any, BeforeValidator(_run_type), _as_given(RUN_TYPE_SCHEMA)] = Field(
        description="sql (spark_sql), python (py, pyspark).", examples=["sql"]
    )
    executeApplicationName: Annotated[Any, BeforeValidator(_engine), _as_given(ENGINE_SCHEMA)] = Field(
        description="The engine: spark (any spark-<version>).", examples=["spark"]
    )
    requestApplicationName: str | None = None
    params: Annotated[dict[str, Any] | None, BeforeValidator(_params)] = None
    source: Annotated[Any, BeforeValidator(_source), _as_given(_OPTIONAL_OBJECT)] = Field(
        None, description="Kept as given when an object."
    )

    @model_validator(mode="before")
    @classmethod
    def _every_field_checked(cls, data: Any) -> Any:  # an absent field is checked as null (its message)
        if isinstance(data, dict):
            return {"executionCode": None, "runType": None, "executeApplicationName": None, **data}
        return data


def _content(value: Any) -> Any:
    if not isinstance(value, dict):
        raise fail("executionContent {code, runType} is required")
    return {"runType": None, **value, "code": value.get("code")}


def _labels(value: Any) -> Any:
    value = value or {}
    if not isinstance(value, dict):
        raise fail("labels must be an object")
    return value


class ExecutionContent(LinkisModel):
    """``executionContent`` of a submit: the code and its run type (checked as execute's)."""

    runType: Annotated[Any, BeforeValidator(_run_type), _as_given(RUN_TYPE_SCHEMA)] = Field(
        description="sql (spark_sql), python (py, pyspark).", examples=["sql"]
    )
    code: Annotated[Any, BeforeValidator(_code), _as_given(CODE_SCHEMA)] = Field(description="The code to run.")


class SubmitRequest(LinkisModel):
    """``POST /api/rest_j/v1/entrance/submit`` (Linkis 1.x: the code under ``executionContent``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["executionContent"],
            "examples": [
                {
                    "executionContent": {"code": "select 1", "runType": "sql"},
                    "params": {"variable": {}, "configuration": {}},
                    "source": {"scriptPath": "file:///tmp/hadoop/1.sql"},
                    "labels": {"engineType": "spark-3.5.1", "userCreator": "alice-IDE"},
                }
            ],
        }
    )

    executionContent: Annotated[ExecutionContent, BeforeValidator(_content)] = Field(
        description="The code and its run type."
    )
    labels: Annotated[dict[str, Any], BeforeValidator(_labels)] = Field(
        default_factory=dict, description="engineType (spark-<version>), userCreator (<you>-<application>)."
    )
    params: Annotated[dict[str, Any] | None, BeforeValidator(_params)] = None
    source: Annotated[Any, BeforeValidator(_source), _as_given(_OPTIONAL_OBJECT)] = Field(
        None, description="Kept as given when an object."
    )

    @model_validator(mode="before")
    @classmethod
    def _every_field_checked(cls, data: Any) -> Any:  # an absent executionContent is checked as null
        if isinstance(data, dict):
            return {"executionContent": None, **data}
        return data

    @property
    def engine(self) -> str:
        """The engine ``labels.engineType`` names (default spark); BadRequest for another."""
        return engine_name(self.labels.get("engineType", "spark"))


def _kill_list(value: Any) -> Any:
    value = value or []
    if not isinstance(value, list):
        raise fail("idList and taskIDList must be lists")
    return value


class KillJobsRequest(LinkisModel):
    """``POST /api/rest_j/v1/entrance/{exec_id}/killJobs``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"idList": ["exec-id"], "taskIDList": [1]}]})

    idList: Annotated[
        list[Any], BeforeValidator(_kill_list), _as_given({"type": "array", "items": {"type": "string"}})
    ] = Field(default_factory=list)
    taskIDList: Annotated[
        list[Any], BeforeValidator(_kill_list), _as_given({"type": "array", "items": {"type": "integer"}})
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _at_most(self) -> KillJobsRequest:
        if len(self.idList) + len(self.taskIDList) > MAX_KILL_IDS:
            raise fail(f"at most {MAX_KILL_IDS} jobs per killJobs call")
        return self


class LogQuery(LinkisModel):
    """``GET .../entrance/{exec_id}/log``: Linkis's cursor (``fromLine`` 1-based, ``size`` <= 0 all)."""

    fromLine: Annotated[
        int, _int(1, -(10**9), 10**9), _as_given({"anyOf": [{"type": "integer"}, {"type": "null"}]})
    ] = Field(1, description="1-based; below 1: the first line.")
    size: Annotated[int, _int(0, -(10**9), 10**9), _as_given({"anyOf": [{"type": "integer"}, {"type": "null"}]})] = (
        Field(0, description="Lines; <= 0 or absent: all (at most 10000 per answer).")
    )
    distinctLevel: Annotated[bool, _flag(True), _as_given({"anyOf": [{"type": "boolean"}, {"type": "null"}]})] = True


HISTORY_PAGE_SIZE = 20
_OPTIONAL_INT = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
_OPTIONAL_INT_MIN_1 = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}
#: the order ``jobhistory/list``'s parameters were checked in
HISTORY_ORDER = ("startDate", "endDate", "taskID", "pageNow", "pageSize")


class JobHistoryQuery(LinkisModel):
    """``GET /api/rest_j/v1/jobhistory/list``."""

    pageNow: Annotated[int, _int(1, 1, 10**6), _as_given(_OPTIONAL_INT_MIN_1)] = 1
    pageSize: Annotated[int, _int(HISTORY_PAGE_SIZE, 1, 100), _as_given(_OPTIONAL_INT_MIN_1)] = HISTORY_PAGE_SIZE
    status: str | None = None
    taskID: Annotated[int, _int(0, 0, 10**15), _as_given(_OPTIONAL_INT)] = 0
    startDate: Annotated[int, _int(0, 0, 10**14), _as_given(_OPTIONAL_INT)] = 0
    endDate: Annotated[int | None, _int(None, 0, 10**14), _as_given(_OPTIONAL_INT)] = Field(
        None, description="Epoch ms; absent: now."
    )
    executeApplicationName: str | None = None
    creator: str | None = None
    engineTypeLabel: str | None = None


DEFAULT_PAGE_SIZE = 5000
MAX_PAGE_SIZE = 50000
OPEN_FILE_ORDER = ("path", "typed", "page", "pageSize")


class OpenFileQuery(LinkisModel):
    """``GET /api/rest_j/v1/filesystem/openFile`` (and ``getDirFileTrees``, ``openLog``)."""

    path: Annotated[str, BeforeValidator(_path)] = Field(description="A result file (resultLocation + _N.json).")
    page: Annotated[int, _int(1, 1, 10**9), _as_given(_OPTIONAL_INT)] = 1
    pageSize: Annotated[int, _int(DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE), _as_given(_OPTIONAL_INT)] = DEFAULT_PAGE_SIZE
    typed: Annotated[bool, _flag(False), _as_given({"anyOf": [{"type": "boolean"}, {"type": "null"}]})] = Field(
        False, description="true: JSON-typed values and Spark's type names."
    )

    @model_validator(mode="before")
    @classmethod
    def _path_checked(cls, data: Any) -> Any:  # an absent path is checked as null ("path is required")
        return {"path": None, **data} if isinstance(data, dict) else data


class PathQuery(LinkisModel):
    """A ``path`` query parameter (``getDirFileTrees``, ``openLog``, ``resultsetToExcel``)."""

    path: Annotated[str, BeforeValidator(_path)]

    @model_validator(mode="before")
    @classmethod
    def _path_checked(cls, data: Any) -> Any:  # an absent path is checked as null ("path is required")
        return {"path": None, **data} if isinstance(data, dict) else data


def _path_type(value: Any) -> Any:
    kind = str(value or "file").lower()
    if kind not in ("file", "local", "", "hdfs", "s3"):
        raise fail("pathType must be file, hdfs or s3")
    return kind


class RootPathQuery(LinkisModel):
    """``GET /api/rest_j/v1/filesystem/getUserRootPath``."""

    pathType: Annotated[
        str, BeforeValidator(_path_type), _as_given({"anyOf": [{"type": "string"}, {"type": "null"}]})
    ] = Field("file", examples=["file"], description="file (the default), hdfs or s3.")
