"""A lock id is unique across the deployment: ``lock_ids`` says which customer holds each one.

Autumn's SDK finalizes a lock by its id alone, so an id must name one lock in the whole
deployment (Autumn: the whole account), not one per customer. ``lock_ids`` is the claim: a lock
is taken only by inserting its id here, in the transaction that takes it, and finalize finds the
customer here first. On Citus it is distributed by its own key, ``lock_id`` (see
docs/scaling.md); ``balance_locks`` stays with its customer.

Backfill: every existing lock id, once. Where several customers used the same id (allowed
before this revision; finalize by id alone then answered ``409 ambiguous_lock``), the id goes to
the lock a finalize by id most plausibly means: an active one first, then the newest, then the
smallest ``customer_id`` (deterministic). The other customers' locks stay in ``balance_locks``
and are still finalized with their ``customer_id``.

The index ``ix_balance_locks_lock_id`` (0004) served finalize by id alone; nothing reads
``balance_locks`` by id alone any more, so it goes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lock_ids",
        sa.Column("lock_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("lock_id", name="pk_lock_ids"),
    )
    op.execute(
        """
        INSERT INTO lock_ids (lock_id, customer_id)
        SELECT DISTINCT ON (lock_id) lock_id, customer_id FROM balance_locks
        ORDER BY lock_id, status = 'active' DESC, created_at DESC, customer_id
        """
    )
    op.drop_index("ix_balance_locks_lock_id", table_name="balance_locks")
    # A deployment already distributed by Citus distributes the new table too (after the
    # backfill: create_distributed_table copies it). On plain PostgreSQL this does nothing; a
    # database not distributed yet gets it from docs/scaling.md's commands.
    op.execute(
        """
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
                IF EXISTS (SELECT FROM pg_dist_partition
                           WHERE logicalrelid = 'balances'::regclass) THEN
                    PERFORM create_distributed_table('lock_ids', 'lock_id',
                                                     colocate_with => 'none');
                END IF;
            END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.create_index("ix_balance_locks_lock_id", "balance_locks", ["lock_id"])
    op.drop_table("lock_ids")
