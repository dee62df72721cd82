"""Session configuration keys and defaults (pure: no pyspark, no boto3; the domain imports it too)."""

from __future__ import annotations

import os
from typing import Any

#: Seconds a session driver waits without work before it exits (marking the session stopped).
DEFAULT_IDLE_TIMEOUT_SECONDS = 600
#: Rows kept per result set; more are dropped and the set is marked ``truncated``.
DEFAULT_MAX_RESULT_ROWS = 1_000_000
#: Rows per stored page of a result set: page 0 lives in the result file, the rest beside it.
RESULT_PAGE_ROWS = 5000
#: Seconds between heartbeats written into the session item.
DEFAULT_HEARTBEAT_SECONDS = 3.0
#: Seconds between heartbeats of a driver that has been idle for a while (it writes its interval with each
#: beat; the monitor allows three of them, see ``sessions.stale_after``).
DEFAULT_HEARTBEAT_IDLE_SECONDS = 30.0
#: Rows of the first result set stored inline on the job (``result_preview``).
PREVIEW_ROWS = 100

#: Error codes written to ``error_code`` (Linkis ``errCode``).
ERR_EXECUTION, ERR_DRIVER_DIED, ERR_TIMEOUT, ERR_CANCELLED, ERR_ENGINE = 60001, 60002, 60003, 60004, 60005


def default_session_config() -> dict[str, Any]:
    """The configuration a session gets when its creator gives none."""
    return {
        "master": os.environ.get("SPARKGATE_SPARK_MASTER", "local[*]"),
        "app_name": None,
        "configs": {},
        "envs": {},
        "idle_timeout_seconds": int(os.environ.get("SPARKGATE_SESSION_IDLE_SECONDS", DEFAULT_IDLE_TIMEOUT_SECONDS)),
        "max_result_rows": int(os.environ.get("SPARKGATE_MAX_RESULT_ROWS", DEFAULT_MAX_RESULT_ROWS)),
        "heartbeat_seconds": float(os.environ.get("SPARKGATE_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS)),
        "heartbeat_idle_seconds": float(
            os.environ.get("SPARKGATE_HEARTBEAT_IDLE_SECONDS", DEFAULT_HEARTBEAT_IDLE_SECONDS)
        ),
    }


def session_config(given: dict[str, Any] | None) -> dict[str, Any]:
    """``given`` over the defaults (unknown keys kept; ``None`` values fall back to the default)."""
    merged = default_session_config()
    for key, value in (given or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def batch_driver_id(exec_id: str) -> str:
    """The session-table id of the driver record of batch job ``exec_id``."""
    return f"batch-{exec_id}"
