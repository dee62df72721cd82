"""The one exception family of sparkgate.

Domain and store code raise these; each surface's dialect (see ``dialects.py``) maps them to
its own envelope and HTTP status in one place.
"""

from __future__ import annotations


class SparkgateError(Exception):
    """Base of every error a caller may see. ``code`` is the works API business code."""

    http_status: int = 500
    code: int = 500100
    linkis_status: int = 1

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(SparkgateError):
    """The request is malformed: invalid JSON, a wrong type, an unknown value."""

    http_status = 400
    code = 400100
    linkis_status = 1


class ValidationFailed(BadRequest):
    """A field is well-formed but fails validation (Linkis status 2, HTTP 412 on that surface)."""

    code = 400101
    linkis_status = 2


class Unauthorized(SparkgateError):
    """No credentials, or credentials that are not valid."""

    http_status = 401
    code = 401100
    linkis_status = -1


class Forbidden(SparkgateError):
    """Authenticated, but not allowed to do this."""

    http_status = 403
    code = 403100
    linkis_status = 3


class NotFound(SparkgateError):
    """The resource does not exist (or belongs to someone else, which callers cannot tell apart)."""

    http_status = 404
    code = 404100
    linkis_status = 1


class Conflict(SparkgateError):
    """The change clashes with the current state (a duplicate name, an active task)."""

    http_status = 409
    code = 409100
    linkis_status = 1


class VersionConflict(Conflict):
    """The caller's ``If-Match`` version is stale: someone else changed the resource first."""

    code = 409101


class StateConflict(Conflict):
    """The resource's state forbids the change (e.g. deleting a work with an active task)."""

    code = 409102


class QuotaExceeded(SparkgateError):
    """A per-user cap is reached (live sessions, queued and running Jobs): retry once one of yours ended.

    HTTP 429 on every surface (the works envelope's code 429100; Linkis status 1; the geo envelope
    with code 429), like 503 a "not now" rather than a malformed request.
    """

    http_status = 429
    code = 429100
    linkis_status = 1


class TooManyRequests(SparkgateError):
    """Too many failed logins for this username or source address: retry after ``retry_after`` seconds.

    HTTP 429 with ``Retry-After`` on every surface (works code 429101, Linkis status 1, geo code 429).
    """

    http_status = 429
    code = 429101
    linkis_status = 1

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after))


class Unavailable(SparkgateError):
    """A dependency (the engine, the runner) cannot take the request right now."""

    http_status = 503
    code = 503100
    linkis_status = 1


class InternalError(SparkgateError):
    """An unexpected failure; details are logged, not returned."""
