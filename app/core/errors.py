"""The base of every typed error, and the errors that belong to no domain. Each domain package
owns its own (``app/balances/errors.py``…); one handler in ``app.core.problems`` renders them all.

Each error carries a stable machine-readable ``code`` (part of the wire contract: clients branch on
it) and the HTTP status it maps to, so the mapping lives in exactly one place.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar


class DomainError(Exception):
    code: str = "error"
    status: int = 400
    title: str = "Request failed"

    headers: ClassVar[Mapping[str, str] | None] = None

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidRequest(DomainError):
    code = "invalid_request"
    status = 422
    title = "Invalid request"

    def __init__(self, message: str, *fields: str) -> None:
        """``fields``: the request fields at fault, listed in ``errors`` like a schema error."""
        super().__init__(
            message, errors=[{"loc": field.split("."), "msg": message} for field in fields]
        )


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    status = 422
    title = "Invalid cursor"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class ServiceUnavailable(DomainError):
    """The database could not serve the request in time; safe to retry (nothing was applied)."""

    status = 503
    title = "Service unavailable"
    # Every code this error is raised with, and what it means (the OpenAPI document lists them).
    CODES: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "lock_timeout": "a balance stayed locked by another request for too long",
            "statement_timeout": "the database took too long to answer",
            "serialization_failure": "a concurrent change conflicted with this request",
            "deadlock_detected": "a concurrent change conflicted with this request",
            "write_conflict": "a concurrent change conflicted with this request",
            "database_unavailable": "the database is unreachable",
            "database_busy": "no database connection was free in time",
            "database_error": "the database refused the change",
            "outcome_unknown": "the connection was lost during COMMIT: the change may or may "
            "not have been applied; a retry with the same Idempotency-Key tells which",
        }
    )
    headers: ClassVar[Mapping[str, str] | None] = MappingProxyType({"Retry-After": "1"})

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
