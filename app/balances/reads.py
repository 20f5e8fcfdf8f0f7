"""Reads of balances: one statement each, no locks; due resets are applied when shown."""

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances import repository
from app.balances.rows import BalanceRow
from app.balances.schemas import BalanceStatus, ListBalancesParams
from app.core.cursor import decode_cursor, encode_cursor

ReadView = Callable[[AsyncConnection, list[BalanceRow], datetime], Awaitable[list[BalanceRow]]]
"""What a package above balances changes in how rows read (reservations: expired locks given
back). Balances imports nothing above it, so ``app.main`` wires these into
``app.state.balance_read_views``; the list applies each to the rows it shows."""


async def list_page(
    conn: AsyncConnection, params: ListBalancesParams, now: datetime
) -> tuple[list[BalanceRow], str | None]:
    """One page of balances and the cursor of the next page (None on the last page)."""
    if params.plan_id is not None:
        return [], None
    after = decode_cursor(params.start_cursor, str, str) if params.start_cursor else None
    statuses = set(params.statuses or [BalanceStatus.ACTIVE])
    rows = await repository.list_page(
        conn,
        filters={
            "customer_id": params.customer_id,
            "feature_id": params.feature_id,
            "entity_id": params.entity_id,
        },
        include_active="active" in statuses,
        include_expired="expired" in statuses,
        after=(after[0], after[1]) if after else None,
        limit=params.limit + 1,
        now=now,
    )
    if len(rows) <= params.limit:
        return rows, None
    last = rows[params.limit - 1]
    return rows[: params.limit], encode_cursor(last.customer_id, last.id)
