"""Declarative base shared by every table; constraint names are fixed so migrations stay stable."""

from typing import Any

from sqlalchemy import ColumnElement, MetaData
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def equal_where_given(
    *filters: tuple[InstrumentedAttribute[Any], object | None],
) -> list[ColumnElement[bool]]:
    """``column = value`` for each filter that was given; ``None`` means "any"."""
    return [column == value for column, value in filters if value is not None]
