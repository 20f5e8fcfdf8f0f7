"""The rules of one balance, as pure functions: (rows, now, request) → (new rows, entries).

No I/O, no clock, no session: a rule takes the locked rows and one ``now``, and returns copies
with the change applied plus the ledger entries that describe it, or raises a domain error
having changed nothing. The write path stores what the rules return.
"""

from copy import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from app.balances import resets, rollovers
from app.balances.errors import (
    AmbiguousBalance,
    AmountOutOfRange,
    BalanceExists,
    BalanceNotFound,
    BalanceUnlimited,
)
from app.balances.models import Interval
from app.balances.rows import BalanceRow
from app.core.errors import InvalidRequest
from app.core.types import QUANTITY_LIMIT
from app.ledger.entries import Entry
from app.ledger.models import EntryKind

ZERO = Decimal(0)


@dataclass(slots=True)
class Change:
    """What a rule decided: rows to keep (new values), rows to insert, rows to delete."""

    saved: list[BalanceRow] = field(default_factory=list)
    inserted: list[BalanceRow] = field(default_factory=list)
    deleted: list[BalanceRow] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)


def record(
    row: BalanceRow,
    kind: EntryKind,
    now: datetime,
    *,
    remaining_delta: Decimal = ZERO,
    usage_delta: Decimal = ZERO,
    rollover_delta: Decimal = ZERO,
) -> Entry:
    """The entry of a change just made to ``row`` (the rule's own copy): one change is one
    entry and one version, so an entry's ``balance_version`` names the state it produced."""
    row.version += 1
    row.updated_at = now
    return _entry(row, kind, now, (remaining_delta, usage_delta, rollover_delta), after=row)


def record_deletion(row: BalanceRow, now: datetime) -> Entry:
    """The closing entry: takes remaining, usage and rollovers to zero, so a deleted balance
    sums to 0."""
    row.version += 1
    deltas = (-row.remaining, -row.usage, -rollovers.total(row.rollovers))
    return _entry(row, EntryKind.DELETE, now, deltas, after=None)


def _entry(
    row: BalanceRow,
    kind: EntryKind,
    now: datetime,
    deltas: tuple[Decimal, Decimal, Decimal],
    after: BalanceRow | None,
) -> Entry:
    remaining_delta, usage_delta, rollover_delta = deltas
    return Entry(
        customer_id=row.customer_id,
        balance_id=row.id,
        feature_id=row.feature_id,
        entity_id=row.entity_id,
        interval=row.interval,
        kind=kind,
        remaining_delta=remaining_delta,
        usage_delta=usage_delta,
        remaining_after=after.remaining if after else ZERO,
        usage_after=after.usage if after else ZERO,
        granted_after=after.granted if after else ZERO,
        balance_version=row.version,
        created_at=now,
        rollover_delta=rollover_delta,
        rollover_after=rollovers.total(after.rollovers) if after else ZERO,
    )


# Before 1973-03-03 in epoch milliseconds, yet a date in the 2020s-2990s in seconds: such an
# instant is almost certainly seconds sent where milliseconds are expected (1790000000).
_SECONDS_LOOKALIKE = datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)


def require_future(value: datetime | None, now: datetime, field: str) -> None:
    """Refuse (422) an instant that is not after ``now``: a past ``expires_at`` or
    ``next_reset_at`` is a mistake (often seconds sent as milliseconds), never a request."""
    if value is None or value > now:
        return
    hint = ""
    if value < _SECONDS_LOOKALIKE:
        hint = " (times are Unix epoch milliseconds; this looks like seconds)"
    raise InvalidRequest(f"{field} must be in the future{hint}.", field)


def require_not_negative(value: Decimal | None, field: str) -> None:
    """Refuse (422) a negative usage or grant: no balance can have used or been granted less
    than nothing."""
    if value is not None and value < 0:
        raise InvalidRequest(f"{field} must not be negative.", field)


