"""Errors of the write path itself."""

from app.core.errors import DomainError


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    title = "Idempotency key reused"
