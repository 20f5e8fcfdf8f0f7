"""Migrations: the schema is built only by alembic, and it can be torn down and rebuilt."""

from collections.abc import Iterator

import psycopg
import pytest

from app.core.migrations import downgrade_to_base, head_revision, upgrade_to_head
from tests.helpers import throwaway_database


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    with throwaway_database(server_url, "balances_migrations") as url:
        yield url


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def test_upgrade_to_head_then_downgrade_to_base(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    assert {"balances", "balance_ledger", "alembic_version"} <= _tables(empty_database)
    with psycopg.connect(empty_database) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None and row[0] == head_revision()

    downgrade_to_base(empty_database)
    assert _tables(empty_database) <= {"alembic_version"}

    upgrade_to_head(empty_database)
    assert {"balances", "balance_ledger"} <= _tables(empty_database)


def test_upgrade_twice_is_a_no_op(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    upgrade_to_head(empty_database)
    assert "balances" in _tables(empty_database)


def test_ledger_refuses_update_and_delete(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO balance_ledger (customer_id, balance_id, feature_id, interval, kind, "
            "remaining_delta, usage_delta, remaining_after, usage_after, granted_after, "
            "balance_version, created_at) "
            "VALUES ('c', 'b', 'f', 'one_off', 'create', 1, 0, 1, 0, 1, 1, now())"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE balance_ledger SET remaining_delta = 2")
        conn.rollback()
        conn.execute(
            "INSERT INTO balance_ledger (customer_id, balance_id, feature_id, interval, kind, "
            "remaining_delta, usage_delta, remaining_after, usage_after, granted_after, "
            "balance_version, created_at) "
            "VALUES ('c', 'b', 'f', 'one_off', 'create', 1, 0, 1, 0, 1, 1, now())"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM balance_ledger")
        conn.rollback()
