"""Reservations: balance locks held by check-with-lock until finalized or expired.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "balance_locks",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("lock_id", sa.Text, nullable=False),
        sa.Column("feature_id", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric(30, 9), nullable=False),
        sa.Column("items", postgresql.JSONB, nullable=False),
        sa.Column("overage_behavior", sa.Text, nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("finalized_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("customer_id", "lock_id", name="pk_balance_locks"),
        sa.CheckConstraint(
            "status IN ('active','confirmed','released','expired')", name="ck_balance_locks_status"
        ),
    )
    # Finds active locks past their expiry (sweeper) and the active locks of a feature (lazy
    # release on the next check/track), without scanning finalized history.
    op.create_index(
        "ix_balance_locks_active_expiry",
        "balance_locks",
        ["expires_at"],
        postgresql_where="status = 'active' AND expires_at IS NOT NULL",
    )
    op.create_index(
        "ix_balance_locks_active_feature",
        "balance_locks",
        ["customer_id", "feature_id"],
        postgresql_where="status = 'active'",
    )


def downgrade() -> None:
    op.drop_table("balance_locks")
