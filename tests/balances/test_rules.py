"""Properties of the pure balance rules (``app.balances.rules``): no database, one fixed ``now``.

Every rule must keep the ledger closed (the deltas of a balance's entries add up to its
remaining, and to 0 once deleted), count versions 1, 2, 3… without gaps, and never change the
rows it is given, whether it succeeds or raises.
"""

from copy import copy, deepcopy
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.balances.allocation import deduction_order, delete_moving_usage
from app.balances.errors import (
    AmbiguousBalance,
    AmountOutOfRange,
    BalanceExists,
    BalanceNotFound,
    BalanceUnlimited,
)
from app.balances.models import Interval
from app.balances.periods import boundary
from app.balances.resets import due_reset, state_at
from app.balances.rollovers import RolloverPolicy, Tranche, total
from app.balances.rows import BalanceRow
from app.balances.rules import (
    Update,
    catch_up,
    check_range,
    choose_target,
    create,
    delete,
    record,
    update,
)
from app.balances.schemas import Balance, FeatureAmounts
from app.core.errors import InvalidRequest
from app.core.types import QUANTITY_LIMIT
from app.ledger.entries import Entry
from app.ledger.models import EntryKind

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ZERO = Decimal(0)
DAY = 86_400
EXAMPLES = settings(max_examples=200, deadline=None)
FEWER = settings(max_examples=150, deadline=None)  # for lists of rows
sometimes = st.integers(0, 3).map(lambda n: n == 0)  # true one time in four


def fractional(magnitude: int) -> st.SearchStrategy[Decimal]:
    """Exact quantities with 9 decimal places and ``|x| < magnitude``."""
    bound = magnitude * 10**9 - 1
    return st.integers(-bound, bound).map(lambda n: Decimal(n).scaleb(-9))


def amounts(magnitude: int = 10**12) -> st.SearchStrategy[Decimal]:
    """Small whole numbers (so balances often run out exactly) or any exact quantity."""
    return st.one_of(st.integers(-50, 50).map(Decimal), fractional(magnitude))


# Request amounts may come near the wire limit (10^15), to reach ``AmountOutOfRange``.
near_limit = st.integers(10**15 - 10**13, 10**15 - 1).map(Decimal)
request_amounts = st.one_of(amounts(), fractional(10**15), near_limit, near_limit.map(lambda d: -d))


def offsets(low_seconds: int, high_seconds: int) -> st.SearchStrategy[datetime]:
    return st.integers(low_seconds, high_seconds).map(lambda s: NOW + timedelta(seconds=s))


# Strategies are built once: building them inside a composite costs more than drawing.
AMOUNTS = amounts()
PREPAID = st.just(ZERO) | AMOUNTS
INTERVALS = st.sampled_from(Interval)
COUNTS = st.integers(1, 3)
ANCHORS = offsets(-400 * DAY, 30 * DAY)
PERIODS_AHEAD = st.integers(0, 3)
CREATED = offsets(-800 * DAY, 0)
EXPIRES = st.none() | offsets(-30 * DAY, 30 * DAY)
NEXT_RESETS = st.none() | offsets(-DAY, 60 * DAY)
RESET_COUNTS = st.integers(0, 5)
FOUR_IDS = st.sampled_from(["bal_a", "bal_b", "bal_c", "bal_d"])
ANY_VERSION = st.integers(0, 50)
WHICH_AMOUNT = st.sampled_from([None, "remaining", "add_to_balance", "usage"])
GRANTS = st.none() | request_amounts
SMALL = st.integers(0, 60).map(Decimal)
POLICIES = st.builds(
    RolloverPolicy,
    duration=st.sampled_from(["month", "forever"]),
    length=st.integers(1, 3),
    max=st.none() | SMALL,
    max_percentage=st.none() | st.integers(0, 100).map(Decimal),
)
TRANCHE_EXPIRES = st.none() | offsets(-40 * DAY, 90 * DAY)


@st.composite
def tranches(draw: st.DrawFn, periods: int) -> tuple[Tranche, ...]:
    """Earlier carry-overs: each from one of the ``periods`` resets so far, some spent."""
    if periods == 0:
        return ()  # no reset yet, so nothing carried over
    chosen = draw(st.lists(st.integers(1, periods), max_size=3, unique=True))
    made = []
    for period in sorted(chosen):
        granted = draw(SMALL)
        remaining = draw(st.integers(0, int(granted)).map(Decimal))
        made.append(Tranche(period, granted, remaining, draw(TRANCHE_EXPIRES)))
    return tuple(made)


