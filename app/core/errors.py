"""Typed domain errors. Services raise these; one handler in ``app.core.problems`` renders them.

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


class AmountOutOfRange(DomainError):
    code = "amount_out_of_range"
    status = 422
    title = "Amount out of range"


class BalanceNotFound(DomainError):
    code = "balance_not_found"
    status = 404
    title = "Balance not found"


class BalanceExists(DomainError):
    code = "balance_exists"
    status = 409
    title = "Balance already exists"


class AmbiguousBalance(DomainError):
    code = "ambiguous_balance"
    status = 409
    title = "Several balances match"


class BalanceUnlimited(DomainError):
    code = "balance_unlimited"
    status = 409
    title = "Balance is unlimited"


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    status = 422
    title = "Invalid cursor"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class InsufficientBalance(DomainError):
    code = "insufficient_balance"
    status = 409
    title = "Insufficient balance"


class LockExists(DomainError):
    code = "lock_exists"
    status = 409
    title = "Lock already exists"


class LockNotFound(DomainError):
    code = "lock_not_found"
    status = 404
    title = "Lock not found"


class AmbiguousLock(DomainError):
    code = "ambiguous_lock"
    status = 409
    title = "Several locks match"


class LockNotActive(DomainError):
    code = "lock_not_active"
    status = 409
    title = "Lock is not active"


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


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    title = "Idempotency key reused"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class ServiceUnavailable(DomainError):
    """The database could not serve the request in time; safe to retry (nothing was applied)."""

    status = 503
    title = "Service unavailable"
    headers: ClassVar[Mapping[str, str] | None] = MappingProxyType({"Retry-After": "1"})

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
