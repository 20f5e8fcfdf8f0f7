"""All SQL that touches the ``balances`` table: Core statements, one round trip each."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances.rollovers import RolloverPolicy, Tranche
from app.balances.rows import BALANCE_COLUMNS, BalanceRow, RowKey, ScopeKey, SuppliedId
from app.core.models import equal_where_given

_COLUMNS = ", ".join(f"b.{name}" for name in BALANCE_COLUMNS)
_NULLS = ", ".join("NULL" for _ in BALANCE_COLUMNS[4:])

# The rows of the wanted scopes and ids, as of this statement's snapshot, and of those the rows
# this transaction could lock, in (customer_id, id) order: the one order every lock in the
# service follows. With SKIP LOCKED, a wanted row missing from ``locked`` is held by another
# transaction (or was deleted meanwhile): the caller sends its commands to the waiting path.
# ``customer_id = ANY(<the keys' customers>)`` on every scan (here and in the writes) repeats
# what the joins imply, as a constant Citus can prune shards with (a join with unnest is not).
_LOCK = f"""
WITH wanted AS (
    SELECT b.customer_id, b.id, b.feature_id, b.entity_id FROM balances b
    JOIN unnest(%(scope_customers)s::text[], %(features)s::text[], %(entities)s::text[])
      AS s(customer_id, feature_id, entity_id)
      ON b.customer_id = s.customer_id AND b.feature_id = s.feature_id
     AND b.entity_id IS NOT DISTINCT FROM s.entity_id
    WHERE b.customer_id = ANY(%(customers)s::text[])
    UNION
    SELECT b.customer_id, b.id, b.feature_id, b.entity_id FROM balances b
    JOIN unnest(%(id_customers)s::text[], %(ids)s::text[]) AS r(customer_id, id)
      ON b.customer_id = r.customer_id AND b.id = r.id
    WHERE b.customer_id = ANY(%(customers)s::text[])
), locked AS (
    SELECT {_COLUMNS} FROM balances b
    WHERE b.customer_id = ANY(%(customers)s::text[])
      AND (b.customer_id, b.id) IN (SELECT customer_id, id FROM wanted)
    ORDER BY b.customer_id, b.id
    FOR UPDATE {{skip}}
)
SELECT true, locked.* FROM locked
UNION ALL
SELECT false, w.customer_id, w.id, w.feature_id, w.entity_id, {_NULLS} FROM wanted w
WHERE NOT EXISTS (SELECT FROM locked l WHERE l.customer_id = w.customer_id AND l.id = w.id)
"""
_LOCK_SKIPPING = _LOCK.format(skip="SKIP LOCKED")
_LOCK_WAITING = _LOCK.format(skip="")

# Advisory locks by name (a supplied balance id, a key being created): whoever inserts takes
# them, so a batch only *tries* them and sends a command whose name is held to the waiting path.
_LOCK_NAMES = """
SELECT s.name, {lock} FROM unnest(%s::text[]) AS s(name) ORDER BY s.name
"""
_TRY_LOCK_NAMES = _LOCK_NAMES.format(lock="pg_try_advisory_xact_lock(hashtextextended(s.name, 0))")
_WAIT_LOCK_NAMES = _LOCK_NAMES.format(  # void, cast to '' once the lock is ours
    lock="pg_advisory_xact_lock(hashtextextended(s.name, 0))::text = ''"
)
# A supplied balance_id is free unless another customer's balance ever had it (every balance
# has ledger entries, deleted ones too). Asked after its lock is ours, in a statement of its
# own, so the snapshot sees whatever the previous holder committed.
_USED_IDS = """
SELECT s.id, s.customer_id FROM unnest(%s::text[], %s::text[]) AS s(id, customer_id)
WHERE EXISTS (SELECT FROM balance_ledger l WHERE l.balance_id = s.id
              AND l.customer_id <> s.customer_id)
