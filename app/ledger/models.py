"""The ``balance_ledger`` table: one immutable row per change to a balance.

Invariant: for every balance, ``sum(remaining_delta)`` over its entries equals its current
``remaining`` (zero once deleted). A trigger in the migration refuses UPDATE and DELETE, so the
ledger is append-only in the database itself, not just by convention.
"""

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Identity, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.balances.models import AMOUNT
from app.core.models import Base


class EntryKind(enum.StrEnum):
    CREATE = "create"
    SET_REMAINING = "set_remaining"
    ADD = "add"
    SET_USAGE = "set_usage"
    SET_INCLUDED_GRANT = "set_included_grant"
    SET_TIMES = "set_times"
    TRACK = "track"
    LOCK = "lock"
    CONFIRM = "confirm"
    RELEASE = "release"
    RESET = "reset"
    DELETE = "delete"


class LedgerEntry(Base):
    __tablename__ = "balance_ledger"

    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    balance_id: Mapped[str] = mapped_column(Text)
    feature_id: Mapped[str] = mapped_column(Text)
    entity_id: Mapped[str | None] = mapped_column(Text)
    interval: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    remaining_delta: Mapped[Decimal] = mapped_column(AMOUNT)
    usage_delta: Mapped[Decimal] = mapped_column(AMOUNT)
    remaining_after: Mapped[Decimal] = mapped_column(AMOUNT)
    usage_after: Mapped[Decimal] = mapped_column(AMOUNT)
    granted_after: Mapped[Decimal] = mapped_column(AMOUNT)
    balance_version: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
