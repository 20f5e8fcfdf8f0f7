"""How an amount is spread over a feature's balances. Pure: decides, never writes.

Deduction order (Autumn's): unlimited balances first, then shortest reset period first,
``one_off`` last, then earliest ``expires_at`` (none last), then oldest. An unlimited balance
is an infinite sink: it takes the whole amount, and the limited balances beside it are left
untouched. Giving back (a negative value) goes to the unlimited balances first too (they took
the usage), then walks the limited ones in reverse order. Locks are *not* taken in this order
but in id order (see the repository): one fixed order for every multi-row lock in the service
is what rules out deadlocks.
"""

import enum
from datetime import datetime
from decimal import Decimal

from app.balances.errors import InsufficientBalance
from app.balances.models import Interval
from app.balances.rows import BalanceRow
from app.balances.rules import check_range, record
from app.ledger.entries import Entry
from app.ledger.models import EntryKind

ZERO = Decimal(0)
_MINUTES = {
    Interval.MINUTE: 1,
    Interval.HOUR: 60,
    Interval.DAY: 1_440,
    Interval.WEEK: 10_080,
    Interval.MONTH: 43_830,
    Interval.QUARTER: 131_490,
    Interval.SEMI_ANNUAL: 262_980,
    Interval.YEAR: 525_960,
}
_NEVER = datetime.max.replace(tzinfo=None)


class OverageBehavior(enum.StrEnum):
    CAP = "cap"  # deduct only what fits (a balance with overage_allowed takes the rest)
    OVERFLOW = "overflow"  # deduct all; the first balance in order takes what is missing
    REJECT = "reject"  # deduct all or nothing (409 insufficient_balance)


def deduction_order(balances: list[BalanceRow]) -> list[BalanceRow]:
    def key(balance: BalanceRow) -> tuple[bool, float, datetime, datetime, str]:
        interval = Interval(balance.interval)
        period = float("inf") if interval is Interval.ONE_OFF else _MINUTES[interval]
        expires = balance.expires_at.replace(tzinfo=None) if balance.expires_at else _NEVER
        limited = not balance.unlimited  # False sorts first: unlimited balances lead
        return (limited, period * balance.interval_count, expires, balance.created_at, balance.id)

    return sorted(balances, key=key)


def give_back_order(ordered: list[BalanceRow]) -> list[BalanceRow]:
    """The order a give-back walks ``ordered`` (a deduction order) in: the unlimited balances
    first, as they are (they take every deduction), then the limited ones in reverse."""
    unlimited = [balance for balance in ordered if balance.unlimited]
    return unlimited + [balance for balance in reversed(ordered) if not balance.unlimited]


def plan_deduction(
    ordered: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> list[tuple[BalanceRow, Decimal]]:
    """Split ``value`` over ``ordered`` balances: ``[(balance, amount)]``, amounts non-zero.

    Each balance first gives what it has left (an unlimited one, first in deduction order,
    takes everything). What no
    balance has left (Autumn's second pass) goes whole to one balance:

    - ``overflow``: the first balance in order (the resetting, shortest-period one), whose
      debt the next reset clears;
    - otherwise the first balance that allows overage, whatever the behavior (as in Autumn,
      ``cap`` stops at zero only balances without overage); failing that, ``reject`` refuses
      the whole deduction and ``cap`` (also the default, ``None``) drops it.
    """
    if value < 0:
        return _plan_give_back(ordered, -value)
    plan: dict[str, Decimal] = {}
    left = value
    for balance in ordered:
        if left == 0:
            break
        take = left if balance.unlimited else min(left, max(balance.remaining, ZERO))
        if take > 0:
            plan[balance.id] = take
            left -= take
    if left > 0:
        if behavior is OverageBehavior.OVERFLOW:
            target = ordered[0] if ordered else None
        else:
            target = next((b for b in ordered if b.overage_allowed), None)
        if target is not None:
            plan[target.id] = plan.get(target.id, ZERO) + left
        elif behavior is OverageBehavior.REJECT:
            raise InsufficientBalance(
                f"Only {value - left} of the {value} requested is available: nothing was deducted."
            )
    by_id = {balance.id: balance for balance in ordered}
    return [(by_id[balance_id], amount) for balance_id, amount in plan.items()]


def _plan_give_back(ordered: list[BalanceRow], amount: Decimal) -> list[tuple[BalanceRow, Decimal]]:
    """Give ``amount`` back to the most recently deducted balances first, never below 0 usage."""
    plan = []
    for balance in give_back_order(ordered):
        if amount == 0:
            break
        back = min(amount, max(balance.usage, ZERO))
        if back > 0:
            plan.append((balance, -back))
            amount -= back
    return plan


def apply_usage(
    plan: list[tuple[BalanceRow, Decimal]], kind: EntryKind, now: datetime
) -> list[Entry]:
    """Add each planned amount to its balance's usage (negative gives back), one entry each.
    The rows are the caller's own copies."""
    entries = []
    for row, amount in plan:
        row.usage += amount
        check_range(row)
        entries.append(record(row, kind, now, remaining_delta=-amount, usage_delta=amount))
    return entries
