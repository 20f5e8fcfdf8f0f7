"""The write commands of metering and gating: ``track``, ``batch_track``, and ``check`` that
uses or reserves.

Each locks every balance the request draws on (an entity's own and its customer's) and the
feature's expired reservations, brings them up to date, then applies its rule (see
``consumption.rules``, ``reservations.rules``).
"""

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.balances.allocation import OverageBehavior, per_balance
from app.balances.commands import keep
from app.balances.errors import BalanceNotFound
from app.balances.rows import BalanceRow, RowKey, ScopeKey
from app.balances.rules import Change
from app.balances.table import TABLE as BALANCES
from app.balances.table import LockedBalances
from app.batcher.protocols import Envelope, Enveloped
from app.consumption import rules
from app.consumption.errors import ItemFailed
from app.consumption.schemas import (
    BatchTrackItem,
    BatchTrackResponse,
    BatchTrackResult,
    CheckParams,
    CheckResponse,
    Deduction,
    FeatureBalance,
    TrackParams,
    TrackResponse,
)
from app.core.errors import DomainError, InvalidRequest
from app.core.json import render_reply
from app.core.reply import Reply
from app.reservations import rules as reservations
from app.reservations.rows import (
    ActiveLocks,
    LockKey,
    LockRow,
    NewLock,
    customer_level,
    draws_on,
)
from app.reservations.table import TABLE as LOCKS
from app.reservations.table import LockedReservations

logger = logging.getLogger(__name__)


ScopeRows = Callable[[ScopeKey], list[BalanceRow]]
"""Every locked balance of a scope, in id order (``LockedBalances.scope``, or an index)."""


def current_feature(
    states: Mapping[str, Any], scope: ScopeKey, now: datetime, rows_of: ScopeRows | None = None
) -> tuple[list[BalanceRow], Change, list[LockRow]]:
    """The live balances ``scope`` draws on as they are now (due resets persisted, the expired
    reservations this command may give back given back, which is kept at once in the batch's
    reservations), and the change to keep."""
    balances: LockedBalances = states[BALANCES]
    locks: LockedReservations = states[LOCKS]
    scopes = draws_on(scope)
    rows_of = rows_of or balances.scope
    held = [row for drawn in scopes for row in rows_of(drawn)]
    expired = reservations.releasable(locks.active_of(scope), held, scopes, now)
    rows = [row for row in held if not row.is_expired(now)]
    current, settled, entries = reservations.bring_up_to_date(rows, expired, now)
    return current, Change(saved=current, entries=entries), settled


def keep_feature(
    states: Mapping[str, Any],
    change: Change,
    locks: Sequence[LockRow],
    envelope: Envelope,
) -> None:
    """Hand the batch what the rules decided, reservations included."""
    keep(states, change, envelope.context)
    reservations_state: LockedReservations = states[LOCKS]
    reservations_state.save(locks)


def feature_wants(scope: ScopeKey, now: datetime) -> dict[str, list[Hashable]]:
    """Every balance ``scope`` draws on, and every expired reservation of the feature (an
    entity's may hold its customer's balances)."""
    return {BALANCES: list(draws_on(scope)), LOCKS: [ActiveLocks(customer_level(scope), now)]}


def track(
    states: Mapping[str, Any],
    p: TrackParams | BatchTrackItem,
    envelope: Envelope,
    rows_of: ScopeRows | None = None,
) -> TrackResponse:
    """Apply one track to the batch's rows; raises a ``DomainError`` having kept nothing."""
    now = envelope.now
    if p.timestamp is not None and p.timestamp > now:
        raise InvalidRequest("timestamp must not be in the future.", "timestamp")
    current, change, settled = current_feature(states, _scope(p), now, rows_of)
    if not current:
        who = f"entity '{p.entity_id}' nor for the customer" if p.entity_id else "the customer"
        raise BalanceNotFound(
            f"Customer '{p.customer_id}' has no live balance of feature '{p.feature_id}' for {who}."
        )
    deductions, entries = rules.track(current, p.value, p.overage_behavior, now)
    change.entries += entries
    response = TrackResponse(
        customer_id=p.customer_id,
        feature_id=p.feature_id,
        entity_id=p.entity_id,
        value=p.value,
        deducted=sum((draw.amount for draw in deductions), rules.ZERO),
        balance=FeatureBalance.of(p.feature_id, current, now),
        deductions=[Deduction.of(row, amount, now) for row, amount in per_balance(deductions)],
    )
    keep_feature(states, change, settled, envelope)  # last: nothing above kept anything
    return response


def _scope(p: TrackParams | BatchTrackItem | CheckParams) -> ScopeKey:
    return ScopeKey(p.customer_id, p.feature_id, p.entity_id)


