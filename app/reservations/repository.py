"""All SQL that touches ``balance_locks`` and ``lock_ids``.

Lock order: lock rows are locked *after* the balances they hold (the batcher locks tables in
order: balances, then reservations), by every path, so reservations never deadlock with usage.
Lock ids are claimed after the lock rows, under one advisory lock per id (``claim_ids``).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances.rows import ScopeKey
from app.reservations.rows import LOCK_COLUMNS, LockKey, LockRow

_COLUMNS = ", ".join(f"l.{name}" for name in LOCK_COLUMNS)
_NULLS = ", ".join("NULL" for _ in LOCK_COLUMNS[2:])

# As for balances: wanted rows by snapshot, the ones locked, and (SKIP LOCKED) those held
# elsewhere. A scope's active locks are wanted only when past the expiry horizon given; a
# customer-level scope (entity NULL) wants its entities' too (they may hold its balances).
# ``customer_id = ANY(<the keys' customers>)`` on every scan repeats what the joins imply, as a
# constant Citus can prune shards with (a join with unnest is not one).
_LOCK = f"""
WITH wanted AS (
    SELECT l.customer_id, l.lock_id FROM balance_locks l
    JOIN unnest(%(key_customers)s::text[], %(lock_ids)s::text[]) AS k(customer_id, lock_id)
      ON l.customer_id = k.customer_id AND l.lock_id = k.lock_id
    WHERE l.customer_id = ANY(%(customers)s::text[])
    UNION
    SELECT l.customer_id, l.lock_id FROM balance_locks l
    JOIN unnest(%(scope_customers)s::text[], %(features)s::text[], %(entities)s::text[])
      AS s(customer_id, feature_id, entity_id)
      ON l.customer_id = s.customer_id AND l.feature_id = s.feature_id
     AND (s.entity_id IS NULL OR l.entity_id = s.entity_id)
    WHERE l.customer_id = ANY(%(customers)s::text[])
      AND l.status = 'active' AND l.expires_at <= %(expired_by)s
), locked AS (
    SELECT {_COLUMNS} FROM balance_locks l
    WHERE l.customer_id = ANY(%(customers)s::text[])
      AND (l.customer_id, l.lock_id) IN (SELECT customer_id, lock_id FROM wanted)
    ORDER BY l.customer_id, l.lock_id
    FOR UPDATE {{skip}}
)
SELECT true, locked.* FROM locked
UNION ALL
SELECT false, w.customer_id, w.lock_id, {_NULLS} FROM wanted w
WHERE NOT EXISTS (SELECT FROM locked l WHERE l.customer_id = w.customer_id
                  AND l.lock_id = w.lock_id)
"""
_LOCK_SKIPPING = _LOCK.format(skip="SKIP LOCKED")
_LOCK_WAITING = _LOCK.format(skip="")

_INSERT = f"""
INSERT INTO balance_locks ({", ".join(LOCK_COLUMNS)})
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::numeric[], %s::jsonb[], %s::text[], %s::timestamptz[],
                     %s::timestamptz[], %s::timestamptz[])
"""
# The advisory lock of one lock id: held by whoever claims the id, until its transaction ends.
# Every writer of lock_ids holds it, so an INSERT under it never waits for another's; the batch
# path only *tries* it (an id being claimed elsewhere defers the command, which then finds the
# id taken or free), the waiting path waits for it, after its row locks.
_ID_LOCK = "hashtextextended('lock_id' || chr(31) || c.lock_id, 0)"

_CLAIM = f"""
WITH tried AS MATERIALIZED (
    SELECT c.lock_id, c.customer_id, pg_try_advisory_xact_lock({_ID_LOCK}) AS ours
    FROM unnest(%s::text[], %s::text[]) AS c(lock_id, customer_id)
), claimed AS (
    INSERT INTO lock_ids (lock_id, customer_id)
    SELECT lock_id, customer_id FROM tried WHERE ours
    ON CONFLICT (lock_id) DO NOTHING
    RETURNING lock_id
)
SELECT t.lock_id, t.customer_id, t.ours, c.lock_id IS NOT NULL
FROM tried t LEFT JOIN claimed c ON c.lock_id = t.lock_id
"""
_WAIT_FOR_IDS = f"""
SELECT pg_advisory_xact_lock({_ID_LOCK})
FROM unnest(%s::text[]) AS c(lock_id) ORDER BY c.lock_id
"""
_UNCLAIM = "DELETE FROM lock_ids WHERE lock_id = ANY(%s::text[])"

_UPDATE = """
UPDATE balance_locks AS l SET status = u.status, amount = u.amount, finalized_at = u.finalized_at
FROM unnest(%s::text[], %s::text[], %s::text[], %s::numeric[], %s::timestamptz[])
    AS u(customer_id, lock_id, status, amount, finalized_at)
WHERE l.customer_id = u.customer_id AND l.lock_id = u.lock_id
  AND l.customer_id = ANY(%s::text[])
