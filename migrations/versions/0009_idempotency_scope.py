"""Idempotency keys are scoped to the deployment, not to the API key that sent them.

A client rotating its API key between retries must still get its first answer back, as
Stripe scopes keys to the account. The column that held the API key id becomes ``scope``;
records written before keep their old scope and simply age out (24 h).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rename(old: str, new: str) -> None:
    op.alter_column("idempotency_keys", old, new_column_name=new)
    # PostgreSQL 18 names NOT NULL constraints after the column; older servers have none.
    op.execute(
        f"""
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_constraint
                       WHERE conname = 'idempotency_keys_{old}_not_null') THEN
                ALTER TABLE idempotency_keys RENAME CONSTRAINT idempotency_keys_{old}_not_null
                    TO idempotency_keys_{new}_not_null;
            END IF;
        END $$
        """
    )


def upgrade() -> None:
    _rename("api_key_id", "scope")


def downgrade() -> None:
    _rename("scope", "api_key_id")
