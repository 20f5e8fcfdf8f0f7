"""The write commands of balances: what each locks, and its pure rules applied to those rows.

A command is built by an endpoint (request, ``now``, who asks) and run by the batcher inside a
batch's transaction; ``apply`` reads the locked rows, calls the rules, keeps what they return
and renders the answer. It does no I/O.
"""

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.balances import rules
from app.balances.allocation import delete_moving_usage
from app.balances.errors import BalanceExists
from app.balances.models import Interval
from app.balances.periods import boundary
from app.balances.rows import BalanceRow, NewKey, RowKey, ScopeKey, SuppliedId
from app.balances.schemas import (
    Balance,
    BalanceResponse,
    CreateBalanceParams,
    DeleteBalanceParams,
    UpdateBalanceParams,
)
from app.balances.table import TABLE, LockedBalances
from app.batcher.protocols import Envelope, Enveloped
from app.core.context import RequestContext
from app.core.errors import InvalidRequest
from app.core.json import render_reply
from app.core.reply import Reply
from app.core.schemas import SuccessResponse
from app.ledger.entries import PendingEntries
from app.ledger.table import TABLE as LEDGER

ZERO = Decimal(0)


def keep(states: Mapping[str, Any], change: rules.Change, context: RequestContext) -> None:
    """Hand what the rules decided to the batch: rows to write, entries to append."""
    balances: LockedBalances = states[TABLE]
    for row in change.deleted:
        balances.delete(row)
    balances.save(change.saved)
    for row in change.inserted:
        balances.insert(row)
    ledger: PendingEntries = states[LEDGER]
    ledger.add(change.entries, context)


@dataclass(slots=True)
class CreateBalance(Enveloped):
    params: CreateBalanceParams
    new_id: str
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.params.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        p = self.params
        interval = p.reset.interval if p.reset else Interval.ONE_OFF
        keys: list[Hashable] = [
            ScopeKey(p.customer_id, p.feature_id, p.entity_id),
            NewKey(p.customer_id, p.feature_id, p.entity_id, interval),
        ]
        if p.balance_id is not None:
            keys += [SuppliedId(p.balance_id, p.customer_id), RowKey(p.customer_id, p.balance_id)]
        return {TABLE: keys}

    def apply(self, states: Mapping[str, Any]) -> Reply:
        p, now = self.params, self.now
        balances: LockedBalances = states[TABLE]
        if p.balance_id is not None and balances.id_taken(SuppliedId(p.balance_id, p.customer_id)):
            raise BalanceExists(f"A balance with id '{p.balance_id}' already exists.")
        new = new_balance(p, self.new_id, now)
        scope = balances.scope(ScopeKey(p.customer_id, p.feature_id, p.entity_id))
        holders = [row for row in scope if row.interval == new.interval]
        same_id = balances.get(new.key)
        if same_id is not None and same_id not in holders:
            holders.insert(0, same_id)
        change = rules.create(new, holders, now)
        keep(states, change, self.envelope.context)
        return render_reply(BalanceResponse(balance=Balance.of(change.inserted[0], now)))


def new_balance(params: CreateBalanceParams, balance_id: str, now: datetime) -> BalanceRow:
    """The row a create asks for, before its ``create`` entry (version 0)."""
    interval = params.reset.interval if params.reset else Interval.ONE_OFF
    interval_count = params.reset.interval_count if params.reset else 1
    anchor: datetime | None
    if interval is Interval.ONE_OFF:
        if params.next_reset_at is not None:
            raise InvalidRequest(
                "A one_off balance never resets: omit next_reset_at.", "next_reset_at"
            )
        anchor = next_reset_at = None
    elif params.next_reset_at is None:
        anchor, next_reset_at = now, boundary(now, interval, interval_count, 1)
    else:
        rules.require_future(params.next_reset_at, now, "next_reset_at")
        anchor = next_reset_at = params.next_reset_at
    if params.rollover is not None and params.expires_at is not None:
        assert next_reset_at is not None  # the schema refuses a rollover on a one_off balance
        if params.expires_at < next_reset_at:
            raise InvalidRequest(
                "expires_at comes before the first reset, so nothing would ever roll over: "
                "move expires_at after next_reset_at or omit rollover.",
                "expires_at",
            )
    return BalanceRow(
        customer_id=params.customer_id,
        id=params.balance_id or balance_id,
        feature_id=params.feature_id,
        entity_id=params.entity_id,
        interval=interval,
        interval_count=interval_count,
        included_grant=params.included_grant,
        prepaid_grant=ZERO,
        adjustment=ZERO,
        usage=ZERO,
        unlimited=params.unlimited,
        overage_allowed=params.overage_allowed,
        reset_anchor_at=anchor,
        next_reset_at=next_reset_at,
        expires_at=params.expires_at,
        reset_count=0,
        version=0,
        created_at=now,
        updated_at=now,
        rollover=None if params.rollover is None else params.rollover.policy(),
    )