def check_range(row: BalanceRow) -> None:
    """Refuse (422) a change that takes any amount of the balance to 10^15 or beyond."""
    for name in ("included_grant", "adjustment", "usage", "granted", "remaining"):
        if abs(getattr(row, name)) >= QUANTITY_LIMIT:
            raise AmountOutOfRange(f"This change would take {name} to 10^15 or beyond.")


def catch_up(row: BalanceRow, now: datetime) -> list[Entry]:
    """Persist in ``row`` (a copy) what time alone did by ``now`` (``resets.catch_up``), one
    entry per step: carry-overs that expired, a due reset, what it carried over and trimmed.

    The ``reset`` entry's ``remaining_delta`` is whatever takes remaining back to the grant, so
    the ledger still sums to remaining after the reset.
    """
    caught_up = resets.catch_up(row, now)
    entries = []
    row.rollovers, _ = rollovers.drop_expired(row.rollovers, now)
    if caught_up.expired:  # one that held nothing goes without an entry
        entries.append(
            record(row, EntryKind.ROLLOVER_EXPIRE, now, rollover_delta=-caught_up.expired)
        )
    if caught_up.next_reset_at is None:
        return entries
    remaining_before, usage_before = row.remaining, row.usage
    row.usage = row.adjustment = ZERO
    row.next_reset_at = caught_up.next_reset_at
    row.reset_count += 1
    entries.append(
        record(
            row,
            EntryKind.RESET,
            now,
            remaining_delta=row.remaining - remaining_before,
            usage_delta=-usage_before,
        )
    )
    # Spent-out carry-overs drop at a reset without an entry: they held nothing.
    row.rollovers = caught_up.untrimmed
    if caught_up.carried:
        entries.append(record(row, EntryKind.ROLLOVER, now, rollover_delta=caught_up.carried))
    row.rollovers = caught_up.rollovers
    if caught_up.trimmed:
        entries.append(record(row, EntryKind.ROLLOVER_TRIM, now, rollover_delta=-caught_up.trimmed))
    return entries


def choose_target(
    candidates: list[BalanceRow],
    *,
    customer_id: str,
    feature_id: str | None,
    entity_id: str | None,
    interval: str | None,
    balance_id: str | None,
    now: datetime,
) -> BalanceRow:
    """The one balance a request targets: by ``balance_id`` (it must match every field given),
    else the live balance of (customer, feature, entity[, interval]). Several: ambiguous."""
    if balance_id is not None:
        for row in candidates:
            if row.id == balance_id and all(
                given is None or given == actual
                for given, actual in (
                    (feature_id, row.feature_id),
                    (entity_id, row.entity_id),
                    (interval, row.interval),
                )
            ):
                return row
        raise BalanceNotFound(
            f"No balance '{balance_id}' of customer '{customer_id}' matches the request."
        )
    live = [
        row
        for row in candidates
        if not row.is_expired(now)
        and row.entity_id == entity_id
        and (interval is None or row.interval == interval)
    ]
    if len(live) == 1:
        return live[0]
    scope = f"entity '{entity_id}'" if entity_id else f"customer '{customer_id}'"
    if not live:
        what = f"{interval} balance" if interval else "balance"
        raise BalanceNotFound(f"No live {what} of feature '{feature_id}' for {scope}.")
    intervals = sorted(row.interval for row in live)
    raise AmbiguousBalance(
        f"{len(live)} balances of feature '{feature_id}' for {scope} match "
        f"(intervals: {', '.join(intervals)}): give interval or balance_id.",
        candidates=[{"balance_id": row.id, "interval": row.interval} for row in live],
    )


@dataclass(frozen=True, slots=True)
class Update:
    """The changes ``balances.update`` asks for (None: leave as is)."""

    remaining: Decimal | None = None
    add_to_balance: Decimal | None = None
    usage: Decimal | None = None
    included_grant: Decimal | None = None
    next_reset_at: datetime | None = None
    expires_at: datetime | None = None


