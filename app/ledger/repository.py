"""All SQL that touches the ``balance_ledger`` table. Rows are only ever inserted."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.context import RequestContext
from app.core.models import equal_where_given
from app.ledger.entries import ENTRY_COLUMNS, Entry

_CONTEXT = ("idempotency_key", "request_id", "api_key_id")
_TYPES = {
    "remaining_delta": "numeric", "usage_delta": "numeric", "remaining_after": "numeric",
    "usage_after": "numeric", "granted_after": "numeric", "balance_version": "bigint",
    "created_at": "timestamptz", "rollover_delta": "numeric", "rollover_after": "numeric",
}  # fmt: skip
_NAMES = (*ENTRY_COLUMNS, *_CONTEXT)

# unnest keeps the array order, so the identity ids follow the order the rules appended in.
_APPEND = f"""
INSERT INTO balance_ledger ({", ".join(_NAMES)})
SELECT * FROM unnest({", ".join(f"%s::{_TYPES.get(name, 'text')}[]" for name in _NAMES)})
"""


async def append(conn: AsyncConnection, items: Sequence[tuple[Entry, RequestContext]]) -> None:
    """Insert the entries of a batch in one statement, each stamped with its request."""
    columns: list[list[Any]] = [[] for _ in _NAMES]
    for entry, context in items:
        values = (*(getattr(entry, name) for name in ENTRY_COLUMNS),
                  context.idempotency_key, context.request_id, context.api_key_id)  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.exec_driver_sql(_APPEND, tuple(columns))


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as history shows it; ``id`` is None for a reset that is due but not written."""

    id: int | None
    customer_id: str
    balance_id: str
    feature_id: str
    entity_id: str | None
    interval: str
    kind: str
    remaining_delta: Decimal
    usage_delta: Decimal
    remaining_after: Decimal
    usage_after: Decimal
    granted_after: Decimal
    balance_version: int
    idempotency_key: str | None
    request_id: str | None
    api_key_id: str | None
    created_at: datetime
    rollover_delta: Decimal
    rollover_after: Decimal


_STORED = ", ".join(f.name for f in fields(StoredEntry))


async def page(
    conn: AsyncConnection, filters: dict[str, str | None], before_id: int | None, limit: int
) -> list[StoredEntry]:
    """Entries matching the given (non-None) filters, newest first, below ``before_id``."""
    conditions, parameters = equal_where_given(filters)
    if before_id is not None:
        conditions.append("id < %s")
        parameters.append(before_id)
    where = " AND ".join(conditions) or "true"
    statement = f"SELECT {_STORED} FROM balance_ledger WHERE {where} ORDER BY id DESC LIMIT %s"
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, (*parameters, limit))).all()
    return [StoredEntry(*row) for row in result]
