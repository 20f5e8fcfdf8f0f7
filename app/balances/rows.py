"""A balance row as plain data, and the keys the write path locks balances by."""

import secrets
import time
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

from app.balances.rollovers import RolloverPolicy, Tranches


@dataclass(slots=True)
class BalanceRow:
    """One row of ``balances``. Rules copy it before changing it (they never change input)."""

    customer_id: str
    id: str
    feature_id: str
    entity_id: str | None
    interval: str
    interval_count: int
    included_grant: Decimal
    prepaid_grant: Decimal
    adjustment: Decimal
    usage: Decimal
    unlimited: bool
    overage_allowed: bool
    reset_anchor_at: datetime | None
    next_reset_at: datetime | None
    expires_at: datetime | None
    reset_count: int
    version: int
    created_at: datetime
    updated_at: datetime
    rollover: RolloverPolicy | None = None
    # What earlier periods carried over (``rollovers``), in ``period`` order. Immutable: a rule
    # replaces the tuple, so a shallow copy of the row never shares a change with its original.
    rollovers: Tranches = ()

    @property
    def granted(self) -> Decimal:
        return self.included_grant + self.prepaid_grant + self.adjustment

    @property
    def remaining(self) -> Decimal:
        return self.granted - self.usage

    @property
    def key(self) -> "RowKey":
        return RowKey(self.customer_id, self.id)

    @property
    def scope(self) -> "ScopeKey":
        return ScopeKey(self.customer_id, self.feature_id, self.entity_id)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


BALANCE_COLUMNS = tuple(f.name for f in fields(BalanceRow))


@dataclass(frozen=True, slots=True)
class ScopeKey:
    """All balances of one customer's feature at one scope: an entity's, or (None) the
    customer-level ones."""

    customer_id: str
    feature_id: str
    entity_id: str | None


@dataclass(frozen=True, slots=True)
class RowKey:
    customer_id: str
    id: str


@dataclass(frozen=True, slots=True)
class SuppliedId:
    """A ``balance_id`` a create supplies: ids are unique service-wide (history finds balances
    by id alone), so the id is claimed under an advisory lock of its own."""

    id: str
    customer_id: str

    @property
    def lock_name(self) -> str:
        return f"id\x1f{self.id}"


@dataclass(frozen=True, slots=True)
class NewKey:
    """The key a create takes. Creates of one key serialize on an advisory lock of it, so a
    batch never waits on another transaction's uncommitted insert of the same key (the unique
    index would make it wait; ``SKIP LOCKED`` covers only rows that exist)."""

    customer_id: str
    feature_id: str
    entity_id: str | None
    interval: str

    @property
    def lock_name(self) -> str:
        entity = "\x1e" if self.entity_id is None else self.entity_id
        return "\x1f".join(("key", self.customer_id, self.feature_id, entity, self.interval))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_balance_id() -> str:
    """``bal_`` + 26 chars: 48-bit millisecond time then 80 random bits (ULID layout).

    Time-ordered ids keep inserts at the right edge of the primary-key index and make the
    default list order roughly creation order.
    """
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "bal_" + "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
