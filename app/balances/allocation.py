"""How an amount is spread over a feature's balances. Pure: decides, never writes.

Deduction order (Autumn's): unlimited balances first, then shortest reset period first,
``one_off`` last, then earliest ``expires_at`` (none last), then oldest. An unlimited balance
is an infinite sink: it takes the whole amount, and the limited balances beside it are left
untouched. Without one, carry-overs (``rollovers``) are spent before any balance's own amount,
soonest-expiring first. Giving back (a negative value) goes to the unlimited balances first too
(they took the usage), then walks the limited ones in reverse order; it never refills a
carry-over (as in Autumn). Locks are *not* taken in this order
but in id order (see the repository): one fixed order for every multi-row lock in the service
is what rules out deadlocks.
"""

import enum
from copy import copy
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.balances.errors import InsufficientBalance
from app.balances.models import Interval
from app.balances.rollovers import Tranche, spend, spending_key
from app.balances.rows import BalanceRow
from app.balances.rules import Change, catch_up, check_range, delete, record
from app.core.errors import InvalidRequest
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


@dataclass(frozen=True, slots=True)
class Draw:
    """``amount`` taken from ``balance`` (negative: given back): from its own usage, or from its
    carry-over numbered ``rollover``."""

    balance: BalanceRow
    amount: Decimal
    rollover: int | None = None


def per_balance(draws: list[Draw]) -> list[tuple[BalanceRow, Decimal]]:
    """What each balance gave in all, in the order of the draws (for answers)."""
    totals: dict[str, tuple[BalanceRow, Decimal]] = {}
    for draw in draws:
        _, before = totals.get(draw.balance.id, (draw.balance, ZERO))
        totals[draw.balance.id] = (draw.balance, before + draw.amount)
    return list(totals.values())


def deduction_order(balances: list[BalanceRow]) -> list[BalanceRow]:
    def key(balance: BalanceRow) -> tuple[bool, float, datetime, datetime, str]:
        interval = Interval(balance.interval)
        period = float("inf") if interval is Interval.ONE_OFF else _MINUTES[interval]
        expires = balance.expires_at.replace(tzinfo=None) if balance.expires_at else _NEVER
        limited = not balance.unlimited  # False sorts first: unlimited balances lead
        return (limited, period * balance.interval_count, expires, balance.created_at, balance.id)

    return sorted(balances, key=key)


def draw_order(balances: list[BalanceRow]) -> list[BalanceRow]:
    """The order a scope uses ``balances`` in: an entity's own balances first, then the
    customer-level ones (its fallback pool), each group in deduction order; an unlimited
    balance leads whichever group it is in (a sink takes everything). Track, check, reserve
    and confirm use it, and a delete that moves usage draws on the survivors as a track of that
    scope would."""
    own = [balance for balance in balances if balance.entity_id is not None]
    pool = [balance for balance in balances if balance.entity_id is None]
    ordered = deduction_order(own) + deduction_order(pool)
    sink = next((i for i, balance in enumerate(ordered) if balance.unlimited), None)
    if sink is not None:
        ordered.insert(0, ordered.pop(sink))
    return ordered


def give_back_order(ordered: list[BalanceRow]) -> list[BalanceRow]:
    """The order a give-back walks ``ordered`` (a deduction order) in: the unlimited balances
    first, as they are (they take every deduction), then the limited ones in reverse."""
    unlimited = [balance for balance in ordered if balance.unlimited]
    return unlimited + [balance for balance in reversed(ordered) if not balance.unlimited]


