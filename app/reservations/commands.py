"""The write command of reservations: ``finalize`` (confirm or release a lock)."""

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from app.balances.commands import keep
from app.balances.rows import ScopeKey
from app.balances.rules import Change
from app.balances.table import TABLE as BALANCES
from app.balances.table import LockedBalances
from app.batcher.protocols import Envelope, Enveloped
from app.core.json import render_reply
from app.core.problems import problem_reply
from app.core.reply import Reply
from app.core.schemas import SuccessResponse
from app.reservations import rules
from app.reservations.errors import LockNotActive, LockNotFound
from app.reservations.models import LockStatus
from app.reservations.rows import ActiveLocks, LockRow, draws_on
from app.reservations.schemas import FinalizeLockParams
from app.reservations.table import TABLE as LOCKS
from app.reservations.table import LockedReservations


@dataclass(slots=True)
class Finalize(Enveloped):
    """``found``: the lock as read before the batch (to know its customer and feature); the
    batch locks it again and decides on what it finds then."""

    params: FinalizeLockParams
    found: LockRow
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.found.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        # Balances first, then the lock row: the service-wide lock order. An entity's lock may
        # hold its customer's balances too.
        return {BALANCES: draws_on(self.found.scope), LOCKS: [self.found.key]}

    def apply(self, states: Mapping[str, Any]) -> Reply:
        now = self.now
        locks: LockedReservations = states[LOCKS]
        lock = locks.get(self.found.key)
        if lock is None:  # cannot happen: locks are never deleted
            raise LockNotFound(f"There is no lock '{self.found.lock_id}'.")
        balances: LockedBalances = states[BALANCES]
        # Every balance the lock's scope draws on, expired ones too: a reservation is given
        # back to the balance it was taken from.
        rows = [row for scope in draws_on(lock.scope) for row in balances.scope(scope)]
        current, _, entries = rules.bring_up_to_date(rows, [], now)
        settled, settling = rules.finalize(
            lock, current, self.params.action, self.params.override_value, now
        )
        keep(states, Change(saved=current, entries=entries + settling), self.envelope.context)
        locks.save([settled])
        if settled.status == LockStatus.EXPIRED:
            # Answered, not raised: the automatic release commits with this answer.
            return problem_reply(
                LockNotActive(f"Lock '{lock.lock_id}' expired and was released automatically.")
            )
        return render_reply(SuccessResponse())


@dataclass(slots=True)
class ExpireLocks(Enveloped):
    """Give back the expired reservations of one scope (the sweeper's command), holding every
    balance the scope draws on."""

    scope: ScopeKey
    envelope: Envelope

    @property
    def partition(self) -> str:
        return self.scope.customer_id

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        scopes = draws_on(self.scope)
        return {BALANCES: scopes, LOCKS: [ActiveLocks(scope, self.now) for scope in scopes]}

    def apply(self, states: Mapping[str, Any]) -> Reply:
        balances: LockedBalances = states[BALANCES]
        locks: LockedReservations = states[LOCKS]
        scopes = draws_on(self.scope)
        rows = [row for scope in scopes for row in balances.scope(scope)]
        expired = rules.releasable(locks.active_of(self.scope), rows, scopes, self.now)
        current, settled, entries = rules.bring_up_to_date(rows, expired, self.now)
        keep(states, Change(saved=current, entries=entries), self.envelope.context)
        locks.save(settled)
        return render_reply(ExpiredLocks(expired=len(settled)))


class ExpiredLocks(BaseModel):
    expired: int
