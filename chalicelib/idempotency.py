"""``Idempotency-Key`` support: a retried request returns the first request's answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from chalicelib.errors import BadRequest, Conflict
from chalicelib.store.idempotency import persistence_layer
from chalicelib.tokens import Principal

T = TypeVar("T")
KEY_TTL_SECONDS = 24 * 3600

_CONFIG = IdempotencyConfig(
    event_key_jmespath="[user, scope, key]",
    payload_validation_jmespath="body",
    expires_after_seconds=KEY_TTL_SECONDS,
    raise_on_no_idempotency_key=True,
)


def once_per_key(principal: Principal, key: str | None, scope: str, body: Any, action: Callable[[], T]) -> T:
    """Run ``action`` once per (user, scope, key); repeats answer the stored result for 24 hours.

    Without a key the action simply runs. Reusing a key with a different body is a 409.
    """
    if key is None:
        return action()
    if not key.strip() or len(key) > 128:
        raise BadRequest("Idempotency-Key must be 1-128 characters", field="Idempotency-Key")

    def run(request: dict[str, Any]) -> T:
        return action()

    guarded = idempotent_function(
        data_keyword_argument="request",
        persistence_store=persistence_layer(),
        config=_CONFIG,
        key_prefix=f"sparkgate.{scope}",
    )(run)
    try:
        result: T = guarded(request={"user": principal.user_id, "scope": scope, "key": key, "body": body})
    except IdempotencyValidationError as err:
        raise Conflict("Idempotency-Key was already used with a different request body") from err
    except IdempotencyAlreadyInProgressError as err:
        raise Conflict("a request with this Idempotency-Key is still in progress; retry shortly") from err
    return result
