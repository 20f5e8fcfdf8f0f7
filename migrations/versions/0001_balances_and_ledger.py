"""Balances and their append-only ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(30, 9)
TIME = sa.DateTime(timezone=True)
INTERVALS = "('one_off','minute','hour','day','week','month','quarter','semi_annual','year')"
KINDS = (
    "('create','set_remaining','add','set_usage','set_included_grant','set_times',"
    "'track','lock','confirm','release','reset','delete')"
)


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("feature_id", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=True),
        sa.Column("interval", sa.Text, nullable=False),
        sa.Column("interval_count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("included_grant", AMOUNT, nullable=False, server_default="0"),
        sa.Column("prepaid_grant", AMOUNT, nullable=False, server_default="0"),
        sa.Column("adjustment", AMOUNT, nullable=False, server_default="0"),
        sa.Column("usage", AMOUNT, nullable=False, server_default="0"),
        sa.Column("unlimited", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("overage_allowed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reset_anchor_at", TIME, nullable=True),
        sa.Column("next_reset_at", TIME, nullable=True),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "id", name="pk_balances"),
        sa.CheckConstraint(f"interval IN {INTERVALS}", name="ck_balances_interval"),
        sa.CheckConstraint("interval_count >= 1", name="ck_balances_interval_count"),
        sa.CheckConstraint(
            "(interval = 'one_off') = (next_reset_at IS NULL)", name="ck_balances_reset_schedule"
        ),
    )
    # The balance key. NULLS NOT DISTINCT: one customer-level (entity_id NULL) balance per
    # (customer, feature, interval), just as for an entity. Also the index key lookups use.
    op.execute(
        "ALTER TABLE balances ADD CONSTRAINT uq_balances_key "
        "UNIQUE NULLS NOT DISTINCT (customer_id, feature_id, entity_id, interval)"
    )

    op.create_table(
        "balance_ledger",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("balance_id", sa.Text, nullable=False),
        sa.Column("feature_id", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=True),
        sa.Column("interval", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("remaining_delta", AMOUNT, nullable=False),
        sa.Column("usage_delta", AMOUNT, nullable=False),
        sa.Column("remaining_after", AMOUNT, nullable=False),
        sa.Column("usage_after", AMOUNT, nullable=False),
        sa.Column("granted_after", AMOUNT, nullable=False),
        sa.Column("balance_version", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("api_key_id", sa.Text, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "id", name="pk_balance_ledger"),
        sa.CheckConstraint(f"kind IN {KINDS}", name="ck_balance_ledger_kind"),
    )
    op.create_index(
        "ix_balance_ledger_balance", "balance_ledger", ["customer_id", "balance_id", "id"]
    )
    op.create_index(
        "ix_balance_ledger_feature", "balance_ledger", ["customer_id", "feature_id", "id"]
    )
    op.create_index("ix_balance_ledger_balance_id", "balance_ledger", ["balance_id", "id"])
    # Append-only, enforced by the database: history can be added to, never rewritten.
    op.execute(
        """
        CREATE FUNCTION balance_ledger_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'balance_ledger is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        CREATE TRIGGER balance_ledger_append_only
            BEFORE UPDATE OR DELETE ON balance_ledger
            FOR EACH ROW EXECUTE FUNCTION balance_ledger_refuse_change();
        """
    )


def downgrade() -> None:
    op.drop_table("balance_ledger")
    op.execute("DROP FUNCTION balance_ledger_refuse_change()")
    op.drop_table("balances")
