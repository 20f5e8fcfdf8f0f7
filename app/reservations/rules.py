"""The rules of reservations, as pure functions over locked rows and one ``now``.

Taking a lock deducts its amount at once (ledger ``lock``), so concurrent checks cannot promise
the same units twice. ``confirm`` keeps it (or moves it to ``override_value``), ``release``
gives it back, and a lock past ``expires_at`` is given back automatically. Each lock item
remembers the reset period it was taken in: a give-back never lands in a later period, whose
usage was already cleared by the reset.

An entity draws on its own balances first, then on its customer's (``allocation.draw_order``),
so an entity's lock may hold units of customer-level balances: whoever gives it back must hold
those rows too (``releasable``).
"""

from collections.abc import Iterable
from copy import copy
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from app.balances.allocation import Draw, OverageBehavior, apply_draws, draw_order, plan_deduction
from app.balances.resets import due_reset
from app.balances.rows import BalanceRow, ScopeKey
from app.balances.rules import catch_up
from app.core.errors import InvalidRequest
from app.ledger.entries import Entry
from app.ledger.models import EntryKind
from app.reservations.errors import LockExists, LockNotActive
from app.reservations.models import LockStatus
from app.reservations.rows import LockRow, draws_on
from app.reservations.schemas import FinalizeAction

ZERO = Decimal(0)
# Autumn refuses a lock whose expires_at is more than a day ahead.
LONGEST_LOCK = timedelta(hours=24)


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    """A lock's ``expires_at``: in the future, and at most ``LONGEST_LOCK`` ahead."""
    if expires_at is None:
        return
    if expires_at <= now:
        raise InvalidRequest("lock.expires_at must be in the future.", "lock.expires_at")
    if expires_at > now + LONGEST_LOCK:
        raise InvalidRequest("lock.expires_at must be at most 24 hours ahead.", "lock.expires_at")