@st.composite
def balance_rows(
    draw: st.DrawFn,
    *,
    ids: st.SearchStrategy[str] = FOUR_IDS,
    version: st.SearchStrategy[int] = ANY_VERSION,
) -> BalanceRow:
    """A balance as the table can hold it: a resetting one has a schedule (anchor and a
    boundary of it as ``next_reset_at``, possibly already due), a one_off one has none."""
    interval = draw(INTERVALS)
    count = draw(COUNTS)
    anchor: datetime | None = None
    next_reset_at: datetime | None = None
    if interval is not Interval.ONE_OFF:
        anchor = draw(ANCHORS)
        next_reset_at = boundary(anchor, interval, count, draw(PERIODS_AHEAD))
        if draw(sometimes):
            anchor = None  # due_reset then anchors on next_reset_at
    created_at = draw(CREATED)
    reset_count = draw(RESET_COUNTS)
    unlimited = draw(sometimes)
    policy: RolloverPolicy | None = None
    carried: tuple[Tranche, ...] = ()
    if interval is not Interval.ONE_OFF and not unlimited and draw(sometimes):
        policy, carried = draw(POLICIES), draw(tranches(reset_count))
    return BalanceRow(
        customer_id="cus",
        id=draw(ids),
        feature_id="feat",
        entity_id=None,
        interval=interval,
        interval_count=count,
        included_grant=draw(AMOUNTS),
        prepaid_grant=draw(PREPAID),
        adjustment=draw(AMOUNTS),
        usage=draw(AMOUNTS),
        unlimited=unlimited,
        overage_allowed=draw(sometimes),
        reset_anchor_at=anchor,
        next_reset_at=next_reset_at,
        expires_at=draw(EXPIRES),
        reset_count=reset_count,
        version=draw(version),
        created_at=created_at,
        updated_at=created_at,
        rollover=policy,
        rollovers=carried,
    )


@st.composite
def update_requests(draw: st.DrawFn) -> Update:
    """At most one of remaining / add_to_balance / usage, plus optional grant and times."""
    which = draw(WHICH_AMOUNT)
    amount = draw(request_amounts)
    return Update(
        remaining=amount if which == "remaining" else None,
        add_to_balance=amount if which == "add_to_balance" else None,
        usage=amount if which == "usage" else None,
        included_grant=draw(GRANTS),
        next_reset_at=draw(NEXT_RESETS),
        expires_at=draw(EXPIRES),
    )


def assert_ledger_of(before: BalanceRow, entries: list[Entry], after: BalanceRow | None) -> None:
    """The entries of one balance, from ``before`` to ``after`` (None: deleted)."""
    assert all(e.balance_id == before.id and e.customer_id == before.customer_id for e in entries)
    assert all(e.feature_id == before.feature_id for e in entries)
    assert all(e.created_at == NOW for e in entries)
    # Versions count on from the input's, one per entry, without gaps.
    assert [e.balance_version for e in entries] == list(
        range(before.version + 1, before.version + 1 + len(entries))
    )
    # Each entry's "after" is the previous state plus its deltas.
    remaining, usage, rolled = before.remaining, before.usage, total(before.rollovers)
    for entry in entries:
        remaining += entry.remaining_delta
        usage += entry.usage_delta
        rolled += entry.rollover_delta
        assert entry.remaining_after == remaining
        assert entry.usage_after == usage
        assert entry.rollover_after == rolled
    end_rolled = total(after.rollovers) if after is not None else ZERO
    assert sum((e.rollover_delta for e in entries), ZERO) == end_rolled - total(before.rollovers)
    end_remaining = after.remaining if after is not None else ZERO
    end_usage = after.usage if after is not None else ZERO
    assert sum((e.remaining_delta for e in entries), ZERO) == end_remaining - before.remaining
    assert sum((e.usage_delta for e in entries), ZERO) == end_usage - before.usage
    if entries:
        last = entries[-1]
        assert last.remaining_after == end_remaining
        assert last.usage_after == end_usage
        assert last.granted_after == (after.granted if after is not None else ZERO)
    if after is not None:
        expected_version = entries[-1].balance_version if entries else before.version
        assert after.version == expected_version