"""

_CHANGED = ("included_grant", "prepaid_grant", "adjustment", "usage", "reset_anchor_at",
            "next_reset_at", "expires_at", "reset_count", "version", "updated_at",
            "rollovers")  # fmt: skip
_TYPES = {
    "interval_count": "int", "included_grant": "numeric", "prepaid_grant": "numeric",
    "adjustment": "numeric", "usage": "numeric", "unlimited": "bool", "overage_allowed": "bool",
    "reset_anchor_at": "timestamptz", "next_reset_at": "timestamptz",
    "expires_at": "timestamptz", "reset_count": "bigint", "version": "bigint",
    "created_at": "timestamptz", "updated_at": "timestamptz", "rollover": "jsonb",
    "rollovers": "jsonb",
}  # fmt: skip


def _unnest(names: Sequence[str], alias: str) -> str:
    arrays = ", ".join(f"%s::{_TYPES.get(name, 'text')}[]" for name in names)
    return f"unnest({arrays}) AS {alias}({', '.join(names)})"


_UPDATE = f"""
UPDATE balances AS b SET {", ".join(f"{name} = u.{name}" for name in _CHANGED)}
FROM {_unnest(("customer_id", "id", *_CHANGED), "u")}
WHERE b.customer_id = u.customer_id AND b.id = u.id AND b.customer_id = ANY(%s::text[])
"""
_INSERT = f"""
INSERT INTO balances ({", ".join(BALANCE_COLUMNS)})
SELECT * FROM {_unnest(BALANCE_COLUMNS, "n")}
"""
_DELETE = """
DELETE FROM balances AS b USING unnest(%s::text[], %s::text[]) AS d(customer_id, id)
WHERE b.customer_id = d.customer_id AND b.id = d.id AND b.customer_id = ANY(%s::text[])
"""


def _columns(rows: Sequence[BalanceRow], names: Sequence[str]) -> tuple[list[Any], ...]:
    return tuple([_value(row, name) for row in rows] for name in names)


def _value(row: BalanceRow, name: str) -> Any:
    """A column's value as the statement sends it: the rollover policy and tranches as JSON
    text whose amounts are strings (JSON numbers would come back as floats)."""
    if name == "rollover":
        return None if row.rollover is None else json.dumps(row.rollover.to_json())
    if name == "rollovers":
        return json.dumps([tranche.to_json() for tranche in row.rollovers])
    return getattr(row, name)


def _row(values: Sequence[Any]) -> BalanceRow:
    """A stored row (the two JSON columns last, already decoded by the driver)."""
    *columns, policy, tranches = values
    row = BalanceRow(*columns)
    row.rollover = RolloverPolicy.from_json(policy)
    if tranches:
        row.rollovers = tuple(Tranche.from_json(t) for t in tranches)
    return row


async def lock(
    conn: AsyncConnection, scopes: Sequence[ScopeKey], ids: Sequence[RowKey], *, wait: bool
) -> tuple[list[BalanceRow], list[tuple[str, str, str, str | None]]]:
    """Lock the balances of ``scopes`` and ``ids``; return them and the (customer, id, feature,
    entity) of wanted rows that could not be locked (only without ``wait``)."""
    parameters = {
        "scope_customers": [s.customer_id for s in scopes],
        "features": [s.feature_id for s in scopes],
        "entities": [s.entity_id for s in scopes],
        "id_customers": [r.customer_id for r in ids],
        "ids": [r.id for r in ids],
        "customers": sorted({s.customer_id for s in scopes} | {r.customer_id for r in ids}),
    }
    statement = _LOCK_WAITING if wait else _LOCK_SKIPPING
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, parameters)).all()
    locked = [_row(row[1:]) for row in result if row[0]]
    held = [(row[1], row[2], row[3], row[4]) for row in result if not row[0]]
    return locked, held


async def lock_names(conn: AsyncConnection, names: Sequence[str], *, wait: bool) -> set[str]:
    """Take the advisory lock of each name; return the names another transaction holds (only
    without ``wait``)."""
    statement = _WAIT_LOCK_NAMES if wait else _TRY_LOCK_NAMES
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, (sorted(set(names)),))).all()
    return {row[0] for row in result if not row[1]}


async def used_ids(conn: AsyncConnection, claims: Sequence[SuppliedId]) -> set[SuppliedId]:
    """The supplied ids another customer's balance has or had."""
    parameters = ([c.id for c in claims], [c.customer_id for c in claims])
    result: Sequence[Any] = (await conn.exec_driver_sql(_USED_IDS, parameters)).all()
    return {SuppliedId(row[0], row[1]) for row in result}


