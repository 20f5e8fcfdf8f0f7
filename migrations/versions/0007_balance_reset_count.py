"""Count each balance's resets, so a reservation knows which period it was taken in.

Comparing ``next_reset_at`` was not enough: an operator moving the schedule would make a
reservation look like it belonged to an old period and never be given back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "balances", sa.Column("reset_count", sa.BigInteger, nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("balances", "reset_count")
