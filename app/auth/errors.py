"""Errors of authentication and API keys."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from app.core.errors import DomainError


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"
    headers: ClassVar[Mapping[str, str] | None] = MappingProxyType({"WWW-Authenticate": "Bearer"})


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class ApiKeyNotFound(DomainError):
    code = "api_key_not_found"
    status = 404
    title = "API key not found"
