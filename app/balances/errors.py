"""Errors of balances and their use; each maps to one stable ``code`` and HTTP status."""

from app.core.errors import DomainError


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


class InsufficientBalance(DomainError):
    code = "insufficient_balance"
    status = 409
    title = "Insufficient balance"
