"""Properties of metering and gating (``app.consumption.rules``) over 1-5 balances of a feature.

Pure: no database, one fixed ``now``. ``track`` changes the rows it is given (the caller's own
copies), so each test hands it a deep copy and compares with the untouched originals.
"""

from copy import copy, deepcopy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.balances.allocation import OverageBehavior, deduction_order, give_back_order
from app.balances.errors import InsufficientBalance
from app.balances.models import Interval
from app.balances.periods import boundary
from app.balances.rows import BalanceRow
from app.balances.rules import catch_up
from app.consumption import rules
from app.consumption.rules import check_and_use, is_allowed
from app.ledger.entries import Entry
from app.ledger.models import EntryKind

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ZERO = Decimal(0)


def track(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None, now: datetime
) -> tuple[list[tuple[BalanceRow, Decimal]], list[Entry]]:
    """``rules.track`` with its draws as (balance, amount): these balances carry nothing over."""
    draws, entries = rules.track(rows, value, behavior, now)
    assert all(draw.rollover is None for draw in draws)
    return [(draw.balance, draw.amount) for draw in draws], entries


DAY = 86_400
EXAMPLES = settings(max_examples=200, deadline=None)

rarely = st.integers(0, 7).map(lambda n: n == 0)  # true one time in eight
small = st.integers(-20, 60).map(Decimal)  # whole numbers: balances run out exactly
fractional = st.integers(-(10**15), 10**15).map(lambda n: Decimal(n).scaleb(-9))  # |x| <= 10^6
AMOUNTS = small | fractional
USAGES = st.integers(0, 60).map(Decimal) | fractional  # negative now and then, as update allows
VALUES = st.integers(-80, 150).map(Decimal) | fractional
GIVE_BACKS = st.integers(-80, -1).map(Decimal) | fractional.map(lambda d: -abs(d))
REQUIRED = st.integers(0, 150).map(Decimal) | fractional.map(abs)
BEHAVIORS = st.sampled_from([None, *OverageBehavior])
INTERVALS = st.sampled_from(Interval)
COUNTS = st.integers(1, 3)
ANCHORS = st.integers(-400 * DAY, 30 * DAY).map(lambda s: NOW + timedelta(seconds=s))
PERIODS_AHEAD = st.integers(0, 3)
EXPIRES = st.none() | st.integers(-30, 30).map(lambda d: NOW + timedelta(days=d))
RESET_COUNTS = st.integers(0, 3)
VERSIONS = st.integers(1, 20)
CREATED = st.integers(-800, 0).map(lambda d: NOW + timedelta(days=d))


@st.composite
def balance_rows(draw: st.DrawFn) -> BalanceRow:
    interval = draw(INTERVALS)
    count = draw(COUNTS)
    anchor = next_reset_at = None
    if interval is not Interval.ONE_OFF:
        anchor = draw(ANCHORS)
        next_reset_at = boundary(anchor, interval, count, draw(PERIODS_AHEAD))
    created_at = draw(CREATED)
    return BalanceRow(
        customer_id="cus",
        id="bal",  # numbered by the feature
        feature_id="feat",
        entity_id=None,
        interval=interval,
        interval_count=count,
        included_grant=draw(AMOUNTS),
        prepaid_grant=ZERO,
        adjustment=draw(small),
        usage=draw(USAGES),
        unlimited=draw(rarely),
        overage_allowed=draw(rarely),
        reset_anchor_at=anchor,
        next_reset_at=next_reset_at,
        expires_at=draw(EXPIRES),
        reset_count=draw(RESET_COUNTS),
        version=draw(VERSIONS),
        created_at=created_at,
        updated_at=created_at,
    )


def numbered(rows: list[BalanceRow]) -> list[BalanceRow]:
    for i, row in enumerate(rows):
        row.id = f"bal_{i}"
    return rows


# 1-5 balances of one feature, with distinct ids.
FEATURES = st.lists(balance_rows(), min_size=1, max_size=5).map(numbered)


def up_to_date(rows: list[BalanceRow]) -> list[BalanceRow]:
    """What the command hands the rules: copies with due resets persisted."""
    current = []
    for row in rows:
        row = copy(row)
        catch_up(row, NOW)
        current.append(row)
    return current


def limited(rows: list[BalanceRow]) -> list[BalanceRow]:
    return [row for row in rows if not row.unlimited]


