"""Properties of drawing on balances that carry over (``app.balances.allocation``): pure, one
fixed ``now``. Carry-overs are spent first, soonest-expiring first, and every unit drawn is in
the ledger exactly once."""

from copy import copy
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from app.balances.allocation import OverageBehavior, apply_draws, draw_order, plan_deduction
from app.balances.errors import InsufficientBalance
from app.balances.rollovers import spending_key, total
from app.balances.rows import BalanceRow
from app.ledger.models import EntryKind
from tests.balances.test_rules import FEWER, NOW, ZERO, assert_ledger_of, balance_rows
from tests.consumption.test_rules import up_to_date as caught_up

ROWS = st.lists(
    balance_rows(ids=st.sampled_from(["bal_a", "bal_b", "bal_c"]), version=st.just(3)),
    max_size=3,
    unique_by=lambda row: row.id,
)
VALUES = st.integers(-30, 120).map(Decimal)
BEHAVIORS = st.sampled_from([None, *OverageBehavior])


def up_to_date(rows: list[BalanceRow]) -> list[BalanceRow]:
    """The live balances, as a command hands them to the rules (caught up to ``NOW``)."""
    return [row for row in caught_up(rows) if not row.is_expired(NOW)]


@FEWER
@given(ROWS, VALUES, BEHAVIORS)
def test_carry_overs_are_spent_first_and_every_draw_is_in_the_ledger(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    before = up_to_date(rows)
    work = [copy(row) for row in before]
    try:
        draws = plan_deduction(draw_order(work), value, behavior)
    except InsufficientBalance:
        assert behavior is OverageBehavior.REJECT
        return
    entries = apply_draws(draws, EntryKind.TRACK, NOW)
    for old, new in zip(before, work, strict=True):
        assert_ledger_of(old, [e for e in entries if e.balance_id == old.id], new)
        assert all(t.remaining >= 0 for t in new.rollovers)  # never below nothing
    spent = [d for d in draws if d.rollover is not None]
    if value <= 0 or any(row.unlimited for row in before):
        assert spent == []  # a give-back never refills one; a sink leaves them alone
        return
    # The balances' own amounts are touched only once every carry-over is spent.
    untouched = total(t for row in work for t in row.rollovers)
    if any(d.rollover is None for d in draws):
        assert untouched == 0
    # Among one customer's carry-overs, a later-expiring one is touched only once every
    # sooner-expiring one is empty.
    tranches = sorted((t for row in work for t in row.rollovers), key=spending_key)
    drawn = {(d.balance.id, d.rollover) for d in spent}
    by_key = {
        (row.id, t.period): t for row in work for t in row.rollovers if (row.id, t.period) in drawn
    }
    for tranche in by_key.values():
        sooner = [t for t in tranches if spending_key(t) < spending_key(tranche)]
        assert all(t.remaining == 0 for t in sooner)
    assert (
        sum((d.amount for d in draws), ZERO)
        >= total(t for row in before for t in row.rollovers) - untouched
    )