def _target_key(p: UpdateBalanceParams | DeleteBalanceParams) -> Hashable:
    if p.balance_id is not None:
        return RowKey(p.customer_id, p.balance_id)
    assert p.feature_id is not None  # the schemas require one of the two
    return ScopeKey(p.customer_id, p.feature_id, p.entity_id)


def _target(balances: LockedBalances, key: Hashable, p: Any, now: datetime) -> BalanceRow:
    if isinstance(key, RowKey):
        found = balances.get(key)
        candidates = [found] if found is not None else []
    else:
        assert isinstance(key, ScopeKey)
        candidates = balances.scope(key)
    return rules.choose_target(
        candidates,
        customer_id=p.customer_id,
        feature_id=p.feature_id,
        entity_id=p.entity_id,
        interval=p.interval,
        balance_id=p.balance_id,
        now=now,
    )


@dataclass(slots=True)
class UpdateBalance(Enveloped):
    params: UpdateBalanceParams
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.params.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        return {TABLE: [_target_key(self.params)]}

    def apply(self, states: Mapping[str, Any]) -> Reply:
        p, now = self.params, self.now
        target = _target(states[TABLE], _target_key(p), p, now)
        request = rules.Update(
            remaining=p.remaining,
            add_to_balance=p.add_to_balance,
            usage=p.usage,
            included_grant=p.included_grant,
            next_reset_at=p.next_reset_at,
            expires_at=p.expires_at,
        )
        change = rules.update(target, request, now)
        keep(states, change, self.envelope.context)
        return render_reply(BalanceResponse(balance=Balance.of(change.saved[0], now)))


@dataclass(slots=True)
class DeleteBalance(Enveloped):
    params: DeleteBalanceParams
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.params.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        keys = [_target_key(self.params)]
        return {TABLE: keys + [key for key in self._draws_on() if key not in keys]}

    def _draws_on(self) -> list[ScopeKey]:
        """With ``recalculate_balances``: the scopes whose balances take the deleted usage
        (an entity's own, then its customer's; or the customer's)."""
        p = self.params
        if not p.recalculate_balances:
            return []
        assert p.feature_id is not None  # the schema requires it with recalculate_balances
        own = ScopeKey(p.customer_id, p.feature_id, p.entity_id)
        return [own] if p.entity_id is None else [own, ScopeKey(p.customer_id, p.feature_id, None)]

    def apply(self, states: Mapping[str, Any]) -> Reply:
        p, now = self.params, self.now
        balances: LockedBalances = states[TABLE]
        target = _target(balances, _target_key(p), p, now)
        scopes = self._draws_on()
        if not scopes:
            change = rules.delete(target, now)
        elif target.scope != scopes[0]:
            # Only reachable by balance_id: the balance is not in the scope the request names,
            # so the balances that should take its usage are not the ones locked.
            raise InvalidRequest(
                f"Balance '{target.id}' belongs to "
                + (f"entity '{target.entity_id}'" if target.entity_id else "the customer")
                + ": give its entity_id with recalculate_balances.",
                "entity_id",
            )
        else:
            others = [row for scope in scopes for row in balances.scope(scope)]
            change = delete_moving_usage(target, others, now)
        keep(states, change, self.envelope.context)
        return render_reply(SuccessResponse())