def plan_deduction(
    ordered: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> list[Draw]:
    """Split ``value`` over ``ordered`` balances (a draw order): the draws, amounts non-zero.

    Carry-overs give first (``carry_overs``), unless an unlimited balance (first in order) takes
    everything. Then each balance gives what it has left. What no balance has left (Autumn's
    second pass) goes whole to one balance:

    - ``overflow``: the first balance in order (the resetting, shortest-period one), whose
      debt the next reset clears;
    - otherwise the first balance that allows overage, whatever the behavior (as in Autumn,
      ``cap`` stops at zero only balances without overage); failing that, ``reject`` refuses
      the whole deduction and ``cap`` (also the default, ``None``) drops it.
    """
    if value < 0:
        return _plan_give_back(ordered, -value)
    plan: dict[tuple[str, int | None], Decimal] = {}
    left = value
    if not any(balance.unlimited for balance in ordered):
        for balance, tranche in carry_overs(ordered):
            take = min(left, tranche.remaining)
            if take > 0:
                plan[balance.id, tranche.period] = take
                left -= take
    for balance in ordered:
        if left == 0:
            break
        take = left if balance.unlimited else min(left, max(balance.remaining, ZERO))
        if take > 0:
            plan[balance.id, None] = take
            left -= take
    if left > 0:
        if behavior is OverageBehavior.OVERFLOW:
            target = ordered[0] if ordered else None
        else:
            target = next((b for b in ordered if b.overage_allowed), None)
        if target is not None:
            plan[target.id, None] = plan.get((target.id, None), ZERO) + left
        elif behavior is OverageBehavior.REJECT:
            raise InsufficientBalance(
                f"Only {value - left} of the {value} requested is available: nothing was deducted."
            )
    by_id = {balance.id: balance for balance in ordered}
    return [
        Draw(by_id[balance_id], amount, period) for (balance_id, period), amount in plan.items()
    ]


def carry_overs(ordered: list[BalanceRow]) -> list[tuple[BalanceRow, Tranche]]:
    """The carry-overs of ``ordered`` balances in the order they are spent: all together
    (an entity's and its customer's alike, as Autumn), soonest-expiring first; among equals,
    in the balances' draw order."""
    pairs = [(balance, tranche) for balance in ordered for tranche in balance.rollovers]
    return sorted(pairs, key=lambda pair: spending_key(pair[1]))


def _plan_give_back(ordered: list[BalanceRow], amount: Decimal) -> list[Draw]:
    """Give ``amount`` back to the most recently deducted balances first, never below 0 usage."""
    plan = []
    for balance in give_back_order(ordered):
        if amount == 0:
            break
        back = min(amount, max(balance.usage, ZERO))
        if back > 0:
            plan.append(Draw(balance, -back))
            amount -= back
    return plan


def apply_draws(draws: list[Draw], kind: EntryKind, now: datetime) -> list[Entry]:
    """Take each draw from its balance (the caller's own copy): from its usage (a negative
    amount gives back) or from the carry-over it names; one entry each."""
    entries = []
    for draw in draws:
        row = draw.balance
        if draw.rollover is None:
            row.usage += draw.amount
            check_range(row)
            entries.append(
                record(row, kind, now, remaining_delta=-draw.amount, usage_delta=draw.amount)
            )
        else:
            row.rollovers = spend(row.rollovers, draw.rollover, draw.amount)
            entries.append(record(row, kind, now, rollover_delta=-draw.amount))
    return entries


def delete_moving_usage(target: BalanceRow, others: list[BalanceRow], now: datetime) -> Change:
    """``balances.delete`` with ``recalculate_balances`` (Autumn's rule): close ``target`` and
    move its usage onto the balances that survive it.

    ``others``: every locked balance its scope draws on (for an entity balance, the entity's
    and its customer's). The survivors are the live ones besides ``target``; due resets are
    persisted first, on all of them. The usage ``target`` has now (none if it has expired: it
    no longer counts) is deducted from them in draw order as Autumn's ``allow`` does: each
    takes what it has left, and the rest lands on the first one (``overflow``), one ``track``
    entry each. A negative usage is given back instead. With usage to move and no survivor,
    there is nowhere to keep it: 422, nothing changes (Autumn keeps the deleted balance alive
    as a grant-less carrier of that usage instead).
    """
    change = delete(target, now)
    [closed] = change.deleted
    usage = ZERO if target.is_expired(now) else closed.usage  # after a due reset
    survivors = []
    for row in draw_order([r for r in others if r.id != target.id and not r.is_expired(now)]):
        row = copy(row)
        change.entries += catch_up(row, now)
        survivors.append(row)
    if usage != 0 and not survivors:
        where = f"entity '{target.entity_id}' or its customer" if target.entity_id else "customer"
        raise InvalidRequest(
            f"recalculate_balances: no other live balance of feature '{target.feature_id}' for "
            f"the {where} can take the {usage} used on balance '{target.id}'. Delete without "
            "recalculate_balances, or first create the balance that should carry it.",
            "recalculate_balances",
        )
    plan = plan_deduction(survivors, usage, OverageBehavior.OVERFLOW)
    change.entries += apply_draws(plan, EntryKind.TRACK, now)
    change.saved += survivors
    return change