"""


async def lock(
    conn: AsyncConnection,
    keys: Sequence[LockKey],
    scopes: Sequence[ScopeKey],
    expired_by: datetime | None,
    *,
    wait: bool,
) -> tuple[list[LockRow], list[LockKey]]:
    """Lock the reservations of ``keys`` and the active ones of ``scopes`` expired by
    ``expired_by``; return them and the keys of wanted rows held elsewhere."""
    parameters = {
        "key_customers": [k.customer_id for k in keys],
        "lock_ids": [k.lock_id for k in keys],
        "scope_customers": [s.customer_id for s in scopes],
        "features": [s.feature_id for s in scopes],
        "entities": [s.entity_id for s in scopes],
        "expired_by": expired_by,
        "customers": sorted({k.customer_id for k in keys} | {s.customer_id for s in scopes}),
    }
    statement = _LOCK_WAITING if wait else _LOCK_SKIPPING
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, parameters)).all()
    locked = [LockRow(*row[1:]) for row in result if row[0]]
    held = [LockKey(row[1], row[2]) for row in result if not row[0]]
    return locked, held


async def claim_ids(
    conn: AsyncConnection, keys: Sequence[LockKey], *, wait: bool
) -> tuple[set[LockKey], set[LockKey]]:
    """Claim each key's lock id for its customer (ids distinct), in this transaction; return the
    keys claimed, and those whose id another transaction is claiming (``wait=False`` only). Any
    other key's id is taken. A claim the transaction does not use must be ``unclaim``ed."""
    ids, customers = [k.lock_id for k in keys], [k.customer_id for k in keys]
    if wait:
        await conn.exec_driver_sql(_WAIT_FOR_IDS, (ids,))
    result: Sequence[Any] = (await conn.exec_driver_sql(_CLAIM, (ids, customers))).all()
    claimed = {LockKey(customer, lock_id) for lock_id, customer, _, won in result if won}
    busy = {LockKey(customer, lock_id) for lock_id, customer, ours, _ in result if not ours}
    return claimed, busy


async def write(
    conn: AsyncConnection,
    updated: Sequence[LockRow],
    inserted: Sequence[LockRow],
    unclaimed: Sequence[str] = (),
) -> None:
    if unclaimed:  # claims of commands that took no lock: the id stays free
        await conn.exec_driver_sql(_UNCLAIM, (list(unclaimed),))
    if updated:
        columns = ("customer_id", "lock_id", "status", "amount", "finalized_at")
        changed = [[getattr(row, name) for row in updated] for name in columns]
        customers = sorted({row.customer_id for row in updated})
        await conn.exec_driver_sql(_UPDATE, (*changed, customers))
    if inserted:
        values = tuple(
            [Jsonb(row.items) if name == "items" else getattr(row, name) for row in inserted]
            for name in LOCK_COLUMNS
        )
        await conn.exec_driver_sql(_INSERT, values)


async def find_by_lock_id(conn: AsyncConnection, lock_id: str) -> LockRow | None:
    """The lock with this id, whichever customer's, read without locks: its customer from
    ``lock_ids`` (on Citus: that table's shard, then the customer's)."""
    statement = f"""SELECT {_COLUMNS} FROM balance_locks l
        WHERE l.customer_id = (SELECT i.customer_id FROM lock_ids i WHERE i.lock_id = %s)
          AND l.lock_id = %s"""
    row: Any = (await conn.exec_driver_sql(statement, (lock_id, lock_id))).first()
    return LockRow(*row) if row else None


async def get(conn: AsyncConnection, key: LockKey) -> LockRow | None:
    statement = (
        f"SELECT {_COLUMNS} FROM balance_locks l WHERE l.customer_id = %s AND l.lock_id = %s"
    )
    row: Any = (await conn.exec_driver_sql(statement, (key.customer_id, key.lock_id))).first()
    return LockRow(*row) if row else None


async def find_expired_of(
    conn: AsyncConnection, features: Sequence[tuple[str, str]], now: datetime
) -> list[LockRow]:
    """The active locks past their expiry of these (customer, feature) pairs, every entity's,
    read without locks (reads show them given back)."""
    if not features:
        return []
    statement = f"""SELECT {_COLUMNS} FROM balance_locks l
        JOIN unnest(%s::text[], %s::text[]) AS f(customer_id, feature_id)
          ON l.customer_id = f.customer_id AND l.feature_id = f.feature_id
        WHERE l.customer_id = ANY(%s::text[]) AND l.status = 'active' AND l.expires_at <= %s
        ORDER BY l.customer_id, l.lock_id"""
    customers = sorted({f[0] for f in features})
    parameters = ([f[0] for f in features], [f[1] for f in features], customers, now)
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, parameters)).all()
    return [LockRow(*row) for row in result]


async def find_expired(conn: AsyncConnection, now: datetime, limit: int) -> list[LockRow]:
    """Active locks past their expiry, read without locks (the sweeper then locks by scope)."""
    statement = f"""SELECT {_COLUMNS} FROM balance_locks l
        WHERE l.status = 'active' AND l.expires_at <= %s ORDER BY l.expires_at LIMIT %s"""
    result: Sequence[Any] = (await conn.exec_driver_sql(statement, (now, limit))).all()
    return [LockRow(*row) for row in result]
