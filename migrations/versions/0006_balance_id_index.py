"""Find a balance by its id alone (history by balance_id, which may outlive the customer key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_balances_id", "balances", ["id"])


def downgrade() -> None:
    op.drop_index("ix_balances_id", table_name="balances")
