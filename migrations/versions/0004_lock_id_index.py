"""Find a lock by its id alone: Autumn's SDK finalizes without naming the customer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_balance_locks_lock_id", "balance_locks", ["lock_id"])


def downgrade() -> None:
    op.drop_index("ix_balance_locks_lock_id", table_name="balance_locks")
