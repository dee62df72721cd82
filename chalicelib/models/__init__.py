"""Typed request models (pydantic v2): every HTTP route's body and query parameters, declared once.

The handlers validate with :func:`parse`; the OpenAPI document (``chalicelib.openapi``) is generated
from the same classes. Validators raise :func:`fail` with the exact message sparkgate always answered
(``"name must be at most 128 characters"``), so the error envelopes, business codes and messages that
name the field are unchanged; :func:`parse` turns the first error into :class:`BadRequest`.
"""

from __future__ import annotations

from chalicelib.models.base import RequestModel, fail, parse

__all__ = ["RequestModel", "fail", "parse"]
