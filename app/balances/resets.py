"""When a balance resets, and what it looks like at a given instant. Pure: no clock, no database.

A resetting balance whose ``next_reset_at`` is at or before *now* is due: its ``usage`` and
``adjustment`` go to zero (so ``remaining = included_grant``) and ``next_reset_at`` jumps to the
first boundary after now, however many periods were missed. Reads apply this on the fly to what
they show; writes persist it (with a ``reset`` ledger entry) before their own change.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.balances.models import Interval
from app.balances.periods import first_boundary_after
from app.balances.rows import BalanceRow

ZERO = Decimal(0)


def due_reset(balance: BalanceRow, now: datetime) -> datetime | None:
    """The ``next_reset_at`` the balance moves to if a reset is due at ``now``, else ``None``."""
    if balance.next_reset_at is None or balance.next_reset_at > now:
        return None
    anchor = balance.reset_anchor_at or balance.next_reset_at
    return first_boundary_after(anchor, Interval(balance.interval), balance.interval_count, now)


@dataclass(frozen=True, slots=True)
class BalanceState:
    """The amounts and schedule of a balance as they truly are at one instant."""

    included_grant: Decimal
    prepaid_grant: Decimal
    adjustment: Decimal
    usage: Decimal
    next_reset_at: datetime | None

    @property
    def granted(self) -> Decimal:
        return self.included_grant + self.prepaid_grant + self.adjustment

    @property
    def remaining(self) -> Decimal:
        return self.granted - self.usage


def state_at(balance: BalanceRow, now: datetime) -> BalanceState:
    """What a read shows: the stored row with any due reset applied, without writing anything."""
    next_reset_at = due_reset(balance, now)
    if next_reset_at is None:
        return BalanceState(
            balance.included_grant,
            balance.prepaid_grant,
            balance.adjustment,
            balance.usage,
            balance.next_reset_at,
        )
    return BalanceState(balance.included_grant, balance.prepaid_grant, ZERO, ZERO, next_reset_at)