def available(rows: list[BalanceRow]) -> Decimal:
    """What the limited balances have left to give (a negative remaining gives nothing)."""
    return sum((max(row.remaining, ZERO) for row in limited(rows)), ZERO)


def expected_deduction(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> Decimal | None:
    """The total ``track`` should deduct (None: it must refuse, insufficient)."""
    if value < 0:
        return -min(-value, sum((max(row.usage, ZERO) for row in rows), ZERO))
    if any(row.unlimited for row in rows) or available(rows) >= value:
        return value
    # A balance that allows overage takes the excess whatever the behaviour, cap included.
    overage = any(row.overage_allowed for row in rows)
    if overage or behavior is OverageBehavior.OVERFLOW:
        return value
    if behavior is OverageBehavior.REJECT:
        return None
    return available(rows)


def assert_entries_describe(
    before: list[BalanceRow], after: list[BalanceRow], entries: list[Entry], kind: EntryKind
) -> None:
    """One entry per changed balance, versions counting on, each "after" consistent."""
    for old, new in zip(before, after, strict=True):
        mine = [e for e in entries if e.balance_id == old.id]
        assert all(e.kind == kind for e in mine)
        assert [e.balance_version for e in mine] == list(
            range(old.version + 1, old.version + 1 + len(mine))
        )
        assert new.version == old.version + len(mine)
        remaining, usage = old.remaining, old.usage
        for entry in mine:
            assert entry.remaining_delta == -entry.usage_delta  # only usage moves
            remaining += entry.remaining_delta
            usage += entry.usage_delta
            assert (entry.remaining_after, entry.usage_after) == (remaining, usage)
            assert entry.granted_after == old.granted
        assert (new.remaining, new.usage, new.granted) == (remaining, usage, old.granted)


def total_usage(rows: list[BalanceRow]) -> Decimal:
    return sum((row.usage for row in rows), ZERO)


@EXAMPLES
@given(FEATURES, VALUES, BEHAVIORS)
def test_track_deducts_what_the_rules_say_and_the_ledger_agrees(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    work = deepcopy(rows)
    expected = expected_deduction(rows, value, behavior)
    if expected is None:
        with pytest.raises(InsufficientBalance):
            track(work, value, behavior, NOW)
        assert work == rows  # refused: nothing changed
        return
    plan, entries = track(work, value, behavior, NOW)
    deducted = sum((amount for _, amount in plan), ZERO)
    assert deducted == expected
    assert deducted == sum((e.usage_delta for e in entries), ZERO)
    assert deducted == -sum((e.remaining_delta for e in entries), ZERO)
    assert deducted == total_usage(work) - total_usage(rows)
    if behavior is OverageBehavior.REJECT and value >= 0:
        assert deducted == value
    # The plan names the caller's rows, each at most once, with non-zero amounts.
    assert all(any(row is w for w in work) for row, _ in plan)
    assert len({row.id for row, _ in plan}) == len(plan)
    assert all(amount != 0 for _, amount in plan)
    by_id = {row.id: amount for row, amount in plan}
    for old, new in zip(rows, work, strict=True):
        assert new.usage - old.usage == by_id.get(old.id, ZERO)
    assert_entries_describe(rows, work, entries, EntryKind.TRACK)
    assert [e.balance_id for e in entries] == [row.id for row, _ in plan]


@EXAMPLES
@given(FEATURES, VALUES, st.sampled_from([None, OverageBehavior.CAP]))
def test_cap_stops_at_zero_only_the_balances_without_overage(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    """``cap`` (and the default) never pushes a limited balance without overage below zero,
    and never drops usage a balance with overage could take."""
    work = deepcopy(rows)
    plan, _ = track(work, value, behavior, NOW)
    for old, new in zip(rows, work, strict=True):
        if old.unlimited or old.overage_allowed:
            continue
        assert new.remaining >= min(old.remaining, ZERO)
    if value > 0 and any(row.overage_allowed for row in rows):
        assert sum((amount for _, amount in plan), ZERO) == value


@EXAMPLES
@given(FEATURES, VALUES)
def test_reject_deducts_all_or_nothing(rows: list[BalanceRow], value: Decimal) -> None:
    work = deepcopy(rows)
    try:
        plan, _ = track(work, value, OverageBehavior.REJECT, NOW)
    except InsufficientBalance:
        assert work == rows
        assert value > available(rows)
        return
    deducted = sum((amount for _, amount in plan), ZERO)
    if value >= 0:
        assert deducted == value
    else:
        assert value <= deducted <= 0  # giving back: as much as there is usage to give back


@EXAMPLES
@given(FEATURES, VALUES, BEHAVIORS)
def test_deduction_order_is_respected(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    """A balance takes a share only once every balance before it in deduction order gave all
    it had (and none of them is unlimited: an unlimited one takes everything). Giving back
    goes to the unlimited balances first, then walks the limited ones backwards. What nobody
    had goes to one balance only."""
    work = deepcopy(rows)
    try:
        plan, _ = track(work, value, behavior, NOW)
    except InsufficientBalance:
        return
    amounts = {row.id: amount for row, amount in plan}
    ordered = deduction_order(rows)
    if value >= 0:
        for i, row in enumerate(ordered):
            if amounts.get(row.id, ZERO) > 0:
                for earlier in ordered[:i]:
                    assert not earlier.unlimited
                    assert amounts.get(earlier.id, ZERO) >= max(earlier.remaining, ZERO)
        beyond = [
            row
            for row in ordered
            if not row.unlimited and amounts.get(row.id, ZERO) > max(row.remaining, ZERO)
        ]
        assert len(beyond) <= 1
    else:
        backwards = give_back_order(ordered)
        assert [row.id for row in backwards if row.unlimited] == [
            row.id for row in ordered if row.unlimited
        ]
        for i, row in enumerate(backwards):
            if amounts.get(row.id, ZERO) < 0:
                for earlier in backwards[:i]:
                    assert -amounts.get(earlier.id, ZERO) == max(earlier.usage, ZERO)


@EXAMPLES
@given(FEATURES, VALUES, BEHAVIORS)
def test_an_unlimited_balance_is_an_infinite_sink_deducted_first(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    """With an unlimited balance, the first one in deduction order takes the whole value
    (whatever the behaviour, nothing refused) and the limited balances stay untouched."""
    sinks = [row for row in deduction_order(rows) if row.unlimited]
    if not sinks or value <= 0:
        return
    work = deepcopy(rows)
    plan, _ = track(work, value, behavior, NOW)
    assert [(row.id, amount) for row, amount in plan] == [(sinks[0].id, value)]
    for old, new in zip(rows, work, strict=True):
        if old.id != sinks[0].id:
            assert new == old


@EXAMPLES
@given(FEATURES, VALUES, BEHAVIORS)
def test_what_no_balance_has_goes_where_autumn_puts_it(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    """What the balances have not left goes whole to one balance: under ``overflow`` the first
    in deduction order (the resetting one, whose debt the next reset clears), otherwise the
    first that allows overage, cap included; with neither, cap drops it. An unlimited balance
    leaves nothing over."""
    if value <= 0:
        return
    work = deepcopy(rows)
    try:
        plan, _ = track(work, value, behavior, NOW)
    except InsufficientBalance:
        return
    amounts = {row.id: amount for row, amount in plan}
    ordered = deduction_order(rows)
    beyond = {
        row.id: amounts.get(row.id, ZERO) - max(row.remaining, ZERO)
        for row in ordered
        if not row.unlimited and amounts.get(row.id, ZERO) > max(row.remaining, ZERO)
    }
    excess = value - available(rows)
    if any(row.unlimited for row in rows) or excess <= 0:
        assert beyond == {}
    elif behavior is OverageBehavior.OVERFLOW:
        assert beyond == {ordered[0].id: excess}
    elif any(row.overage_allowed for row in rows):
        first = next(row for row in ordered if row.overage_allowed)
        assert beyond == {first.id: excess}
    else:
        assert beyond == {}


@EXAMPLES
@given(FEATURES, GIVE_BACKS, BEHAVIORS)
def test_giving_back_never_takes_usage_below_zero(
    rows: list[BalanceRow], value: Decimal, behavior: OverageBehavior | None
) -> None:
    work = deepcopy(rows)
    plan, _ = track(work, value, behavior, NOW)
    given_back = -sum((amount for _, amount in plan), ZERO)
    assert 0 <= given_back <= -value
    assert given_back <= sum((max(row.usage, ZERO) for row in rows), ZERO)
    for old, new in zip(rows, work, strict=True):
        assert new.usage >= min(old.usage, ZERO)
        assert new.usage <= old.usage


def test_deduction_order_shortest_period_first_one_off_last_then_expiry_then_age() -> None:
    def row(
        balance_id: str, interval: Interval, count: int, expires_days: int | None
    ) -> BalanceRow:
        resets = interval is not Interval.ONE_OFF
        return BalanceRow(
            customer_id="cus",
            id=balance_id,
            feature_id="feat",
            entity_id=None,
            interval=interval,
            interval_count=count,
            included_grant=Decimal(5),
            prepaid_grant=ZERO,
            adjustment=ZERO,
            usage=ZERO,
            unlimited=False,
            overage_allowed=False,
            reset_anchor_at=NOW if resets else None,
            next_reset_at=NOW + timedelta(days=400) if resets else None,
            expires_at=None if expires_days is None else NOW + timedelta(days=expires_days),
            reset_count=0,
            version=1,
            created_at=NOW,
            updated_at=NOW,
        )

    rows = [
        row("one_off_never", Interval.ONE_OFF, 1, None),
        row("one_off_soon", Interval.ONE_OFF, 1, 3),
        row("month", Interval.MONTH, 1, None),
        row("day_x2", Interval.DAY, 2, None),
        row("day", Interval.DAY, 1, None),
    ]
    ordered = [r.id for r in deduction_order(rows)]
    assert ordered == ["day", "day_x2", "month", "one_off_soon", "one_off_never"]
    plan, _ = track(rows, Decimal(12), OverageBehavior.CAP, NOW)
    assert [(r.id, amount) for r, amount in plan] == [
        ("day", Decimal(5)),
        ("day_x2", Decimal(5)),
        ("month", Decimal(2)),
    ]
    back, _ = track(rows, Decimal(-7), None, NOW)
    assert [(r.id, amount) for r, amount in back] == [
        ("month", Decimal(-2)),
        ("day_x2", Decimal(-5)),
    ]

    # An unlimited balance, even a yearly one, comes first and takes everything; giving back
    # goes to it first, then to the limited ones backwards.
    sink = replace(rows[2], id="year_unlimited", interval=Interval.YEAR, unlimited=True)
    with_sink = [*rows, sink]
    assert [r.id for r in deduction_order(with_sink)][:2] == ["year_unlimited", "day"]
    plan, _ = track(with_sink, Decimal(3), OverageBehavior.REJECT, NOW)
    assert [(r.id, amount) for r, amount in plan] == [("year_unlimited", Decimal(3))]
    back, _ = track(with_sink, Decimal(-5), None, NOW)  # of the limited, only "day" is used
    assert [(r.id, amount) for r, amount in back] == [
        ("year_unlimited", Decimal(-3)),
        ("day", Decimal(-2)),
    ]


# --- check with send_event ------------------------------------------------------------------


@EXAMPLES
@given(FEATURES, REQUIRED)
def test_check_and_use_allows_exactly_when_is_allowed_and_then_uses_all_required(
    stored: list[BalanceRow], required: Decimal
) -> None:
    rows = up_to_date(stored)
    work = deepcopy(rows)
    allowed, entries = check_and_use(work, required, NOW)
    assert allowed == is_allowed(rows, required, NOW)
    assert allowed == (
        any(row.unlimited for row in rows)
        or any(row.overage_allowed for row in rows)
        or sum((row.remaining for row in rows), ZERO) >= required
    )
    if not allowed:
        assert entries == [] and work == rows
        return
    assert sum((e.usage_delta for e in entries), ZERO) == required
    assert total_usage(work) - total_usage(rows) == required
    assert_entries_describe(rows, work, entries, EntryKind.TRACK)


def test_nothing_is_allowed_without_a_balance() -> None:
    assert not is_allowed([], ZERO, NOW)
    assert check_and_use([], ZERO, NOW) == (False, [])


@EXAMPLES
@given(FEATURES, REQUIRED)
def test_is_allowed_sees_the_balances_as_they_are_now(
    stored: list[BalanceRow], required: Decimal
) -> None:
    """On stored rows (due resets not yet persisted) it answers as on the up-to-date rows."""
    assert is_allowed(stored, required, NOW) == is_allowed(up_to_date(stored), required, NOW)
