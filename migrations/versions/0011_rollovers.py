"""Rollovers: a balance's rollover policy and carry-overs, and the ledger's rollover amounts.

``balances.rollover`` holds the policy a create asked for (NULL: none) and ``balances.rollovers``
the carry-overs it made, both JSON with amounts as strings; they change only with their row,
under its lock. The ledger gains ``rollover_delta``/``rollover_after`` (0 for every earlier
entry, which is exact: no balance had rollovers) and three entry kinds.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AMOUNT = sa.Numeric(30, 9)
_KINDS = ("create", "set_remaining", "add", "set_usage", "set_included_grant", "set_times",
          "track", "lock", "confirm", "release", "reset", "delete")  # fmt: skip
_ROLLOVER_KINDS = ("rollover", "rollover_trim", "rollover_expire")


def _kind_check(kinds: Sequence[str]) -> None:
    op.execute("ALTER TABLE balance_ledger DROP CONSTRAINT ck_balance_ledger_kind")
    quoted = ", ".join(f"'{kind}'" for kind in kinds)
    op.execute(
        "ALTER TABLE balance_ledger ADD CONSTRAINT ck_balance_ledger_kind"
        f" CHECK (kind IN ({quoted}))"
    )


def upgrade() -> None:
    op.add_column("balances", sa.Column("rollover", JSONB, nullable=True))
    op.add_column("balances", sa.Column("rollovers", JSONB, nullable=False, server_default="[]"))
    for name in ("rollover_delta", "rollover_after"):
        op.add_column(
            "balance_ledger", sa.Column(name, _AMOUNT, nullable=False, server_default="0")
        )
    _kind_check((*_KINDS, *_ROLLOVER_KINDS))


def downgrade() -> None:
    _kind_check(_KINDS)
    op.drop_column("balance_ledger", "rollover_after")
    op.drop_column("balance_ledger", "rollover_delta")
    op.drop_column("balances", "rollovers")
    op.drop_column("balances", "rollover")
