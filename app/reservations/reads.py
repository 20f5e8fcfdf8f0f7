"""Reads that show reservations as they truly are: a lock past its ``expires_at`` holds
nothing, whether or not a write has given it back yet.

Used by every read of balances (``check`` without changes, ``balances.list``). The balances
package cannot import this one (packages import only downward), so ``app.main`` hands
``as_released`` to the list endpoint as a read view (``app.balances.reads.ReadView``).
"""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances.rows import BalanceRow
from app.reservations import repository, rules


async def as_released(
    conn: AsyncConnection, balances: list[BalanceRow], now: datetime
) -> list[BalanceRow]:
    """``balances`` (read without locks) with their features' expired locks given back as the
    next write will give them back; one more read, nothing written."""
    features = sorted({(row.customer_id, row.feature_id) for row in balances})
    locks = await repository.find_expired_of(conn, features, now)
    if not locks:
        return balances
    shown = {row.key: row for row in balances}
    for customer_id in {lock.customer_id for lock in locks}:
        rows = [row for row in balances if row.customer_id == customer_id]
        held = [lock for lock in locks if lock.customer_id == customer_id]
        shown.update((row.key, row) for row in rules.view_released(rows, held, now))
    return [shown[row.key] for row in balances]
