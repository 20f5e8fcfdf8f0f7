"""Index the reset schedule so the sweeper finds due balances without a full scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_balances_next_reset_at",
        "balances",
        ["next_reset_at"],
        postgresql_where="next_reset_at IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_balances_next_reset_at", table_name="balances")
