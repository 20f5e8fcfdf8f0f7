"""The rules of metering and gating (``track``, ``check``), pure over a feature's rows.

Every decision is taken on the feature as it is *now*: due resets persisted, expired
reservations given back (``reservations.rules.bring_up_to_date``) — so "check then use" and
concurrent tracks see one consistent total and can never overshoot it.

``balances`` are every live balance the request draws on: for an entity, its own and then its
customer's (``balances.allocation.draw_order``); the feature balance is their sum.
"""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from app.balances.allocation import (
    Draw,
    OverageBehavior,
    apply_draws,
    draw_order,
    plan_deduction,
)
from app.balances.resets import state_at
from app.balances.rollovers import total
from app.balances.rows import BalanceRow
from app.ledger.entries import Entry
from app.ledger.models import EntryKind

ZERO = Decimal(0)


def is_allowed(balances: Sequence[BalanceRow], required: Decimal, now: datetime) -> bool:
    """Unlimited, or enough remaining in total (carry-overs included), or overage allowed
    (with any balance at all)."""
    if not balances:
        return False
    states = [state_at(row, now) for row in balances]
    remaining = sum((state.remaining + total(state.rollovers) for state in states), ZERO)
    return (
        any(row.unlimited for row in balances)
        or remaining >= required
        or any(row.overage_allowed for row in balances)
    )


def track(
    balances: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None, now: datetime
) -> tuple[list[Draw], list[Entry]]:
    """Deduct ``value`` (negative gives back) across ``balances``, the caller's up-to-date
    copies, in draw order (an entity's own first, then its customer's, each in deduction
    order); returns the deductions and their ``track`` entries."""
    plan = plan_deduction(draw_order(balances), value, behavior)
    return plan, apply_draws(plan, EntryKind.TRACK, now)


def check_and_use(
    balances: list[BalanceRow], required: Decimal, now: datetime
) -> tuple[bool, list[Entry]]:
    """``check`` with ``send_event``: when allowed, deduct ``required`` all or nothing."""
    if not is_allowed(balances, required, now):
        return False, []
    _, entries = track(balances, required, OverageBehavior.REJECT, now)
    return True, entries