def update(target: BalanceRow, request: Update, now: datetime) -> Change:
    """Persist a due reset first (the change applies to the balance as it is now), then each
    requested change with its own entry. ``remaining`` is recorded as the delta it was.

    Impossible values are refused (422) before anything changes: ``usage`` or
    ``included_grant`` below zero, a ``next_reset_at`` or ``expires_at`` not in the future."""
    row = copy(target)
    change = Change(saved=[row])
    change.entries += catch_up(row, now)
    changes_amount = any(
        value is not None for value in (request.remaining, request.add_to_balance, request.usage)
    )
    if row.unlimited and changes_amount:
        raise BalanceUnlimited(
            f"Balance '{row.id}' is unlimited: its remaining and usage cannot be set."
        )
    if request.next_reset_at is not None and row.interval == Interval.ONE_OFF:
        raise InvalidRequest(f"Balance '{row.id}' is one_off and never resets.", "next_reset_at")
    require_future(request.next_reset_at, now, "next_reset_at")
    require_future(request.expires_at, now, "expires_at")
    require_not_negative(request.usage, "usage")
    require_not_negative(request.included_grant, "included_grant")

    def add(kind: EntryKind, **deltas: Decimal) -> None:
        check_range(row)
        change.entries.append(record(row, kind, now, **deltas))

    if request.included_grant is not None:
        delta = request.included_grant - row.included_grant
        row.included_grant = request.included_grant
        add(EntryKind.SET_INCLUDED_GRANT, remaining_delta=delta)
    if request.add_to_balance is not None:
        row.adjustment += request.add_to_balance
        add(EntryKind.ADD, remaining_delta=request.add_to_balance)
    elif request.remaining is not None:
        delta = request.remaining - row.remaining
        row.adjustment += delta
        add(EntryKind.SET_REMAINING, remaining_delta=delta)
    elif request.usage is not None:
        delta = request.usage - row.usage
        row.usage = request.usage
        add(EntryKind.SET_USAGE, remaining_delta=-delta, usage_delta=delta)
    if request.next_reset_at is not None or request.expires_at is not None:
        if request.next_reset_at is not None:
            row.reset_anchor_at = row.next_reset_at = request.next_reset_at
        if request.expires_at is not None:
            row.expires_at = request.expires_at
        add(EntryKind.SET_TIMES)
    return change


def create(new: BalanceRow, holders: list[BalanceRow], now: datetime) -> Change:
    """Insert ``new`` (version 0; its ``create`` entry makes it 1). Its grant must not be
    negative and its ``expires_at`` must be in the future (422 otherwise).

    ``holders``: the locked balances with the same key or id. A live one refuses (409); an
    expired one holding the key is retired first, closed with a ``delete`` entry as if
    deleted by hand: only a live balance owns its key.
    """
    require_not_negative(new.included_grant, "included_grant")
    require_future(new.expires_at, now, "expires_at")
    change = Change()
    for holder in holders:
        if holder.id == new.id:
            raise BalanceExists(f"A balance with id '{new.id}' already exists.")
        if not holder.is_expired(now):
            where = f" for entity '{new.entity_id}'" if new.entity_id else ""
            raise BalanceExists(
                f"Customer '{new.customer_id}' already has a live {new.interval} balance of "
                f"feature '{new.feature_id}'{where}.",
                balance_id=holder.id,
            )
        change.entries.extend(delete(holder, now).entries)
        change.deleted.append(holder)
    row = copy(new)
    change.entries.append(record(row, EntryKind.CREATE, now, remaining_delta=row.remaining))
    change.inserted.append(row)
    return change


def delete(target: BalanceRow, now: datetime) -> Change:
    """Close a balance: persist a due reset, then the ``delete`` entry that takes it to 0."""
    row = copy(target)
    change = Change(deleted=[row])
    change.entries += catch_up(row, now)
    change.entries.append(record_deletion(row, now))
    return change
