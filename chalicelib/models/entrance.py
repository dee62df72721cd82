"""Linkis surface (specs 000-002): the bodies and queries the entrance routes take.

Declared for the OpenAPI document; ``chalicelib.entrance`` still checks them field by field (its
messages and Linkis status codes are the contract). Unknown fields are allowed, as Linkis allows them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LinkisModel(BaseModel):
    """Linkis bodies tolerate fields they do not know."""

    model_config = ConfigDict(extra="allow")


class ExecuteRequest(LinkisModel):
    """``POST /api/rest_j/v1/entrance/execute`` (spec 000)."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["executionCode", "runType"],
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

    executionCode: str = Field(description="The code to run.")
    runType: str = Field(description="sql, pyspark/python, scala ...", examples=["sql"])
    executeApplicationName: str | None = Field(None, examples=["spark"])
    requestApplicationName: str | None = None
    params: dict[str, Any] | None = None
    source: dict[str, Any] | None = None


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

    executionContent: dict[str, Any]
    labels: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    source: dict[str, Any] | None = None


class KillJobsRequest(LinkisModel):
    """``POST /api/rest_j/v1/entrance/{exec_id}/killJobs``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"idList": ["exec-id"], "taskIDList": [1]}]})

    idList: list[str] = Field(default_factory=list)
    taskIDList: list[int] = Field(default_factory=list)


class LogQuery(LinkisModel):
    """``GET .../entrance/{exec_id}/log``: Linkis's cursor (``fromLine`` 1-based, ``size`` <= 0 all)."""

    fromLine: int | None = None
    size: int | None = None
    distinctLevel: bool | None = None


class JobHistoryQuery(LinkisModel):
    """``GET /api/rest_j/v1/jobhistory/list``."""

    pageNow: int | None = Field(None, ge=1)
    pageSize: int | None = Field(None, ge=1)
    status: str | None = None
    taskID: int | None = None
    startDate: int | None = None
    endDate: int | None = None
    executeApplicationName: str | None = None
    creator: str | None = None
    engineTypeLabel: str | None = None


class OpenFileQuery(LinkisModel):
    """``GET /api/rest_j/v1/filesystem/openFile`` (and ``getDirFileTrees``, ``openLog``)."""

    path: str
    page: int | None = None
    pageSize: int | None = None


class PathQuery(LinkisModel):
    """A ``path`` query parameter (``getDirFileTrees``, ``openLog``, ``resultsetToExcel``)."""

    path: str


class RootPathQuery(LinkisModel):
    """``GET /api/rest_j/v1/filesystem/getUserRootPath``."""

    pathType: str | None = Field(None, examples=["file"])
