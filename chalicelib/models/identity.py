"""Token and users routes: login, user create/update, the users page."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo

from chalicelib.models.base import RequestModel, fail


def required_string(value: Any, info: ValidationInfo) -> Any:
    """A non-empty string; ``"<field> is required"`` otherwise (as the login always said)."""
    if not isinstance(value, str) or not value:
        raise fail(f"{info.field_name} is required")
    return value


Required = Annotated[str, BeforeValidator(required_string), Field(min_length=1)]


class TokenRequest(RequestModel):
    """``POST /token``: username and password for a JWT."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"username": "alice", "password": "s3cret-pass"}]},
    )

    username: Required
    password: Required


class LinkisLogin(RequestModel):
    """``POST /api/rest_j/v1/user/login`` (Linkis): ``userName`` and ``password``."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"userName": "alice", "password": "s3cret-pass"}]},
    )

    userName: Required
    password: Required


def _admin_flag(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, bool):
        raise fail(f"{info.field_name} must be true or false")
    return value


class UserCreate(RequestModel):
    """``POST /api/v1/users`` (admins): ``is_admin: true`` makes an admin."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "bob", "password": "another-pass", "is_admin": False}],
        },
    )

    username: Required
    password: Required
    is_admin: Annotated[bool, BeforeValidator(_admin_flag)] = False


#: The order the hand-written checks reported errors in: ``is_admin``, unknown fields, credentials.
USER_CREATE_ORDER = ("is_admin", "*", "username", "password")


class UserUpdate(RequestModel):
    """``PATCH /api/v1/users/{username}``: admins change ``disabled``/``is_admin``/``password``; a user
    changes only their own ``password``, proving ``current_password``. Checked by ``users.update_user``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "additionalProperties": False,
            "examples": [{"password": "a-new-password", "current_password": "s3cret-pass"}, {"disabled": True}],
        },
    )

    disabled: bool | None = None
    is_admin: bool | None = None
    password: str | None = None
    current_password: str | None = None