def reserve(
    balances: list[BalanceRow],
    id_taken: bool,
    *,
    scope: ScopeKey,
    lock_id: str,
    amount: Decimal,
    behavior: OverageBehavior,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[LockRow, list[Entry]]:
    """Deduct ``amount`` from ``balances`` (the caller's up-to-date copies of every balance the
    scope draws on) and the lock row that holds it. ``id_taken``: a lock of any customer has had
    ``lock_id`` (ids are unique across the deployment and never reused)."""
    check_expiry(expires_at, now)
    if id_taken:
        raise LockExists(
            f"Lock id '{lock_id}' is already taken: lock ids are unique across the deployment "
            "and are not reused."
        )
    plan = plan_deduction(draw_order(balances), amount, behavior)
    lock = LockRow(
        customer_id=scope.customer_id,
        lock_id=lock_id,
        feature_id=scope.feature_id,
        entity_id=scope.entity_id,
        status=LockStatus.ACTIVE,
        amount=sum((draw.amount for draw in plan), ZERO),
        items=[_item(draw) for draw in plan],
        overage_behavior=behavior,
        expires_at=expires_at,
        created_at=now,
        finalized_at=None,
    )
    return lock, apply_draws(plan, EntryKind.LOCK, now)


def _item(draw: Draw) -> dict[str, Any]:
    """What a lock remembers of a draw: the balance, the amount, the reset period it was taken
    in, and the carry-over it came from (if any)."""
    item: dict[str, Any] = {
        "balance_id": draw.balance.id,
        "value": str(draw.amount),
        "period": draw.balance.reset_count,
    }
    if draw.rollover is not None:
        item["rollover"] = draw.rollover
    return item


def releasable(
    locks: Iterable[LockRow],
    balances: Iterable[BalanceRow],
    held: Iterable[ScopeKey],
    now: datetime,
) -> list[LockRow]:
    """The active locks past expiry that a command may give back, holding every balance of the
    scopes ``held`` (``balances``: those rows): a lock whose own scopes it holds (a balance it
    lacks is then gone), or whose every item is on a balance it holds. Any other waits for a
    command that holds them (its entity's next write, its finalize, the sweeper)."""
    ids = {row.id for row in balances}
    scopes = set(held)
    found = [
        lock
        for lock in locks
        if lock.status == LockStatus.ACTIVE
        and lock.is_expired(now)
        and (
            set(draws_on(lock.scope)) <= scopes
            or all(item["balance_id"] in ids for item in lock.items)
        )
    ]
    return sorted(found, key=lambda lock: lock.lock_id)


def view_released(
    balances: list[BalanceRow], locks: list[LockRow], now: datetime
) -> list[BalanceRow]:
    """What a read shows: ``balances`` with the expired active ``locks`` given back and due
    resets applied, as the next write will do it (``bring_up_to_date``), writing nothing.

    A changed row is shown with its stored ``version`` and ``updated_at``: nothing was written.
    """
    current, _, _ = bring_up_to_date(balances, locks, now)
    shown = []
    for stored, updated in zip(balances, current, strict=True):
        if updated.version == stored.version:
            shown.append(stored)
        else:
            row = copy(updated)
            row.version, row.updated_at = stored.version, stored.updated_at
            shown.append(row)
    return shown


def expire(
    locks: list[LockRow], balances: list[BalanceRow], now: datetime, by: datetime | None = None
) -> tuple[list[LockRow], list[Entry]]:
    """Give back every active lock past its expiry by ``by`` (default: ``now``) into
    ``balances``, the caller's copies."""
    settled, entries = [], []
    for lock in locks:
        if lock.status == LockStatus.ACTIVE and lock.is_expired(by or now):
            entries += give_back(lock, balances, EntryKind.RELEASE, now)
            settled.append(_settle(lock, LockStatus.EXPIRED, now))
    return settled, entries


def finalize(
    lock: LockRow,
    balances: list[BalanceRow],
    action: FinalizeAction,
    override: Decimal | None,
    now: datetime,
) -> tuple[LockRow, list[Entry]]:
    """Confirm or release ``lock``. Status ``expired`` in the result: it had run out and has
    just been given back (the caller answers 409 ``lock_not_active`` and keeps the release)."""
    if lock.status != LockStatus.ACTIVE:
        raise LockNotActive(f"Lock '{lock.lock_id}' is already {lock.status}.")
    if lock.is_expired(now):
        entries = give_back(lock, balances, EntryKind.RELEASE, now)
        return _settle(lock, LockStatus.EXPIRED, now), entries
    if action is FinalizeAction.RELEASE:
        if override is not None:
            raise InvalidRequest("override_value goes with confirm, not release.", "override_value")
        entries = give_back(lock, balances, EntryKind.RELEASE, now)
        return _settle(lock, LockStatus.RELEASED, now), entries
    settled = _settle(lock, LockStatus.CONFIRMED, now)
    difference = ZERO if override is None else override - lock.amount
    if override is not None:
        settled.amount = override
    if difference < 0:
        return settled, give_back(lock, balances, EntryKind.CONFIRM, now, limit=-difference)
    if difference > 0:
        live = [row for row in balances if not row.is_expired(now)]
        behavior = OverageBehavior(lock.overage_behavior)
        plan = plan_deduction(draw_order(live), difference, behavior)
        return settled, apply_draws(plan, EntryKind.CONFIRM, now)
    by_id = {row.id: row for row in balances}
    held = [by_id[item["balance_id"]] for item in lock.items if item["balance_id"] in by_id]
    return settled, apply_draws([Draw(row, ZERO) for row in held], EntryKind.CONFIRM, now)


def give_back(
    lock: LockRow,
    balances: list[BalanceRow],
    kind: EntryKind,
    now: datetime,
    limit: Decimal | None = None,
) -> list[Entry]:
    """Return what the lock holds (at most ``limit``), last-deducted balance first.

    An item is skipped when its balance is gone or has reset since the lock was taken: that
    period's usage is gone, so giving it back would credit the new period. An item drawn on a
    carry-over goes back to that carry-over while it lasts (it outlives resets), never beyond
    what it was granted.
    """
    by_id = {row.id: row for row in balances}
    left = lock.amount if limit is None else limit
    plan = []
    taken: dict[tuple[str, int | None], Decimal] = {}
    for item in reversed(lock.items):
        row = by_id.get(item["balance_id"])
        rollover = item.get("rollover")
        if left <= 0 or row is None:
            continue
        if rollover is None:
            if row.reset_count != item["period"]:
                continue
            # Never more than the balance still uses: usage already given back (a negative
            # track, usage set to 0) must not be credited a second time.
            room = row.usage
        else:
            tranche = next((t for t in row.rollovers if t.period == rollover), None)
            if tranche is None:
                continue
            room = tranche.granted - tranche.remaining
        key = (row.id, rollover)
        back = min(left, Decimal(item["value"]), max(room - taken.get(key, ZERO), ZERO))
        if back > 0:
            plan.append(Draw(row, -back, rollover))
            taken[key] = taken.get(key, ZERO) + back
            left -= back
    return apply_draws(plan, kind, now)


def _settle(lock: LockRow, status: LockStatus, now: datetime) -> LockRow:
    settled = copy(lock)
    settled.status = status
    settled.finalized_at = now
    return settled


def bring_up_to_date(
    balances: list[BalanceRow], locks: list[LockRow], now: datetime
) -> tuple[list[BalanceRow], list[LockRow], list[Entry]]:
    """Copies of a feature's ``balances`` with due resets persisted and its expired ``locks``
    given back: the state every change of usage starts from.

    A lock that ran out before a due reset is given back first, into the period it was taken
    in, so the reset counts (and carries over) its units as unused, as Autumn, which releases
    a lock at its ``expires_at``, does. The rest are given back after the resets.
    """
    current = [copy(row) for row in balances]
    boundaries = [row.next_reset_at for row in current if due_reset(row, now) is not None]
    settled: list[LockRow] = []
    entries: list[Entry] = []
    if boundaries:
        settled, entries = expire(locks, current, now, by=min(b for b in boundaries if b))
    for row in current:
        entries += catch_up(row, now)
    done = {lock.key for lock in settled}
    later, released = expire([lock for lock in locks if lock.key not in done], current, now)
    return current, settled + later, entries + released
