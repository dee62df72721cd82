"""Works surface (spec 003): work bodies, list/search queries, paging, task start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from chalicelib.models.base import RequestModel, fail

TYPES = ("STREAMING", "BATCH")
CATEGORIES = ("FLINK_SQL", "FLINK_JAR", "SPARK_SQL", "SPARK_JAR", "PYSPARK")
CATEGORY_ALIASES = {"FLNK_JAR": "FLINK_JAR"}
FREQUENCIES = ("once", "hourly", "daily", "weekly")
JAVA_VERSIONS = ("8", "11", "17", "21")
#: Work lifecycle status (its own, apart from task status): 0 draft, 1 online, 2 offline, 3 archived, 4-7 reserved.
STATUS_RANGE = range(0, 8)
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
#: Answered fields the server manages; ignored on input (documented).
SERVER_FIELDS = ("work_id", "lambda_id", "created_at", "updated_at", "deleted_at", "version", "active_task_id")
REQUIRED_ON_CREATE = ("name", "description", "type", "category")

Check = Callable[[Any, ValidationInfo], Any]


def _string(max_len: int, *, allow_empty: bool = True) -> Check:
    def check(value: Any, info: ValidationInfo) -> Any:
        field = info.field_name
        if value is None:
            return None
        if not isinstance(value, str):
            raise fail(f"{field} must be a string")
        if len(value) > max_len:
            raise fail(f"{field} must be at most {max_len} characters")
        if not allow_empty and not value.strip():
            raise fail(f"{field} must not be empty")
        return value

    return check


def enum_check(options: tuple[str, ...], aliases: dict[str, str] | None = None) -> Check:
    """A string from ``options`` (after ``aliases``); ``"<field> must be one of ..."`` otherwise."""

    def check(value: Any, info: ValidationInfo) -> Any:
        field = info.field_name
        if value is None:
            return None
        if not isinstance(value, str):
            raise fail(f"{field} must be a string")
        value = (aliases or {}).get(value, value)
        if value not in options:
            raise fail(f"{field} must be one of {', '.join(options)}")
        return value

    return check


def _status(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in STATUS_RANGE:
        raise fail(f"{info.field_name} must be an integer from 0 to 7")
    return value


def _extra_params(value: Any, info: ValidationInfo) -> Any:
    field = info.field_name
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{field} must be a list of strings")
    if len(value) > 64 or any(len(v) > 1024 for v in value):
        raise fail(f"{field} allows at most 64 strings of 1024 characters")
    return value


def _paused(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise fail(f"{info.field_name} must be true or false")
    return value


def _timezone(value: Any, info: ValidationInfo) -> Any:
    field = info.field_name
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise fail(f"{field} must be an IANA time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(f"{field} {value!r} is not a known time zone") from None
    return value


Type = Literal["STREAMING", "BATCH"]
Category = Literal["FLINK_SQL", "FLINK_JAR", "SPARK_SQL", "SPARK_JAR", "PYSPARK"]
Frequency = Literal["once", "hourly", "daily", "weekly"]
JavaVersion = Literal["8", "11", "17", "21"]


class WorkFields(RequestModel):
    """The writable fields of a work; ``null`` clears an optional one."""

    user_id: Annotated[Annotated[str, Field(max_length=64)] | None, BeforeValidator(_string(64))] = Field(
        None, description="Your own user id, or omitted (another user's id is refused)."
    )
    name: Annotated[
        Annotated[str, Field(min_length=1, max_length=128)] | None, BeforeValidator(_string(128, allow_empty=False))
    ] = Field(None, description="Unique among your works.", examples=["daily-report"])
    description: Annotated[Annotated[str, Field(max_length=2048)] | None, BeforeValidator(_string(2048))] = None
    type: Annotated[Type | None, BeforeValidator(enum_check(TYPES))] = Field(
        None, description="Fixed at creation.", examples=["BATCH"]
    )
    category: Annotated[Category | None, BeforeValidator(enum_check(CATEGORIES, CATEGORY_ALIASES))] = Field(
        None, description="`FLNK_JAR` (the spec's spelling) is accepted as `FLINK_JAR`.", examples=["SPARK_SQL"]
    )
    status: Annotated[Annotated[int, Field(ge=0, le=7)] | None, BeforeValidator(_status)] = Field(
        None, description="0 draft, 1 online, 2 offline, 3 archived, 4-7 reserved."
    )
    work_directory: Annotated[Annotated[str, Field(max_length=1024)] | None, BeforeValidator(_string(1024))] = Field(
        None, description="The artefact: a file in your own area, a work root or your uploads."
    )
    main_class_name: Annotated[Annotated[str, Field(max_length=256)] | None, BeforeValidator(_string(256))] = None
    extra_params: Annotated[
        Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)] | None,
        BeforeValidator(_extra_params),
    ] = Field(None, description="A string is taken as a list of one.")
    java_version: Annotated[JavaVersion | None, BeforeValidator(enum_check(JAVA_VERSIONS))] = None
    run_frequency: Annotated[Frequency | None, BeforeValidator(enum_check(FREQUENCIES))] = None
    paused: Annotated[bool | None, BeforeValidator(_paused)] = None
    timezone: Annotated[Annotated[str, Field(max_length=64)] | None, BeforeValidator(_timezone)] = Field(
        None, description="IANA time zone of the schedule.", examples=["UTC"]
    )

    @model_validator(mode="before")
    @classmethod
    def _ignore_server_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in SERVER_FIELDS}
        return data


class WorkCreate(WorkFields):
    """``POST /api/v1/works``: ``name``, ``description``, ``type`` and ``category`` are required."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": list(REQUIRED_ON_CREATE),
            "examples": [
                {
                    "name": "daily-report",
                    "description": "counts per day",
                    "type": "BATCH",
                    "category": "SPARK_SQL",
                    "work_directory": "s3://bucket/users/alice/report.sql",
                    "run_frequency": "daily",
                }
            ],
        }
    )


