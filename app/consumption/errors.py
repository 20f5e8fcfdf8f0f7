"""Errors of metering and gating."""

from app.core.errors import DomainError


class ItemFailed(DomainError):
    """An item of ``balances.batch_track`` hit a bug: it alone fails (the others still apply),
    and it changed nothing. The details go to the log."""

    code = "internal_error"
    status = 500
    title = "Internal error"
