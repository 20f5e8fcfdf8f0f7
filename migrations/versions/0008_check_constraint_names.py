"""Give the check constraints the names the models declare: ``ck_balances_interval``, not
``ck_balances_ck_balances_interval``.

0001 and 0003 passed names that already carried the ``ck_<table>_`` prefix, and the naming
convention (alembic's ``op`` uses the models' metadata) prefixed them again. Nothing refers to
these names, so renaming is safe; it takes no table scan. Future migrations pass the short name
(``name="interval"``), as the models do.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, name 0001/0003 produced, name the models declare)
RENAMES = (
    ("balances", "ck_balances_ck_balances_interval", "ck_balances_interval"),
    ("balances", "ck_balances_ck_balances_interval_count", "ck_balances_interval_count"),
    ("balances", "ck_balances_ck_balances_reset_schedule", "ck_balances_reset_schedule"),
    ("balance_ledger", "ck_balance_ledger_ck_balance_ledger_kind", "ck_balance_ledger_kind"),
    ("balance_locks", "ck_balance_locks_ck_balance_locks_status", "ck_balance_locks_status"),
)


def upgrade() -> None:
    for table, old, new in RENAMES:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def downgrade() -> None:
    for table, old, new in RENAMES:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {new} TO {old}")
