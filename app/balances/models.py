"""The ``balances`` table: one row per (customer, feature, entity, interval).

Every key includes ``customer_id`` first, so the table can be distributed by customer (Citus)
without redesign and every lookup is a primary-key prefix scan.
"""

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import AMOUNT, Base, one_of


class Interval(enum.StrEnum):
    ONE_OFF = "one_off"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    SEMI_ANNUAL = "semi_annual"
    YEAR = "year"


class Balance(Base):
    __tablename__ = "balances"
    # Check constraint names are short: the naming convention prefixes "ck_balances_".
    __table_args__ = (
        # The balance key. NULLS NOT DISTINCT: one customer-level (entity_id NULL) balance per
        # (customer, feature, interval), just as for an entity. Also the index key lookups use.
        UniqueConstraint(
            "customer_id",
            "feature_id",
            "entity_id",
            "interval",
            name="uq_balances_key",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint(one_of("interval", Interval), name="interval"),
        CheckConstraint("interval_count >= 1", name="interval_count"),
        CheckConstraint("(interval = 'one_off') = (next_reset_at IS NULL)", name="reset_schedule"),
        # The sweeper's scan for due resets.
        Index(
            "ix_balances_next_reset_at",
            "next_reset_at",
            postgresql_where=text("next_reset_at IS NOT NULL"),
        ),
        # A balance by its id alone (history by balance_id, supplied ids are unique service-wide).
        Index("ix_balances_id", "id"),
    )

    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    feature_id: Mapped[str] = mapped_column(Text)
    entity_id: Mapped[str | None] = mapped_column(Text)
    interval: Mapped[str] = mapped_column(Text)
    interval_count: Mapped[int] = mapped_column(Integer, server_default="1")
    included_grant: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    prepaid_grant: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    adjustment: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    usage: Mapped[Decimal] = mapped_column(AMOUNT, server_default="0")
    unlimited: Mapped[bool] = mapped_column(Boolean, server_default=false())
    overage_allowed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Boundaries are anchor + k periods, always computed from the anchor, so a month anchored on
    # the 31st comes back to the 31st after a short month instead of drifting to the 28th.
    reset_anchor_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_reset_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How many times the balance has reset: identifies the period a reservation was taken in.
    reset_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    version: Mapped[int] = mapped_column(BigInteger, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The rollover policy ({duration, length, max, max_percentage}; amounts as strings) and the
    # carry-overs it made ([{period, granted, remaining, expires_at}]): they change only with
    # the row, under its lock, so they live in it (see ``app/balances/rollovers.py``).
    rollover: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    rollovers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
