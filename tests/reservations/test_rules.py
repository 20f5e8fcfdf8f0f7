"""Properties of reservations (``app.reservations.rules``): reserve, finalize, expire, give back.

Pure: no database. A lock is taken at ``NOW`` on up-to-date copies of a feature's live
balances (as ``check`` does) and settled later on every balance of the feature (as
``finalize`` does), brought up to date at that instant.
"""

from copy import copy, deepcopy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.balances.allocation import OverageBehavior, draw_order
from app.balances.errors import InsufficientBalance
from app.balances.models import Interval
from app.balances.periods import boundary
from app.balances.resets import state_at
from app.balances.rows import BalanceRow, ScopeKey
from app.balances.rules import catch_up
from app.consumption.rules import track
from app.core.errors import InvalidRequest
from app.ledger.entries import Entry
from app.ledger.models import EntryKind
from app.reservations.errors import LockExists, LockNotActive
from app.reservations.models import LockStatus
from app.reservations.rows import LockRow
from app.reservations.rules import (
    LONGEST_LOCK,
    bring_up_to_date,
    expire,
    finalize,
    give_back,
    releasable,
    reserve,
    view_released,
)
from app.reservations.schemas import FinalizeAction

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ZERO = Decimal(0)
DAY = 86_400
SCOPE = ScopeKey("cus", "feat", None)
EXAMPLES = settings(max_examples=200, deadline=None)

rarely = st.integers(0, 7).map(lambda n: n == 0)  # true one time in eight
small = st.integers(-20, 60).map(Decimal)
fractional = st.integers(-(10**15), 10**15).map(lambda n: Decimal(n).scaleb(-9))  # |x| <= 10^6
AMOUNTS = small | fractional
# Usage is never negative: give-backs stop at 0 (see reservations.rules.give_back).
USAGES = st.integers(0, 60).map(Decimal) | fractional.map(abs)
LOCK_AMOUNTS = st.integers(0, 150).map(Decimal) | fractional.map(abs)
BEHAVIORS = st.sampled_from(OverageBehavior)
INTERVALS = st.sampled_from(Interval)
COUNTS = st.integers(1, 3)
# Schedules whose next reset is still ahead at NOW: the rows are up to date when the lock is
# taken, and some of them reset before it is settled.
ANCHORS = st.integers(-400 * DAY, 30 * DAY).map(lambda s: NOW + timedelta(seconds=s))
EXPIRES = st.none() | st.integers(-30, 30).map(lambda d: NOW + timedelta(days=d))
CREATED = st.integers(-800, 0).map(lambda d: NOW + timedelta(days=d))
RESET_COUNTS = st.integers(0, 3)
VERSIONS = st.integers(1, 20)
LATER = st.integers(0, 120 * DAY).map(lambda s: timedelta(seconds=s))
# A lock expires at most a day ahead (reservations.rules.LONGEST_LOCK).
LIFETIMES = st.integers(0, DAY - 1).map(lambda s: timedelta(seconds=s))
FRACTIONS = st.integers(0, 999)