ROLLOVER_KINDS = {EntryKind.ROLLOVER, EntryKind.ROLLOVER_TRIM, EntryKind.ROLLOVER_EXPIRE}


def without_rollovers(entries: list[Entry]) -> list[str]:
    """The kinds of ``entries`` but those of carry-overs (which any catch-up may add)."""
    return [e.kind for e in entries if e.kind not in ROLLOVER_KINDS]


def out_of_range(row: BalanceRow) -> bool:
    return any(
        abs(value) >= QUANTITY_LIMIT
        for value in (row.included_grant, row.adjustment, row.usage, row.granted, row.remaining)
    )


# --- update ----------------------------------------------------------------------------------


@dataclass
class Expected:
    """What ``update`` should do, worked out step by step from the request."""

    error: type[Exception] | None
    row: BalanceRow


def expected_update(target: BalanceRow, request: Update) -> Expected:
    row = copy(target)
    if due_reset(row, NOW) is not None:
        row.usage = row.adjustment = ZERO
    amount_given = any(
        v is not None for v in (request.remaining, request.add_to_balance, request.usage)
    )
    if row.unlimited and amount_given:
        return Expected(BalanceUnlimited, row)
    if request.next_reset_at is not None and (
        row.interval == Interval.ONE_OFF or request.next_reset_at <= NOW
    ):
        return Expected(InvalidRequest, row)
    # Impossible values (issue 12, point 8): a past expiry, a usage or grant below zero.
    if (
        (request.expires_at is not None and request.expires_at <= NOW)
        or (request.usage is not None and request.usage < 0)
        or (request.included_grant is not None and request.included_grant < 0)
    ):
        return Expected(InvalidRequest, row)
    if request.included_grant is not None:
        row.included_grant = request.included_grant
        if out_of_range(row):
            return Expected(AmountOutOfRange, row)
    if request.add_to_balance is not None:
        row.adjustment += request.add_to_balance
    elif request.remaining is not None:
        row.adjustment += request.remaining - row.remaining
    elif request.usage is not None:
        row.usage = request.usage
    if out_of_range(row):
        return Expected(AmountOutOfRange, row)
    return Expected(None, row)


@EXAMPLES
@given(balance_rows(), update_requests())
def test_update_keeps_the_ledger_closed_and_never_touches_its_input(
    target: BalanceRow, request: Update
) -> None:
    pristine = deepcopy(target)
    expected = expected_update(target, request)
    if expected.error is not None:
        with pytest.raises(expected.error):
            update(target, request, NOW)
        assert target == pristine
        return
    change = update(target, request, NOW)
    assert target == pristine
    assert change.inserted == [] and change.deleted == []
    [row] = change.saved
    assert row is not target
    assert_ledger_of(target, change.entries, row)

    assert (row.included_grant, row.adjustment, row.usage) == (
        expected.row.included_grant,
        expected.row.adjustment,
        expected.row.usage,
    )
    assert row.prepaid_grant == target.prepaid_grant
    if request.remaining is not None:
        assert row.remaining == request.remaining
    if request.usage is not None:
        assert row.usage == request.usage
    if request.next_reset_at is not None:
        assert row.next_reset_at == row.reset_anchor_at == request.next_reset_at
    if request.expires_at is not None:
        assert row.expires_at == request.expires_at
    assert not out_of_range(row)

    kinds = without_rollovers(change.entries)
    due = due_reset(target, NOW) is not None
    assert (kinds[:1] == [EntryKind.RESET]) == due
    assert kinds.count(EntryKind.RESET) == int(due)
    if change.entries:
        assert row.updated_at == NOW
    else:
        assert row == target  # nothing asked, nothing due: nothing changes


@EXAMPLES
@given(balance_rows(), update_requests())
def test_update_twice_is_the_same_as_once_for_absolute_requests(
    target: BalanceRow, request: Update
) -> None:
    """Setting remaining/usage/grant/times again changes no amount (add_to_balance aside)."""
    absolute = Update(
        remaining=request.remaining,
        usage=request.usage,
        included_grant=request.included_grant,
        expires_at=request.expires_at,
    )
    try:
        [once] = update(target, absolute, NOW).saved
    except (BalanceUnlimited, AmountOutOfRange, InvalidRequest):
        return
    [twice] = update(once, absolute, NOW).saved
    assert (twice.included_grant, twice.adjustment, twice.usage) == (
        once.included_grant,
        once.adjustment,
        once.usage,
    )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEGATIVES = st.one_of(
    st.integers(-(10**15) + 1, -1).map(Decimal),
    st.integers(-(10**15), -1).map(lambda n: Decimal(n).scaleb(-9)),
)
# Not in the future: the past, now, or seconds read as milliseconds (1970).
NOT_FUTURE = st.one_of(
    offsets(-400 * DAY, 0),
    st.integers(0, 2_000_000_000).map(lambda s: EPOCH + timedelta(milliseconds=s)),
)


