"""When a balance resets, and what it looks like at a given instant. Pure: no clock, no database.

A resetting balance whose ``next_reset_at`` is at or before *now* is due: its ``usage`` and
``adjustment`` go to zero (so ``remaining = included_grant``) and ``next_reset_at`` jumps to the
first boundary after now, however many periods were missed. With a rollover policy, what was
left carries over first (once, however many periods were missed), and carry-overs past their
expiry drop out. Reads apply this on the fly to what they show; writes persist it (with ledger
entries) before their own change. Both go through ``catch_up``, so they cannot disagree.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.balances.models import Interval
from app.balances.periods import first_boundary_after
from app.balances.rollovers import Tranches, carry_over, drop_expired
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
    rollovers: Tranches

    @property
    def granted(self) -> Decimal:
        return self.included_grant + self.prepaid_grant + self.adjustment

    @property
    def remaining(self) -> Decimal:
        return self.granted - self.usage


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What time alone does to a balance by ``now``: carry-overs expire, a due reset happens."""

    rollovers: Tranches  # live at ``now``, carry-over of a due reset included
    expired: Decimal  # what the carry-overs that expired still held
    next_reset_at: datetime | None  # where a due reset moves the schedule; None: none is due
    carried: Decimal = ZERO
    trimmed: Decimal = ZERO
    untrimmed: Tranches = ()  # the carry-over made, before the cap trimmed


def catch_up(balance: BalanceRow, now: datetime) -> CatchUp:
    live, expired = drop_expired(balance.rollovers, now)
    next_reset_at = due_reset(balance, now)
    if next_reset_at is None or balance.rollover is None or balance.unlimited:
        return CatchUp(live, expired, next_reset_at)
    assert balance.next_reset_at is not None  # due_reset found it due
    untrimmed, rollovers, carried, trimmed = carry_over(
        live,
        balance.rollover,
        left=balance.remaining,
        period=balance.reset_count + 1,
        reset_at=balance.next_reset_at,
        per_period_grant=balance.included_grant + balance.prepaid_grant,
        now=now,
    )
    return CatchUp(rollovers, expired, next_reset_at, carried, trimmed, untrimmed)


def state_at(balance: BalanceRow, now: datetime) -> BalanceState:
    """What a read shows: the stored row with time caught up (``catch_up``), writing nothing."""
    caught_up = catch_up(balance, now)
    if caught_up.next_reset_at is None:
        return BalanceState(
            balance.included_grant,
            balance.prepaid_grant,
            balance.adjustment,
            balance.usage,
            balance.next_reset_at,
            caught_up.rollovers,
        )
    return BalanceState(
        balance.included_grant,
        balance.prepaid_grant,
        ZERO,
        ZERO,
        caught_up.next_reset_at,
        caught_up.rollovers,
    )
