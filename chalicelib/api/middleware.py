"""App-wide middleware: a request id on every log line and response, the CORS headers of the allow-list."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from chalice import Chalice
from chalice.app import Request

from chalicelib.api import cors
from chalicelib.observability import logger


def register_middleware(app: Chalice) -> None:
    """Attach the logging middleware to every HTTP route of ``app``."""

    @app.middleware("http")  # type: ignore[untyped-decorator]
    def log_context(event: Request, get_response: Callable[[Request], Any]) -> Any:
        request_id = event.context.get("requestId") or uuid.uuid4().hex
        logger.append_keys(request_id=request_id, path=event.context.get("resourcePath"), method=event.method)
        try:
            response = get_response(event)
            logger.info("request", extra={"status": response.status_code})
            response.headers["X-Request-Id"] = request_id
            response.headers.update(cors.headers_for(event.headers.get("origin")))  # SPARKGATE_CORS_ORIGINS
            return response
        finally:
            logger.remove_keys(["request_id", "path", "method"])