@st.composite
def impossible_updates(draw: st.DrawFn) -> Update:
    """A request with one impossible value (and possibly valid ones beside it)."""
    field = draw(st.sampled_from(["usage", "included_grant", "expires_at"]))
    base = draw(update_requests())
    if field == "usage":
        return replace(base, remaining=None, add_to_balance=None, usage=draw(NEGATIVES))
    if field == "included_grant":
        return replace(base, included_grant=draw(NEGATIVES))
    return replace(base, expires_at=draw(NOT_FUTURE))


@EXAMPLES
@given(balance_rows(), impossible_updates())
def test_an_impossible_value_refuses_the_whole_update(target: BalanceRow, request: Update) -> None:
    """A usage or grant below zero, or an expiry not in the future: 422, nothing changes."""
    pristine = deepcopy(target)
    with pytest.raises((InvalidRequest, BalanceUnlimited)):
        update(target, request, NOW)
    assert target == pristine


@FEWER
@given(
    balance_rows(version=st.just(0)), st.sampled_from(["included_grant", "expires_at"]), st.data()
)
def test_an_impossible_value_refuses_the_create(
    new: BalanceRow, field: str, data: st.DataObject
) -> None:
    if field == "included_grant":
        impossible = replace(new, included_grant=data.draw(NEGATIVES))
    else:
        impossible = replace(new, expires_at=data.draw(NOT_FUTURE))
    with pytest.raises(InvalidRequest):
        create(impossible, [], NOW)


def test_update_refuses_amounts_on_an_unlimited_balance_but_persists_nothing() -> None:
    target = BalanceRow(
        customer_id="cus",
        id="bal_a",
        feature_id="feat",
        entity_id=None,
        interval=Interval.DAY,
        interval_count=1,
        included_grant=Decimal(5),
        prepaid_grant=ZERO,
        adjustment=Decimal(1),
        usage=Decimal(3),
        unlimited=True,
        overage_allowed=False,
        reset_anchor_at=NOW - timedelta(days=3),
        next_reset_at=NOW - timedelta(days=2),  # a reset is due, and computed first
        expires_at=None,
        reset_count=0,
        version=7,
        created_at=NOW - timedelta(days=3),
        updated_at=NOW - timedelta(days=3),
    )
    pristine = deepcopy(target)
    for request in (Update(remaining=ZERO), Update(add_to_balance=ZERO), Update(usage=ZERO)):
        with pytest.raises(BalanceUnlimited):
            update(target, request, NOW)
        assert target == pristine
    # Setting the grant of an unlimited balance is allowed.
    [row] = update(target, Update(included_grant=Decimal(9)), NOW).saved
    assert row.included_grant == 9 and row.version == 9


# --- catch_up (resets) -----------------------------------------------------------------------


@EXAMPLES
@given(balance_rows())
def test_a_due_reset_clears_the_period_and_agrees_with_what_reads_show(
    original: BalanceRow,
) -> None:
    pristine = deepcopy(original)
    shown = state_at(original, NOW)
    row = copy(original)
    entries = catch_up(row, NOW)
    assert original == pristine
    assert_ledger_of(original, entries, row)
    assert row.rollovers == shown.rollovers  # what a read shows is what a write keeps
    assert all(not t.is_expired(NOW) and t.remaining >= 0 for t in row.rollovers)
    due = original.next_reset_at is not None and original.next_reset_at <= NOW
    kinds = [entry.kind for entry in entries]
    if not due:
        assert kinds in ([], [EntryKind.ROLLOVER_EXPIRE])
        assert (row.usage, row.version - len(entries)) == (original.usage, original.version)
        return
    assert EntryKind.RESET in kinds
    assert row.usage == row.adjustment == ZERO
    assert row.remaining == original.included_grant + original.prepaid_grant
    assert row.reset_count == original.reset_count + 1
    assert row.next_reset_at is not None and row.next_reset_at > NOW
    # The persisted reset is exactly what a read computes without writing.
    assert (row.included_grant, row.prepaid_grant, row.adjustment, row.usage) == (
        shown.included_grant,
        shown.prepaid_grant,
        shown.adjustment,
        shown.usage,
    )
    assert row.next_reset_at == shown.next_reset_at
    # Once caught up, nothing is due any more at the same instant.
    assert catch_up(row, NOW) == []


