"""A reservation (``balance_locks`` row) as plain data, and the keys it is locked by."""

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.balances.rows import ScopeKey


@dataclass(slots=True)
class LockRow:
    customer_id: str
    lock_id: str
    feature_id: str
    entity_id: str | None
    status: str
    amount: Decimal
    # [{"balance_id": str, "value": "decimal as text", "period": the balance's reset_count}]
    items: list[dict[str, Any]]
    overage_behavior: str
    expires_at: datetime | None
    created_at: datetime
    finalized_at: datetime | None

    @property
    def key(self) -> "LockKey":
        return LockKey(self.customer_id, self.lock_id)

    @property
    def scope(self) -> ScopeKey:
        return ScopeKey(self.customer_id, self.feature_id, self.entity_id)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


LOCK_COLUMNS = tuple(f.name for f in fields(LockRow))


@dataclass(frozen=True, slots=True)
class LockKey:
    customer_id: str
    lock_id: str


@dataclass(frozen=True, slots=True)
class NewLock:
    """A lock a command may take: its id is claimed in ``lock_ids`` for its customer before the
    command applies (a lock id is unique across the deployment), and the claim is dropped again
    if the command takes no lock."""

    key: LockKey


@dataclass(frozen=True, slots=True)
class ActiveLocks:
    """The active reservations of one scope expired by ``expired_by`` (to give them back). For
    a customer-level scope (``entity_id`` None): those of every entity of the feature too, since
    an entity's lock may hold units of its customer's balances."""

    scope: ScopeKey
    expired_by: datetime


def customer_level(scope: ScopeKey) -> ScopeKey:
    return ScopeKey(scope.customer_id, scope.feature_id, None)


def draws_on(scope: ScopeKey) -> list[ScopeKey]:
    """The scopes a request for ``scope`` uses: an entity's own balances, then its customer's
    (entity_id None) as a fallback pool; a customer-level request, its own."""
    if scope.entity_id is None:
        return [scope]
    return [scope, customer_level(scope)]