@dataclass(slots=True)
class Track(Enveloped):
    params: TrackParams
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.params.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        return feature_wants(_scope(self.params), self.now)

    def apply(self, states: Mapping[str, Any]) -> Reply:
        return render_reply(track(states, self.params, self.envelope))


@dataclass(slots=True)
class BatchTrack(Enveloped):
    """``balances.batch_track``: every item applied in order in ONE command, so one transaction
    and one Idempotency-Key cover the whole call (exactly once, answers stored with it).

    Each item sees the previous ones' effects. An item that fails changes nothing (the rules
    are pure, and an item keeps its rows only once it has succeeded) and gets its own error in
    its result; the others still apply.

    ``partition``: the first item's customer. The batcher needs one key to queue a command by;
    a batch of one customer's items (the usual case) then meets that customer's other commands
    in order, like any of them. Items of other customers may share rows with commands queued in
    other partitions: the rows' locks decide (``SKIP LOCKED`` sends whichever comes second to
    the waiting path, which waits for the first to commit), as with another process.
    """

    items: list[BatchTrackItem]
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.items[0].customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        wants: dict[str, list[Hashable]] = {BALANCES: [], LOCKS: []}
        for item in self.items:
            for table, keys in feature_wants(_scope(item), self.now).items():
                wants[table] += keys
        return {table: list(dict.fromkeys(keys)) for table, keys in wants.items()}

    def apply(self, states: Mapping[str, Any]) -> Reply:
        rows_of = _scope_index(states[BALANCES])
        results = []
        for index, item in enumerate(self.items):
            try:
                results.append(BatchTrackResult.of(track(states, item, self.envelope, rows_of)))
            except DomainError as error:
                results.append(BatchTrackResult.failed(error))
            except Exception:  # a bug: this item alone fails, having kept nothing
                logger.exception("batch_track item %d failed", index)
                failure = ItemFailed("The server failed to apply this item; it changed nothing.")
                results.append(BatchTrackResult.failed(failure))
        return render_reply(BatchTrackResponse.of(results))


def _scope_index(balances: LockedBalances) -> ScopeRows:
    """``balances.scope`` in O(1) for a command of many items: tracks change rows, never which
    rows there are, so each scope's keys are found once."""
    keys: dict[ScopeKey, list[RowKey]] = {}
    for key, row in sorted(balances.rows.items(), key=lambda pair: pair[1].id):
        keys.setdefault(row.scope, []).append(key)

    def rows_of(scope: ScopeKey) -> list[BalanceRow]:
        return [balances.rows[key] for key in keys.get(scope, ())]

    return rows_of


@dataclass(slots=True)
class CheckAndChange(Enveloped):
    """``check`` with ``send_event`` (use when allowed) or with ``lock`` (reserve; with
    ``send_event`` too, the same single reservation)."""

    params: CheckParams
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.params.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        wants = feature_wants(_scope(self.params), self.now)
        if self.params.lock is not None:
            wants[LOCKS].append(NewLock(LockKey(self.params.customer_id, self.params.lock.lock_id)))
        return wants

    def apply(self, states: Mapping[str, Any]) -> Reply:
        p, now = self.params, self.now
        if p.lock is not None:  # refused whether or not the lock would be taken
            reservations.check_expiry(p.lock.expires_at, now)
        current, change, locks = current_feature(states, _scope(p), now)
        lock = None
        if p.lock is None:
            allowed, entries = rules.check_and_use(current, p.required_balance, now)
            change.entries += entries
        else:
            # The reservation is the event: with send_event too, the units are held once (ledger
            # `lock`), and finalize confirms or releases them.
            behavior = p.lock.overage_behavior or OverageBehavior.REJECT
            allowed = bool(current) and (
                behavior is not OverageBehavior.REJECT
                or rules.is_allowed(current, p.required_balance, now)
            )
            if allowed:
                reserved: LockedReservations = states[LOCKS]
                lock, entries = reservations.reserve(
                    current,
                    reserved.id_taken(LockKey(p.customer_id, p.lock.lock_id)),
                    scope=_scope(p),
                    lock_id=p.lock.lock_id,
                    amount=p.required_balance,
                    behavior=behavior,
                    expires_at=p.lock.expires_at,
                    now=now,
                )
                change.entries += entries
                locks.append(lock)
        keep_feature(states, change, locks, self.envelope)
        response = CheckResponse(
            allowed=allowed,
            customer_id=p.customer_id,
            feature_id=p.feature_id,
            entity_id=p.entity_id,
            required_balance=p.required_balance,
            balance=FeatureBalance.of(p.feature_id, current, now),
            lock_id=lock.lock_id if lock else None,
            reserved=lock.amount if lock else None,
        )
        return render_reply(response)
