"""The ``balance_ledger`` table: one immutable row per change to a balance.

Invariant: for every balance, ``sum(remaining_delta)`` over its entries equals its current
``remaining`` (zero once deleted), and ``sum(rollover_delta)`` what its rollovers hold. A trigger
in the migration refuses UPDATE and DELETE, so the ledger is append-only in the database itself,
not just by convention.
"""

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import AMOUNT, Base, one_of


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
    ROLLOVER = "rollover"  # a reset carried what was left over
    ROLLOVER_TRIM = "rollover_trim"  # the rollover cap cut the oldest carry-overs
    ROLLOVER_EXPIRE = "rollover_expire"  # a carry-over reached its expires_at


class LedgerEntry(Base):
    __tablename__ = "balance_ledger"
    # The append-only trigger (balance_ledger_append_only, migration 0001) is not declared here:
    # SQLAlchemy has no construct for triggers, so the migrations alone create it.
    __table_args__ = (
        CheckConstraint(one_of("kind", EntryKind), name="kind"),  # ck_balance_ledger_kind
        Index("ix_balance_ledger_balance", "customer_id", "balance_id", "id"),
        Index("ix_balance_ledger_feature", "customer_id", "feature_id", "id"),
        # History by balance_id alone, and "did another customer ever use this balance id?".
        Index("ix_balance_ledger_balance_id", "balance_id", "id"),
    )

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
    # What the balance's rollovers gained or lost, and hold after the entry (0 without any).
    rollover_delta: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    rollover_after: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