@st.composite
def balance_rows(draw: st.DrawFn) -> BalanceRow:
    interval = draw(INTERVALS)
    count = draw(COUNTS)
    anchor = next_reset_at = None
    if interval is not Interval.ONE_OFF:
        anchor = draw(ANCHORS)
        next_reset_at = boundary(anchor, interval, count, 0)
    created_at = draw(CREATED)
    row = BalanceRow(
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
    catch_up(row, NOW)  # up to date at NOW, as the command hands them
    return row


def numbered(rows: list[BalanceRow]) -> list[BalanceRow]:
    for i, row in enumerate(rows):
        row.id = f"bal_{i}"
    return rows


FEATURES = st.lists(balance_rows(), min_size=1, max_size=5).map(numbered)


def live(rows: list[BalanceRow], now: datetime) -> list[BalanceRow]:
    return [row for row in rows if not row.is_expired(now)]


def take_lock(
    work: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    expires_at: datetime | None = None,
) -> tuple[LockRow, list[Entry]] | None:
    """``reserve`` on the live balances of ``work`` at NOW; None when refused (reject) or
    when there is no live balance (``check`` then answers not allowed, reserving nothing)."""
    if not live(work, NOW):
        return None
    try:
        return reserve(
            live(work, NOW),
            False,
            scope=SCOPE,
            lock_id="lock_1",
            amount=amount,
            behavior=behavior,
            expires_at=expires_at,
            now=NOW,
        )
    except InsufficientBalance:
        assert behavior is OverageBehavior.REJECT
        return None


def quiet_instant(rows: list[BalanceRow], lock: LockRow, fraction: int) -> datetime:
    """An instant at or after NOW before any balance resets and before the lock expires."""
    ends = [row.next_reset_at for row in rows if row.next_reset_at is not None]
    if lock.expires_at is not None:
        ends.append(lock.expires_at)
    if not ends:
        return NOW + timedelta(seconds=fraction)
    return NOW + (min(ends) - NOW) * fraction // 1000


def usages(rows: list[BalanceRow]) -> dict[str, Decimal]:
    return {row.id: row.usage for row in rows}


def total_usage(rows: list[BalanceRow]) -> Decimal:
    return sum((row.usage for row in rows), ZERO)


def assert_ledgers(before: list[BalanceRow], after: list[BalanceRow], entries: list[Entry]) -> None:
    """Per balance: versions count on without gaps, and each entry's "after" is the previous
    state plus its deltas, ending on the row returned."""
    for old, new in zip(before, after, strict=True):
        mine = [e for e in entries if e.balance_id == old.id]
        assert [e.balance_version for e in mine] == list(
            range(old.version + 1, old.version + 1 + len(mine))
        )
        assert new.version == old.version + len(mine)
        remaining, usage = old.remaining, old.usage
        for entry in mine:
            remaining += entry.remaining_delta
            usage += entry.usage_delta
            assert (entry.remaining_after, entry.usage_after) == (remaining, usage)
        assert (new.remaining, new.usage) == (remaining, usage)


def check_lock(lock: LockRow, entries: list[Entry]) -> None:
    assert lock.status == LockStatus.ACTIVE and lock.finalized_at is None
    assert lock.amount == sum((Decimal(item["value"]) for item in lock.items), ZERO)
    assert lock.amount == sum((e.usage_delta for e in entries), ZERO)
    assert all(e.kind == EntryKind.LOCK for e in entries)


# --- reserve, then release -------------------------------------------------------------------


@EXAMPLES
@given(FEATURES, LOCK_AMOUNTS, BEHAVIORS, FRACTIONS)
def test_reserve_then_release_restores_every_usage(
    rows: list[BalanceRow], amount: Decimal, behavior: OverageBehavior, fraction: int
) -> None:
    work = deepcopy(rows)
    taken = take_lock(work, amount, behavior, NOW + timedelta(days=1))
    if taken is None:
        assert work == rows  # refused: nothing changed
        return
    lock, locking = taken
    check_lock(lock, locking)
    if behavior is not OverageBehavior.CAP:
        assert lock.amount == amount
    periods = {row.id: row.reset_count for row in work}
    assert all(item["period"] == periods[item["balance_id"]] for item in lock.items)

    later = quiet_instant(rows, lock, fraction)
    current, settled_locks, resets = bring_up_to_date(work, [], later)
    assert resets == [] and settled_locks == []
    settled, releasing = finalize(lock, current, FinalizeAction.RELEASE, None, later)
    assert settled.status == LockStatus.RELEASED and settled.finalized_at == later
    assert lock.status == LockStatus.ACTIVE  # the input lock is not changed
    assert all(e.kind == EntryKind.RELEASE for e in releasing)
    assert usages(current) == usages(rows)
    assert [row.remaining for row in current] == [row.remaining for row in rows]
    assert_ledgers(rows, current, locking + releasing)


@EXAMPLES
@given(FEATURES, LOCK_AMOUNTS, BEHAVIORS)
def test_release_with_an_override_is_refused_and_changes_nothing(
    rows: list[BalanceRow], amount: Decimal, behavior: OverageBehavior
) -> None:
    work = deepcopy(rows)
    taken = take_lock(work, amount, behavior)
    if taken is None:
        return
    lock, _ = taken
    held = deepcopy((work, lock))
    with pytest.raises(InvalidRequest):
        finalize(lock, work, FinalizeAction.RELEASE, Decimal(1), NOW)
    assert (work, lock) == held


# --- reserve, then confirm -------------------------------------------------------------------


@EXAMPLES
@given(
    FEATURES,
    LOCK_AMOUNTS,
    BEHAVIORS,
    st.none() | LOCK_AMOUNTS | st.integers(-3, 3),
    FRACTIONS,
    st.none() | LIFETIMES,
)
def test_confirm_leaves_exactly_the_confirmed_amount_used(
    rows: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    override_or_margin: Decimal | int | None,
    fraction: int,
    lock_lifetime: timedelta | None,
) -> None:
    """``override_or_margin``: the override_value, or (an int) how far beyond what the lock
    holds plus what is left to take the override lies, to reach "just not enough"."""
    work = deepcopy(rows)
    expires_at = None if lock_lifetime is None else NOW + lock_lifetime + timedelta(seconds=1)
    taken = take_lock(work, amount, behavior, expires_at)
    if taken is None:
        return
    lock, locking = taken
    later = quiet_instant(rows, lock, fraction)
    current, _, resets = bring_up_to_date(work, [], later)
    assert resets == []
    before_confirm = deepcopy(current)
    still_live = live(current, later)
    left = sum((max(row.remaining, ZERO) for row in still_live if not row.unlimited), ZERO)
    override = (
        max(lock.amount + left + override_or_margin, ZERO)
        if isinstance(override_or_margin, int)
        else override_or_margin
    )
    confirmed = lock.amount if override is None else override
    difference = confirmed - lock.amount
    enough = difference <= 0 or any(row.unlimited for row in still_live) or left >= difference
    # A balance with overage_allowed takes the excess whatever the behavior (cap included).
    overage = bool(still_live) and (
        behavior is OverageBehavior.OVERFLOW or any(r.overage_allowed for r in still_live)
    )
    event("confirm: " + ("enough" if enough else "overage" if overage else str(behavior)))
    if not enough and not overage and behavior is OverageBehavior.REJECT:
        with pytest.raises(InsufficientBalance):
            finalize(lock, current, FinalizeAction.CONFIRM, override, later)
        assert current == before_confirm
        return

    settled, confirming = finalize(lock, current, FinalizeAction.CONFIRM, override, later)
    assert settled.status == LockStatus.CONFIRMED and settled.finalized_at == later
    assert settled.amount == confirmed
    assert all(e.kind == EntryKind.CONFIRM for e in confirming)
    change = total_usage(current) - total_usage(rows)
    if enough or overage:
        assert change == confirmed
    else:  # cap: only what fits
        assert lock.amount <= change < confirmed
    # Confirming less gives back only part of what was taken: no balance ends below its start.
    for old, new in zip(rows, current, strict=True):
        assert new.usage >= old.usage
    assert_ledgers(rows, current, locking + confirming)


# --- expiry ----------------------------------------------------------------------------------


@EXAMPLES
@given(FEATURES, LOCK_AMOUNTS, BEHAVIORS, LIFETIMES, LATER)
def test_an_expired_lock_gives_back_what_it_took_in_periods_not_reset(
    rows: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    lifetime: timedelta,
    wait: timedelta,
) -> None:
    work = deepcopy(rows)
    expires_at = NOW + lifetime + timedelta(milliseconds=1)
    taken = take_lock(work, amount, behavior, expires_at)
    if taken is None:
        return
    lock, locking = taken
    locked = deepcopy(work)
    later = NOW + wait
    current, settled, entries = bring_up_to_date(work, [lock], later)
    assert work == locked  # brought up to date on copies

    event("expire: " + ("not yet" if later < expires_at else "expired"))
    if later < expires_at:
        assert settled == []
        assert all(e.kind == EntryKind.RESET for e in entries)
        return
    [expired] = settled
    assert expired.status == LockStatus.EXPIRED and expired.finalized_at == later
    assert expired.amount == lock.amount and expired.items == lock.items
    assert lock.status == LockStatus.ACTIVE

    due = {r.id: r.next_reset_at for r in rows if r.next_reset_at and r.next_reset_at <= later}
    # A lock that ran out before the first due reset is given back before it, in full; one
    # that ran out after it gives nothing back into the balances that reset since.
    first_reset = min(due.values(), default=None)
    before_reset = first_reset is not None and expires_at <= first_reset
    reset = set() if before_reset else set(due)
    held = {item["balance_id"]: Decimal(item["value"]) for item in lock.items}
    event(f"expire: {len(held.keys() & reset)} of {len(held)} items in a reset balance")
    given_back = -sum((e.usage_delta for e in entries if e.kind == EntryKind.RELEASE), ZERO)
    assert given_back == sum((v for b, v in held.items() if b not in reset), ZERO)
    for old, new in zip(rows, current, strict=True):
        if old.id in due:
            assert new.usage == ZERO and new.reset_count == old.reset_count + 1
        if old.id in reset:
            assert not any(e.balance_id == old.id and e.kind == EntryKind.RELEASE for e in entries)
        elif old.id not in due:
            assert new.usage == old.usage  # taken and given back in full
    assert_ledgers(rows, current, locking + entries)

    # Finalizing it now answers "expired" and gives nothing back a second time.
    with pytest.raises(LockNotActive):
        finalize(expired, current, FinalizeAction.RELEASE, None, later)


@EXAMPLES
@given(FEATURES, LOCK_AMOUNTS, BEHAVIORS, LIFETIMES, st.sampled_from(FinalizeAction))
def test_finalizing_an_expired_active_lock_settles_it_as_expired(
    rows: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    lifetime: timedelta,
    action: FinalizeAction,
) -> None:
    work = deepcopy(rows)
    expires_at = NOW + lifetime + timedelta(milliseconds=1)
    taken = take_lock(work, amount, behavior, expires_at)
    if taken is None:
        return
    lock, _ = taken
    current, _, _ = bring_up_to_date(work, [], expires_at)
    before = deepcopy(current)
    reset = {
        row.id for row in rows if row.next_reset_at is not None and row.next_reset_at <= expires_at
    }
    override = Decimal(1) if action is FinalizeAction.CONFIRM else None
    settled, entries = finalize(lock, current, action, override, expires_at)
    assert settled.status == LockStatus.EXPIRED and settled.amount == lock.amount
    assert all(e.kind == EntryKind.RELEASE for e in entries)
    assert -sum((e.usage_delta for e in entries), ZERO) == sum(
        (Decimal(i["value"]) for i in lock.items if i["balance_id"] not in reset), ZERO
    )
    assert_ledgers(before, current, entries)


def test_expire_leaves_unexpired_and_finalized_locks_alone() -> None:
    def lock(lock_id: str, status: LockStatus, expires_at: datetime | None) -> LockRow:
        return LockRow(
            customer_id="cus",
            lock_id=lock_id,
            feature_id="feat",
            entity_id=None,
            status=status,
            amount=Decimal(1),
            items=[{"balance_id": "bal_0", "value": "1", "period": 0}],
            overage_behavior=OverageBehavior.REJECT,
            expires_at=expires_at,
            created_at=NOW,
            finalized_at=None if status is LockStatus.ACTIVE else NOW,
        )

    locks = [
        lock("no_expiry", LockStatus.ACTIVE, None),
        lock("ahead", LockStatus.ACTIVE, NOW + timedelta(seconds=1)),
        lock("done", LockStatus.CONFIRMED, NOW - timedelta(days=1)),
        lock("gone", LockStatus.RELEASED, NOW - timedelta(days=1)),
        lock("due", LockStatus.ACTIVE, NOW),  # expires_at == now: expired
    ]
    row = _row("bal_0", usage=Decimal(5))
    settled, entries = expire(locks, [row], NOW)
    assert [(s.lock_id, s.status) for s in settled] == [("due", LockStatus.EXPIRED)]
    assert row.usage == 4 and [e.usage_delta for e in entries] == [Decimal(-1)]


# --- locks that are not active, give-backs across a reset ------------------------------------


@EXAMPLES
@given(
    FEATURES,
    LOCK_AMOUNTS,
    BEHAVIORS,
    st.sampled_from([LockStatus.CONFIRMED, LockStatus.RELEASED, LockStatus.EXPIRED]),
    st.sampled_from(FinalizeAction),
)
def test_finalizing_a_lock_that_is_not_active_is_refused_and_changes_nothing(
    rows: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    status: LockStatus,
    action: FinalizeAction,
) -> None:
    work = deepcopy(rows)
    taken = take_lock(work, amount, behavior)
    if taken is None:
        return
    lock = copy(taken[0])
    lock.status = status
    held = deepcopy((work, lock))
    with pytest.raises(LockNotActive):
        finalize(lock, work, action, None, NOW)
    assert (work, lock) == held


def test_a_lock_whose_id_is_taken_is_refused() -> None:
    rows = [_row("bal_0")]
    before = deepcopy(rows)
    with pytest.raises(LockExists):
        reserve(
            rows,
            True,
            scope=SCOPE,
            lock_id="lock_1",
            amount=Decimal(1),
            behavior=OverageBehavior.REJECT,
            expires_at=None,
            now=NOW,
        )
    with pytest.raises(InvalidRequest):
        reserve(
            rows,
            False,
            scope=SCOPE,
            lock_id="lock_2",
            amount=Decimal(1),
            behavior=OverageBehavior.REJECT,
            expires_at=NOW,
            now=NOW,
        )
    assert rows == before


@EXAMPLES
@given(FEATURES, LOCK_AMOUNTS, BEHAVIORS, st.sets(st.integers(0, 4)), st.none() | LOCK_AMOUNTS)
def test_give_back_skips_balances_whose_period_moved_or_that_are_gone(
    rows: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    moved: set[int],
    limit: Decimal | None,
) -> None:
    work = deepcopy(rows)
    taken = take_lock(work, amount, behavior)
    if taken is None:
        return
    lock, _ = taken
    # Some balances reset since (their reset_count moved on); one of them may even be gone.
    for i in moved:
        if i < len(work):
            work[i].reset_count += 1
    present = work[:-1] if 4 in moved else work
    before = deepcopy(present)
    entries = give_back(lock, present, EntryKind.RELEASE, NOW, limit)
    stale = {row.id for row in work if row.id not in {p.id for p in present}} | {
        work[i].id for i in moved if i < len(work)
    }
    assert not any(e.balance_id in stale for e in entries)
    held = {i["balance_id"]: Decimal(i["value"]) for i in lock.items}
    returnable = sum((v for b, v in held.items() if b not in stale), ZERO)
    expected = returnable if limit is None else min(limit, returnable)
    assert -sum((e.usage_delta for e in entries), ZERO) == expected
    for old, new in zip(before, present, strict=True):
        back = old.usage - new.usage
        assert 0 <= back <= held.get(old.id, ZERO)
        if old.id in stale:
            assert new == old


def test_confirming_more_than_is_left_under_reject_is_refused_and_the_lock_stays() -> None:
    rows = [_row("bal_0"), _row("bal_1")]  # 10 + 10 granted
    lock, _ = reserve(
        rows,
        False,
        scope=SCOPE,
        lock_id="lock_1",
        amount=Decimal(4),
        behavior=OverageBehavior.REJECT,
        expires_at=None,
        now=NOW,
    )
    before = deepcopy((rows, lock))
    with pytest.raises(InsufficientBalance):  # 4 held + 16 left: 21 is one too many
        finalize(lock, rows, FinalizeAction.CONFIRM, Decimal(21), NOW)
    assert (rows, lock) == before
    settled, _ = finalize(lock, rows, FinalizeAction.CONFIRM, Decimal(20), NOW)
    assert settled.amount == 20 and [row.remaining for row in rows] == [ZERO, ZERO]


# --- a give-back after the usage was already given back --------------------------------------


def _row(balance_id: str, usage: Decimal = ZERO) -> BalanceRow:
    return BalanceRow(
        customer_id="cus",
        id=balance_id,
        feature_id="feat",
        entity_id=None,
        interval=Interval.ONE_OFF,
        interval_count=1,
        included_grant=Decimal(10),
        prepaid_grant=ZERO,
        adjustment=ZERO,
        usage=usage,
        unlimited=False,
        overage_allowed=False,
        reset_anchor_at=None,
        next_reset_at=None,
        expires_at=None,
        reset_count=0,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def test_releasing_a_lock_after_its_usage_was_given_back_does_not_credit_twice() -> None:
    rows = [_row("bal_0")]  # granted 10, usage 0
    lock, _ = reserve(
        rows,
        False,
        scope=SCOPE,
        lock_id="lock_1",
        amount=Decimal(5),
        behavior=OverageBehavior.REJECT,
        expires_at=None,
        now=NOW,
    )
    track(rows, Decimal(-5), None, NOW)  # gives back the 5 in use: usage 0, remaining 10
    finalize(lock, rows, FinalizeAction.RELEASE, None, NOW)
    assert rows[0].usage >= 0  # got -5
    assert rows[0].remaining <= rows[0].granted  # got 15 of 10 granted


# --- reads, expiry limits, entities ----------------------------------------------------------


@EXAMPLES
@given(FEATURES, LOCK_AMOUNTS, BEHAVIORS, LIFETIMES, LATER)
def test_a_read_shows_an_expired_lock_as_the_next_write_persists_it(
    rows: list[BalanceRow],
    amount: Decimal,
    behavior: OverageBehavior,
    lifetime: timedelta,
    wait: timedelta,
) -> None:
    work = deepcopy(rows)
    taken = take_lock(work, amount, behavior, NOW + lifetime + timedelta(milliseconds=1))
    if taken is None:
        return
    lock, _ = taken
    stored = deepcopy(work)
    later = NOW + wait
    shown = view_released(work, [lock], later)
    written, _, _ = bring_up_to_date(work, [lock], later)
    assert work == stored  # reads change nothing
    for row, seen, persisted in zip(work, shown, written, strict=True):
        assert state_at(seen, later) == state_at(persisted, later)
        assert seen.version == row.version  # shown, not written


def test_a_lock_more_than_a_day_ahead_is_refused_and_changes_nothing() -> None:
    rows = [_row("bal_0")]
    before = deepcopy(rows)
    for expires_at in (NOW, NOW + LONGEST_LOCK + timedelta(milliseconds=1)):
        with pytest.raises(InvalidRequest):
            reserve(
                rows,
                False,
                scope=SCOPE,
                lock_id="lock_1",
                amount=Decimal(1),
                behavior=OverageBehavior.REJECT,
                expires_at=expires_at,
                now=NOW,
            )
    assert rows == before


def _entity_row(balance_id: str, entity_id: str | None, interval: Interval) -> BalanceRow:
    row = _row(balance_id)
    row.entity_id = entity_id
    row.interval = interval
    return row


def test_an_entity_draws_on_its_own_balances_before_its_customers() -> None:
    pool_daily = _entity_row("bal_0", None, Interval.DAY)
    own_one_off = _entity_row("bal_1", "e1", Interval.ONE_OFF)
    own_daily = _entity_row("bal_2", "e1", Interval.DAY)
    pool_one_off = _entity_row("bal_3", None, Interval.ONE_OFF)
    ordered = draw_order([pool_daily, own_one_off, own_daily, pool_one_off])
    assert [row.id for row in ordered] == ["bal_2", "bal_1", "bal_0", "bal_3"]
    pool_one_off.unlimited = True  # a sink leads, as in Autumn, even the customer's
    ordered = draw_order([pool_daily, own_one_off, own_daily, pool_one_off])
    assert [row.id for row in ordered] == ["bal_3", "bal_2", "bal_1", "bal_0"]


def test_an_expired_lock_is_given_back_only_by_who_holds_its_balances() -> None:
    pool = _entity_row("bal_0", None, Interval.ONE_OFF)
    own = _entity_row("bal_1", "e1", Interval.ONE_OFF)
    entity_scope = ScopeKey("cus", "feat", "e1")
    later = NOW + timedelta(hours=2)

    def lock_on(rows: list[BalanceRow], amount: int) -> LockRow:
        lock, _ = reserve(
            rows,
            False,
            scope=entity_scope,
            lock_id=f"lock_{amount}",
            amount=Decimal(amount),
            behavior=OverageBehavior.REJECT,
            expires_at=NOW + timedelta(hours=1),
            now=NOW,
        )
        return lock

    on_pool = lock_on([deepcopy(pool)], 4)
    on_both = lock_on([deepcopy(own), deepcopy(pool)], 12)  # 10 of its own, 2 of the pool
    assert {item["balance_id"] for item in on_both.items} == {"bal_0", "bal_1"}
    locks = [on_pool, on_both]
    # A customer-level command holds the pool only: the lock on it alone is its to give back.
    assert releasable(locks, [pool], [SCOPE], later) == [on_pool]
    # The entity's command holds both scopes: a balance it lacks would be gone.
    assert releasable(locks, [own, pool], [entity_scope, SCOPE], later) == [on_both, on_pool]
    assert releasable(locks, [], [entity_scope, SCOPE], later) == [on_both, on_pool]
    assert releasable(locks, [own, pool], [entity_scope, SCOPE], NOW) == []  # not expired