class WorkUpdate(WorkFields):
    """``PATCH /api/v1/works/{work_id}``: any subset; ``name``, ``type`` and ``category`` cannot be ``null``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"description": "counts per day, UTC"}]})


def _int_param(default: int, low: int, high: int | None) -> Check:
    def check(raw: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise fail(f"{name} must be an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise fail(f"{name} must be {bound}")
        return value

    return check


class PageQuery(RequestModel):
    """``limit`` (1..100, default 10) and ``offset`` (a page number from 0, not a row)."""

    unknown_message: ClassVar[str] = "unknown query parameter {name}"

    limit: Annotated[
        Annotated[int, Field(ge=1, le=MAX_LIMIT)], BeforeValidator(_int_param(DEFAULT_LIMIT, 1, MAX_LIMIT))
    ] = DEFAULT_LIMIT
    offset: Annotated[Annotated[int, Field(ge=0)], BeforeValidator(_int_param(0, 0, None))] = Field(
        0, description="Page number: page `offset` holds rows `offset*limit .. offset*limit+limit-1`."
    )


class LenientPageQuery(PageQuery):
    """Paging where other query parameters are ignored (a work's tasks)."""

    model_config = ConfigDict(extra="ignore")


def _optional_status(raw: Any, info: ValidationInfo) -> Any:
    return _int_param(-1, 0, 7)(raw, info) if raw else None


def _optional_frequency(raw: Any, info: ValidationInfo) -> Any:
    return enum_check(FREQUENCIES)(raw, info) if raw else None


def _blank_none(raw: Any) -> Any:
    return raw or None


class WorksQuery(PageQuery):
    """``GET /api/v1/works`` (exact filters) and ``/api/v1/works/search`` (substrings, ``q``)."""

    user_id: Annotated[str | None, BeforeValidator(_blank_none)] = Field(
        None, description="Another user's id answers an empty page."
    )
    name: Annotated[str | None, BeforeValidator(_blank_none)] = None
    description: Annotated[str | None, BeforeValidator(_blank_none)] = None
    status: Annotated[Annotated[int, Field(ge=0, le=7)] | None, BeforeValidator(_optional_status)] = None
    run_frequency: Annotated[Frequency | None, BeforeValidator(_optional_frequency)] = None
    q: Annotated[str | None, BeforeValidator(_blank_none)] = Field(
        None, description="Search: a substring of name or description (list: any q matches nothing)."
    )


#: The order the hand-written checks reported query errors in: paging, unknown names, then filters.
WORKS_QUERY_ORDER = ("limit", "offset", "*", "status", "run_frequency")


class TaskStart(RequestModel):
    """``POST /api/v1/works/{work_id}/tasks``: the body is optional and its fields are not used."""

    model_config = ConfigDict(extra="allow")
