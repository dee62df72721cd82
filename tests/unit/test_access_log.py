"""The local stack's HTTP access log never writes a query string (URLs may carry a token or a path)."""

from __future__ import annotations

from typing import Any


def test_the_access_line_has_no_query_string() -> None:
    from chalicelib.local.stack import _NoDelayHandler

    handler = object.__new__(_NoDelayHandler)
    handler.command, handler.path = "GET", "/api/rest_j/v1/filesystem/openFile?path=s3://b/x&token=secret-jwt"
    lines: list[str] = []

    def capture(fmt: str, *args: Any) -> None:
        lines.append(fmt % args)

    handler.log_message = capture  # type: ignore[method-assign]
    handler.log_request(200, 17)
    assert lines == ['"GET /api/rest_j/v1/filesystem/openFile" 200 17']
