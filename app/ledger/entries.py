"""Ledger entries as the rules produce them: plain values, written by the write path."""

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

from app.core.context import RequestContext


@dataclass(frozen=True, slots=True)
class Entry:
    """One change to one balance, with the balance's state right after it.

    Invariant: for every balance, the ``remaining_delta`` of its entries add up to its
    ``remaining`` (to zero once deleted), their ``rollover_delta`` to what its rollovers hold;
    ``balance_version`` counts 1, 2, 3… without gaps.
    """

    customer_id: str
    balance_id: str
    feature_id: str
    entity_id: str | None
    interval: str
    kind: str
    remaining_delta: Decimal
    usage_delta: Decimal
    remaining_after: Decimal
    usage_after: Decimal
    granted_after: Decimal
    balance_version: int
    created_at: datetime
    rollover_delta: Decimal
    rollover_after: Decimal


ENTRY_COLUMNS = tuple(f.name for f in fields(Entry))


@dataclass(slots=True)
class PendingEntries:
    """The entries a batch appends, each with the request that caused it."""

    items: list[tuple[Entry, RequestContext]]

    def add(self, entries: list[Entry], context: RequestContext) -> None:
        self.items.extend((entry, context) for entry in entries)
