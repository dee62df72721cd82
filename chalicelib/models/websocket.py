"""The WebSocket protocol (docs/websocket.md): every frame as a model, for docs/asyncapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.models.entrance import ExecuteRequest, SubmitRequest

JobStatus = Literal["Inited", "WaitForRetry", "Scheduled", "Running", "Succeed", "Failed", "Cancelled", "Timeout"]


class RequestFrame(BaseModel):
    """A client frame (``$default``): ``method`` names the call, ``data`` its body."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "method": "/api/rest_j/v1/entrance/execute",
                    "data": {"executionCode": "select 1", "runType": "sql"},
                    "websocketTag": "37fcbd8b",
                },
                {"method": "/api/rest_j/v1/entrance/exec-id/log", "data": {"fromLine": 1, "size": 100}},
            ]
        },
    )

    method: str = Field(
        description="/api/rest_j/v1/entrance/execute | submit | {execID}/status | progress | log | kill | "
        "subscribe | unsubscribe",
        pattern=r"^/api/rest_j/v1/entrance/",
    )
    data: dict[str, Any] | ExecuteRequest | SubmitRequest | None = None
    websocketTag: str | int | None = Field(None, description="Echoed (as a string, up to 256 characters).")


class JobRef(BaseModel):
    """``{execID, taskID}`` (execute/submit answers)."""

    execID: str
    taskID: int


class StatusData(JobRef):
    """``status`` and ``kill`` answers, ``subscribe`` answers and ``status`` pushes."""

    status: JobStatus


class ProgressData(JobRef):
    """``progress`` answers and pushes."""

    progress: float = Field(ge=0, le=1)
    progressInfo: list[dict[str, Any]]


class LogData(JobRef):
    """``log`` answers and pushes: ``[error, warn, info, all]`` and the cursor to resume from."""

    log: list[str] | str = Field(description="[error, warn, info, all]; one string with distinctLevel=false")
    fromLine: int


class WaitingSizeData(JobRef):
    """``waitingSize`` pushes while a Job waits in its session's queue."""

    waitingSize: int = Field(ge=0, description="Jobs ahead of this one in its session's queue (0: it runs next).")


class UnsubscribeData(BaseModel):
    """``unsubscribe`` answers."""

    execID: str


class AnswerFrame(BaseModel):
    """Every server frame: the Linkis envelope plus ``websocketTag``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "method": "/api/rest_j/v1/entrance/exec-id/status",
                    "status": 0,
                    "message": "status",
                    "data": {"execID": "exec-id", "taskID": 7, "status": "Running"},
                    "websocketTag": "37fcbd8b",
                }
            ]
        }
    )

    method: str
    status: int = Field(
        description="0 OK; 1 bad frame/unknown Job; 2 data not an object; -1 not logged in; 3 other user"
    )
    message: str
    data: JobRef | StatusData | ProgressData | LogData | WaitingSizeData | UnsubscribeData | dict[str, Any] | None
    websocketTag: str | None = None


class ErrorFrame(AnswerFrame):
    """A refused frame (the socket stays open); ``data.errorType`` names the error."""

    data: dict[str, Any] | None  # type: ignore[assignment]


FRAMES: dict[str, type[BaseModel]] = {
    "RequestFrame": RequestFrame,
    "AnswerFrame": AnswerFrame,
    "ErrorFrame": ErrorFrame,
    "StatusData": StatusData,
    "ProgressData": ProgressData,
    "LogData": LogData,
    "WaitingSizeData": WaitingSizeData,
}