# --- create ----------------------------------------------------------------------------------


@FEWER
@given(
    balance_rows(ids=st.sampled_from(["bal_new", "bal_a"]), version=st.just(0)),
    st.lists(balance_rows(), max_size=3, unique_by=lambda row: row.id),
)
def test_create_retires_expired_holders_and_opens_the_new_ledger(
    new: BalanceRow, holders: list[BalanceRow]
) -> None:
    pristine = deepcopy((new, holders))
    impossible = new.included_grant < 0 or (new.expires_at is not None and new.expires_at <= NOW)
    if impossible:  # checked first: nothing is retired for a create that cannot be
        with pytest.raises(InvalidRequest):
            create(new, holders, NOW)
        assert (new, holders) == pristine
        return
    refused = any(h.id == new.id or not h.is_expired(NOW) for h in holders)
    if refused:
        with pytest.raises(BalanceExists):
            create(new, holders, NOW)
        assert (new, holders) == pristine
        return
    change = create(new, holders, NOW)
    assert (new, holders) == pristine
    assert change.saved == []
    assert [row.id for row in change.deleted] == [h.id for h in holders]
    for holder in holders:
        mine = [e for e in change.entries if e.balance_id == holder.id]
        assert_ledger_of(holder, mine, None)  # its ledger now sums to 0
        assert mine[-1].kind == EntryKind.DELETE
    [inserted] = change.inserted
    assert inserted is not new
    [opening] = [e for e in change.entries if e.balance_id == new.id]
    assert change.entries[-1] is opening
    assert opening.kind == EntryKind.CREATE
    assert opening.remaining_delta == new.remaining
    assert opening.remaining_after == inserted.remaining == new.remaining
    assert opening.balance_version == inserted.version == 1


# --- delete ----------------------------------------------------------------------------------


@EXAMPLES
@given(balance_rows())
def test_delete_closes_the_ledger_to_zero(target: BalanceRow) -> None:
    pristine = deepcopy(target)
    change = delete(target, NOW)
    assert target == pristine
    assert change.saved == [] and change.inserted == []
    [row] = change.deleted
    assert row is not target and row.key == target.key
    assert_ledger_of(target, change.entries, None)
    assert sum((e.remaining_delta for e in change.entries), ZERO) == -target.remaining
    assert sum((e.usage_delta for e in change.entries), ZERO) == -target.usage
    assert change.entries[-1].kind == EntryKind.DELETE
    assert row.version == change.entries[-1].balance_version
    due = due_reset(target, NOW) is not None
    assert without_rollovers(change.entries) == (
        [EntryKind.RESET, EntryKind.DELETE] if due else [EntryKind.DELETE]
    )


# Often a used, live one_off target (no reset clears its usage) and live survivors: the cases
# where usage moves.
USED = balance_rows().map(
    lambda row: replace(
        row,
        usage=abs(row.usage) + 1,
        expires_at=None,
        interval=Interval.ONE_OFF,
        reset_anchor_at=None,
        next_reset_at=None,
    )
)
SURVIVORS = st.lists(
    balance_rows().map(lambda row: replace(row, expires_at=None)) | balance_rows(),
    max_size=4,
    unique_by=lambda row: row.id,
)


