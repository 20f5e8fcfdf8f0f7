"""Errors of reservations (locks taken by check, settled by finalize)."""

from app.core.errors import DomainError


class LockExists(DomainError):
    code = "lock_exists"
    status = 409
    title = "Lock already exists"


class LockNotFound(DomainError):
    code = "lock_not_found"
    status = 404
    title = "Lock not found"


class LockNotActive(DomainError):
    code = "lock_not_active"
    status = 409
    title = "Lock is not active"