async def write(
    conn: AsyncConnection,
    updated: Sequence[BalanceRow],
    inserted: Sequence[BalanceRow],
    deleted: Sequence[RowKey],
) -> None:
    """Deletes first: a create may take the key of an expired balance it retires."""
    if deleted:
        customers = sorted({k.customer_id for k in deleted})
        keys = ([k.customer_id for k in deleted], [k.id for k in deleted], customers)
        await conn.exec_driver_sql(_DELETE, keys)
    if updated:
        changed = _columns(updated, ("customer_id", "id", *_CHANGED))
        customers = sorted({row.customer_id for row in updated})
        await conn.exec_driver_sql(_UPDATE, (*changed, customers))
    if inserted:
        await conn.exec_driver_sql(_INSERT, _columns(inserted, BALANCE_COLUMNS))


# Reads: no locks, one statement each.

_SELECT = f"SELECT {_COLUMNS} FROM balances b"


async def find_live(conn: AsyncConnection, scope: ScopeKey, now: datetime) -> list[BalanceRow]:
    """The live balances of one scope, read without locks, in id order."""
    statement = f"""{_SELECT}
        WHERE b.customer_id = %s AND b.feature_id = %s AND b.entity_id IS NOT DISTINCT FROM %s
          AND (b.expires_at IS NULL OR b.expires_at > %s)
        ORDER BY b.id"""
    parameters = (scope.customer_id, scope.feature_id, scope.entity_id, now)
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, parameters)).all()
    return [_row(row) for row in result]


async def find_matching(conn: AsyncConnection, filters: dict[str, str | None]) -> list[BalanceRow]:
    """Balances whose columns equal the given (non-None) filters, read without locks."""
    conditions, parameters = equal_where_given(filters, "b.")
    where = " AND ".join(conditions) or "true"
    statement = f"{_SELECT} WHERE {where} ORDER BY b.customer_id, b.id"
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, tuple(parameters))).all()
    return [_row(row) for row in result]


async def list_page(
    conn: AsyncConnection,
    *,
    filters: dict[str, str | None],
    include_active: bool,
    include_expired: bool,
    after: tuple[str, str] | None,
    limit: int,
    now: datetime,
) -> list[BalanceRow]:
    """One page in (customer_id, id) order, starting after the cursor (keyset pagination)."""
    conditions, parameters = equal_where_given(filters, "b.")
    if include_active and not include_expired:
        conditions.append("(b.expires_at IS NULL OR b.expires_at > %s)")
        parameters.append(now)
    elif include_expired and not include_active:
        conditions.append("b.expires_at <= %s")
        parameters.append(now)
    if after is not None:
        conditions.append("(b.customer_id, b.id) > (%s, %s)")
        parameters.extend(after)
    where = " AND ".join(conditions) or "true"
    statement = f"{_SELECT} WHERE {where} ORDER BY b.customer_id, b.id LIMIT %s"
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, (*parameters, limit))).all()
    return [_row(row) for row in result]


async def lock_due_for_reset(conn: AsyncConnection, now: datetime, limit: int) -> list[BalanceRow]:
    """Lock up to ``limit`` balances whose reset is due, skipping rows others hold.

    SKIP LOCKED: a balance locked by a request is being reset by that request anyway, and
    several sweepers share the work instead of queueing on each other.
    """
    statement = f"""{_SELECT} WHERE b.next_reset_at <= %s
        ORDER BY b.next_reset_at LIMIT %s FOR UPDATE SKIP LOCKED"""
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, (now, limit))).all()
    return [_row(row) for row in result]