@FEWER
@given(USED | balance_rows(), SURVIVORS)
def test_delete_with_recalculate_moves_the_usage_onto_the_survivors(
    target: BalanceRow, others: list[BalanceRow]
) -> None:
    """``recalculate_balances``: the target closes to 0 and the usage it has now (none once
    expired) lands on the live survivors, all of it, in deduction order, what does not fit on
    the first; with usage and no survivor, 422 and nothing changes. Every ledger stays closed
    and the inputs are untouched."""
    others = [row for row in others if row.id != target.id]
    pristine = deepcopy((target, others))
    current = copy(target)
    catch_up(current, NOW)
    moved = ZERO if target.is_expired(NOW) else current.usage
    live = [row for row in others if not row.is_expired(NOW)]
    if moved != 0 and not live:
        with pytest.raises(InvalidRequest):
            delete_moving_usage(target, others, NOW)
        assert (target, others) == pristine
        return
    change = delete_moving_usage(target, others, NOW)
    assert (target, others) == pristine
    [closed] = change.deleted
    assert closed.key == target.key and change.inserted == []
    assert_ledger_of(target, [e for e in change.entries if e.balance_id == target.id], None)
    saved = {row.id: row for row in change.saved}
    assert set(saved) == {row.id for row in live}  # expired balances take nothing
    before = {}
    for row in live:
        up_to_date = copy(row)
        catch_up(up_to_date, NOW)
        before[row.id] = up_to_date
        assert_ledger_of(row, [e for e in change.entries if e.balance_id == row.id], saved[row.id])
        kinds = without_rollovers([e for e in change.entries if e.balance_id == row.id])
        assert set(kinds) <= {EntryKind.RESET, EntryKind.TRACK}
    taken = {row_id: saved[row_id].usage - before[row_id].usage for row_id in saved}
    carried = {
        row_id: total(before[row_id].rollovers) - total(saved[row_id].rollovers) for row_id in saved
    }
    if moved >= 0:
        # All of it, nothing dropped: carry-overs first, then usage.
        assert sum(taken.values(), ZERO) + sum(carried.values(), ZERO) == moved
        ordered = deduction_order(list(before.values()))
        past_zero = {
            row.id
            for row in ordered
            if not row.unlimited and taken[row.id] > max(row.remaining, ZERO)
        }
        assert past_zero <= {ordered[0].id} if ordered else not past_zero
    else:  # a negative usage (set before it was refused) is given back, never below 0 usage
        assert moved <= sum(taken.values(), ZERO) <= 0
        assert all(saved[i].usage >= min(before[i].usage, ZERO) for i in saved)


# --- record and check_range ------------------------------------------------------------------


@EXAMPLES
@given(balance_rows(), AMOUNTS, AMOUNTS)
def test_record_counts_one_version_and_describes_the_row_after(
    original: BalanceRow, remaining_delta: Decimal, usage_delta: Decimal
) -> None:
    row = copy(original)
    entry = record(
        row, EntryKind.ADD, NOW, remaining_delta=remaining_delta, usage_delta=usage_delta
    )
    assert row.version == entry.balance_version == original.version + 1
    assert row.updated_at == NOW
    assert (entry.remaining_after, entry.usage_after, entry.granted_after) == (
        row.remaining,
        row.usage,
        row.granted,
    )
    assert (entry.remaining_delta, entry.usage_delta) == (remaining_delta, usage_delta)


@EXAMPLES
@given(balance_rows(), st.sampled_from(["included_grant", "adjustment", "usage"]), request_amounts)
def test_check_range_refuses_exactly_the_rows_with_an_amount_at_10_15(
    original: BalanceRow, name: str, value: Decimal
) -> None:
    row = copy(original)
    setattr(row, name, getattr(row, name) + value * 2)  # up to 2 * 10^15
    if out_of_range(row):
        with pytest.raises(AmountOutOfRange):
            check_range(row)
    else:
        check_range(row)


# --- choose_target ---------------------------------------------------------------------------

ENTITIES = st.sampled_from([None, "ent_1", "ent_2"])
FEW_INTERVALS = st.sampled_from([Interval.ONE_OFF, Interval.MONTH, Interval.DAY])


