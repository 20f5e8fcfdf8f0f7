"""Declarative base shared by every table; constraint names are fixed so migrations stay stable.

The models are the schema's single source of truth: they declare every column, default,
constraint and index the migrations build, and tests/test_migrations.py fails if the two drift.
Only the ledger's append-only trigger lives in the migrations alone (SQLAlchemy cannot model it).

Check constraints take a short name: the "ck" convention prefixes ``ck_<table>_`` to it. This
holds in migrations too (alembic's ``op`` uses this metadata), so a migration must not pass a
name that already carries the prefix (0001 did; 0008 renamed the results).
"""

import enum
from typing import Any

from sqlalchemy import MetaData, Numeric
from sqlalchemy.orm import DeclarativeBase

# Every money-like quantity: exact, 15 digits before the point and 9 after (never float).
AMOUNT = Numeric(30, 9)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def one_of(column: str, values: type[enum.StrEnum]) -> str:
    """SQL for a check that ``column`` holds one of the enum's values (in declaration order)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def equal_where_given(filters: dict[str, Any], alias: str = "") -> tuple[list[str], list[Any]]:
    """``column = %s`` for each filter that was given (``None`` means "any"), and the values."""
    given = {name: value for name, value in filters.items() if value is not None}
    return [f"{alias}{name} = %s" for name in given], list(given.values())
