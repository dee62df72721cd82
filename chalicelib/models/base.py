"""Shared machinery: a strict base model and the error mapping onto :class:`BadRequest`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import wraps
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from chalicelib.errors import BadRequest

#: The error type of a sparkgate-worded failure (the message is answered as it is).
SPARKGATE_ERROR = "sparkgate"
#: Placeholder in an error order for "an unknown field" (pydantic's ``extra_forbidden``).
EXTRA = "*"

M = TypeVar("M", bound="RequestModel")


class RequestModel(BaseModel):
    """A request body or a set of query parameters: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: How an unknown field is worded (``{name}`` is the field).
    unknown_message: ClassVar[str] = "unknown field {name}"


def fail(message: str) -> PydanticCustomError:
    """An error to raise from a validator: answered verbatim as the 400's message."""
    return PydanticCustomError(SPARKGATE_ERROR, "{message}", {"message": message})


F = TypeVar("F", bound=Callable[..., Any])
#: what the store (DynamoDB) holds: numbers of at most 38 digits within 1e-130..1e125, maps and lists
#: nested at most 32 levels (the item is one: a field gets 30)
MAX_DIGITS, MIN_EXPONENT, MAX_EXPONENT, MAX_DEPTH = 38, -130, 125, 30


def storable(value: Any, field: str, depth: int = 0) -> Any:
    """``value`` (parsed JSON) if the store can keep it as given; otherwise BadRequest naming ``field``."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"{field} nests deeper than {MAX_DEPTH} levels", field=field)
    if isinstance(value, dict):
        for item in value.values():
            storable(item, field, depth + 1)
    elif isinstance(value, list):
        for item in value:
            storable(item, field, depth + 1)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if number.is_finite() and (
            number.is_zero()
            or (len(number.as_tuple().digits) <= MAX_DIGITS and MIN_EXPONENT <= number.adjusted() <= MAX_EXPONENT)
        ):
            return value
        raise BadRequest(
            f"{field} holds a number that cannot be stored ({value!r:.40}): at most {MAX_DIGITS} digits, "
            f"magnitude 1e{MIN_EXPONENT} to 1e{MAX_EXPONENT}",
            field=field,
        )
    return value


def worded(check: F) -> F:
    """A validator from a domain check that raises :class:`BadRequest`: its message becomes the field's
    error (answered verbatim); any other error (NotFound, Forbidden...) passes through unchanged."""

    @wraps(check)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except BadRequest as err:
            if type(err) is not BadRequest:
                raise
            raise fail(err.message) from None

    return run  # type: ignore[return-value]


def _message(model: type[RequestModel], error: Mapping[str, Any]) -> tuple[str, str | None]:
    loc = error.get("loc") or ()
    field = str(loc[0]) if loc else None
    kind = error.get("type")
    if kind == "extra_forbidden" and field is not None:
        return model.unknown_message.format(name=field), field
    if kind == SPARKGATE_ERROR:
        return str((error.get("ctx") or {}).get("message") or error.get("msg")), field
    if kind == "missing" and field is not None:
        return f"{field} is required", field
    if field is not None:
        return f"{field} is invalid: {error.get('msg')}", field
    return str(error.get("msg")), None


def parse(
    model: type[M],
    data: Mapping[str, Any],
    *,
    order: Sequence[str] | None = None,
    sort_unknown: bool = False,
    context: Mapping[str, Any] | None = None,
) -> M:
    """``data`` validated as ``model``; the first failure as :class:`BadRequest` naming the field.

    ``order`` ranks the fields (``EXTRA`` for unknown ones) so the error reported first is the one the
    hand-written checks reported first; by default the order of ``data``'s keys (a body's order).
    ``sort_unknown`` reports the alphabetically first of several unknown fields. ``context`` reaches the
    validators (``info.context``: e.g. the caller, for checks of paths in their own area)."""
    try:
        return model.model_validate(dict(data), context=dict(context) if context is not None else None)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        rank = list(order) if order is not None else list(data)

        def position(error: Any) -> tuple[int, str]:
            loc = error.get("loc") or ()
            name = str(loc[0]) if loc else ""
            extra = error.get("type") == "extra_forbidden"
            tie = name if extra and sort_unknown else ""
            if name in rank and not (extra and EXTRA in rank):
                return rank.index(name), tie
            if extra and EXTRA in rank:
                return rank.index(EXTRA), tie
            return len(rank), tie

        message, field = _message(model, min(errors, key=position))
        raise BadRequest(message, field=field) from None
