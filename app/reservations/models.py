"""The ``balance_locks`` table: amounts reserved by ``check`` with a ``lock``; and ``lock_ids``,
which customer holds each lock id.

A lock's amount is deducted from the balances when it is taken (ledger ``lock`` entries) and is
either kept (``confirm``), given back (``release``) or given back automatically after
``expires_at`` (status ``expired``). ``items`` records what each balance holds, and in which
reset period, so a give-back never lands in a later period whose usage was already cleared.
"""

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import AMOUNT, Base, one_of


class LockStatus(enum.StrEnum):
    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class BalanceLock(Base):
    __tablename__ = "balance_locks"
    __table_args__ = (
        CheckConstraint(one_of("status", LockStatus), name="status"),  # ck_balance_locks_status
        # Active locks past their expiry (sweeper) and the active locks of a feature (lazy
        # release on the next check/track), without scanning finalized history.
        Index(
            "ix_balance_locks_active_expiry",
            "expires_at",
            postgresql_where=text("status = 'active' AND expires_at IS NOT NULL"),
        ),
        Index(
            "ix_balance_locks_active_feature",
            "customer_id",
            "feature_id",
            postgresql_where=text("status = 'active'"),
        ),
    )

    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    lock_id: Mapped[str] = mapped_column(Text, primary_key=True)
    feature_id: Mapped[str] = mapped_column(Text)
    entity_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    # [{"balance_id": str, "value": "decimal as text", "period": the balance's reset_count}]
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    overage_behavior: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LockIdHolder(Base):
    """``lock_ids``: a lock id is unique across the deployment (Autumn: across the account), and
    this row says which customer's lock has it.

    Invariant: a lock is taken only with its id claimed here for its customer, in the same
    transaction, under the id's advisory lock (``repository.claim_ids``); the only exceptions are
    locks that shared an id before migration 0010, which gave the id to one of them. A committed
    row is never deleted: an id stays taken after its lock is finalized or expired, so a finalize
    by id alone always finds the same lock. Distributed by ``lock_id`` on Citus
    (docs/scaling.md), unlike the customer's tables.
    """

    __tablename__ = "lock_ids"

    lock_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
