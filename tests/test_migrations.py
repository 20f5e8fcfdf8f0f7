"""Migrations: the schema is built only by alembic, and it can be torn down and rebuilt.

The models are the schema's single source of truth: what the migrations build must be exactly
what the models declare, checked twice. Alembic's ``compare_metadata`` checks tables, columns,
types, nullability, server defaults, identity, indexes and unique constraints, but not check
constraints, index predicates (``postgresql_where``) or triggers; so the catalog of a migrated
database is also compared with that of one built by ``metadata.create_all``.
"""

import importlib
import pprint
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, pool

import app
from app.core.database import to_sqlalchemy_url
from app.core.migrations import downgrade_to_base, head_revision, upgrade_to_head
from app.core.models import Base
from tests.helpers import throwaway_database

# Built by the migrations alone, because SQLAlchemy has no construct to declare them: the
# ledger's append-only trigger and its function (0001). Alembic does not reflect triggers or
# functions at all; the catalog comparison leaves out exactly these (any other trigger or
# function would be reported), and test_ledger_refuses_update_and_delete checks they work.
MIGRATION_ONLY = {
    ("trigger", "balance_ledger", "balance_ledger_append_only"),
    ("function", "", "balance_ledger_refuse_change"),
}


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    with throwaway_database(server_url, "balances_migrations") as url:
        yield url


def _models() -> MetaData:
    """``Base.metadata`` with every ``app/*/models.py`` imported, so no table is left out."""
    for path in sorted(Path(app.__file__).parent.glob("*/models.py")):
        importlib.import_module(f"app.{path.parent.name}.models")
    return Base.metadata


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


def test_models_match_what_the_migrations_build(database_url: str) -> None:
    """Alembic's own comparison of the models with a database upgraded to head.

    compare_server_default is reliable on PostgreSQL: alembic asks the server whether the two
    defaults are equal. The alembic_version table is skipped by alembic itself.
    """
    engine = create_engine(to_sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            differences = compare_metadata(context, _models())
    finally:
        engine.dispose()
    if differences:
        pytest.fail("models and migrations differ:\n" + pprint.pformat(differences), pytrace=False)


_CATALOG = {
    "column": """
        SELECT c.relname, a.attname, concat_ws(' ', format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attnotnull THEN 'NOT NULL' END,
               'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid),
               CASE a.attidentity WHEN 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
                                  WHEN 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY' END,
               (SELECT format('(%s..%s by %s from %s, cache %s, cycle %s)', s.seqmin, s.seqmax,
                              s.seqincrement, s.seqstart, s.seqcache, s.seqcycle)
                FROM pg_sequence s
                WHERE s.seqrelid = pg_get_serial_sequence(a.attrelid::regclass::text,
                                                          a.attname)::regclass))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
          AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraint": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "index": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'""",
    "trigger": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal""",
    "function": """
        SELECT '', proname, pg_get_functiondef(oid)
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace""",
}


def _catalog(url: str) -> dict[tuple[str, str, str], Any]:
    """(kind, table, name) -> definition, as PostgreSQL prints it, for the public schema."""
    with psycopg.connect(url) as conn:
        return {
            (kind, table, name): definition
            for kind, query in _CATALOG.items()
            for table, name, definition in conn.execute(query).fetchall()
            if table != "alembic_version"
        }


def test_models_build_the_same_catalog_as_the_migrations(
    database_url: str, server_url: str
) -> None:
    """What alembic cannot compare: check constraints (names and expressions), partial index
    predicates, every constraint's and index's exact definition, identity options."""
    migrated = _catalog(database_url)
    assert migrated.keys() >= MIGRATION_ONLY
    with throwaway_database(server_url, "balances_models") as url:
        engine = create_engine(to_sqlalchemy_url(url), poolclass=pool.NullPool)
        try:
            _models().create_all(engine)
        finally:
            engine.dispose()
        declared = _catalog(url)
    migrated = {key: value for key, value in migrated.items() if key not in MIGRATION_ONLY}
    differences = [
        f"{kind} {table}.{name}\n  migrations: {migrated.get(key)}\n  models: {declared.get(key)}"
        for key in sorted(migrated.keys() | declared.keys())
        if migrated.get(key) != declared.get(key)
        for kind, table, name in [key]
    ]
    if differences:
        pytest.fail("models and migrations differ:\n" + "\n".join(differences), pytrace=False)