def simple_row(
    balance_id: str, entity_id: str | None, interval: Interval, expires_at: datetime | None
) -> BalanceRow:
    resets = interval is not Interval.ONE_OFF
    return BalanceRow(
        customer_id="cus",
        id=balance_id,
        feature_id="feat",
        entity_id=entity_id,
        interval=interval,
        interval_count=1,
        included_grant=Decimal(10),
        prepaid_grant=ZERO,
        adjustment=ZERO,
        usage=ZERO,
        unlimited=False,
        overage_allowed=False,
        reset_anchor_at=NOW if resets else None,
        next_reset_at=NOW + timedelta(days=30) if resets else None,
        expires_at=expires_at,
        reset_count=0,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


candidates_lists = st.lists(
    st.builds(
        simple_row,
        st.sampled_from([f"bal_{i}" for i in range(8)]),
        ENTITIES,
        FEW_INTERVALS,
        st.sampled_from([None, NOW - timedelta(days=1), NOW, NOW + timedelta(seconds=1)]),
    ),
    max_size=5,
    unique_by=lambda row: row.id,
)


@EXAMPLES
@given(
    candidates_lists,
    ENTITIES,
    st.none() | FEW_INTERVALS,
    st.none() | st.sampled_from(["bal_0", "bal_1", "bal_2", "bal_missing"]),
)
def test_choose_target_finds_the_one_live_match_or_says_why_not(
    candidates: list[BalanceRow],
    entity_id: str | None,
    interval: str | None,
    balance_id: str | None,
) -> None:
    pristine = deepcopy(candidates)

    def choose() -> BalanceRow:
        return choose_target(
            candidates,
            customer_id="cus",
            feature_id="feat",
            entity_id=entity_id,
            interval=interval,
            balance_id=balance_id,
            now=NOW,
        )

    if balance_id is not None:
        # By id: expired or not, but every field given must match.
        by_id = [
            row
            for row in candidates
            if row.id == balance_id
            and (entity_id is None or row.entity_id == entity_id)
            and (interval is None or row.interval == interval)
        ]
        if by_id:
            assert choose() is by_id[0]
        else:
            with pytest.raises(BalanceNotFound):
                choose()
        assert candidates == pristine
        return
    live = [
        row
        for row in candidates
        if not row.is_expired(NOW)
        and row.entity_id == entity_id
        and (interval is None or row.interval == interval)
    ]
    if len(live) == 1:
        assert choose() is live[0]
    elif not live:
        with pytest.raises(BalanceNotFound):
            choose()
    else:
        with pytest.raises(AmbiguousBalance) as raised:
            choose()
        assert raised.value.extra["candidates"] == [
            {"balance_id": row.id, "interval": row.interval} for row in live
        ]
    assert candidates == pristine


def test_two_live_intervals_without_interval_is_ambiguous_and_interval_disambiguates() -> None:
    monthly = simple_row("bal_m", None, Interval.MONTH, None)
    one_off = simple_row("bal_o", None, Interval.ONE_OFF, None)
    expired = simple_row("bal_x", None, Interval.DAY, NOW)  # expires_at == now: already expired

    def choose(candidates: list[BalanceRow], interval: str | None = None) -> BalanceRow:
        return choose_target(
            candidates,
            customer_id="cus",
            feature_id="feat",
            entity_id=None,
            interval=interval,
            balance_id=None,
            now=NOW,
        )

    with pytest.raises(AmbiguousBalance):
        choose([monthly, one_off, expired])
    assert choose([monthly, one_off, expired], Interval.ONE_OFF) is one_off
    assert choose([monthly, expired]) is monthly
    with pytest.raises(BalanceNotFound):
        choose([expired])
    with pytest.raises(BalanceNotFound):
        choose([])


# --- what is shown: unlimited balances --------------------------------------------------------


@FEWER
@given(st.lists(balance_rows(), min_size=1, max_size=4, unique_by=lambda row: row.id))
def test_an_unlimited_balance_shows_nothing_granted_or_left_only_its_usage(
    rows: list[BalanceRow],
) -> None:
    """As Autumn reports it: an unlimited balance, and a feature with one, show ``granted``
    and ``remaining`` 0 and the usage the unlimited balances counted; otherwise the sums."""
    for row in rows:
        shown = Balance.of(row, NOW)
        state = state_at(row, NOW)
        expected = (ZERO, ZERO) if row.unlimited else (state.granted, state.remaining)
        assert (shown.granted, shown.remaining) == expected
        assert shown.usage == state.usage and shown.unlimited == row.unlimited
    totals = FeatureAmounts.of(rows, NOW)
    states = [(row, state_at(row, NOW)) for row in rows]
    if any(row.unlimited for row in rows):
        assert (totals.granted, totals.remaining) == (ZERO, ZERO)
        assert totals.usage == sum((s.usage for r, s in states if r.unlimited), ZERO)
    else:  # carry-overs count: what was carried is granted, what was spent of it is used
        carried = [t for _, s in states for t in s.rollovers]
        granted = sum((t.granted for t in carried), ZERO)
        assert totals.granted == sum((s.granted for _, s in states), granted)
        assert totals.remaining == sum((s.remaining for _, s in states), total(carried))
        assert totals.usage == sum((s.usage for _, s in states), granted - total(carried))
