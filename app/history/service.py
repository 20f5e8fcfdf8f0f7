"""History: the ledger of a balance or of a customer's feature, with due resets shown.

Above both ``balances`` and ``ledger``: it reads entries, and balances to show the resets
that are due but not yet written.
"""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances import repository as balances
from app.balances.resets import due_reset, state_at
from app.balances.rollovers import total
from app.core.cursor import decode_cursor, encode_cursor
from app.history.schemas import HistoryParams
from app.ledger import repository as ledger
from app.ledger.models import EntryKind
from app.ledger.repository import StoredEntry

NEWEST_ID = 2**63 - 1  # the bigint maximum: a cursor "before" it starts at the newest entry


async def history(
    conn: AsyncConnection, params: HistoryParams, now: datetime
) -> tuple[list[StoredEntry], str | None]:
    """One page of entries, newest first, and the cursor of the next page.

    The first page starts with a *pending* ``reset`` entry (``id`` null) for each balance
    whose reset is due but not yet persisted, so history shows the truth without a write.
    """
    before = decode_cursor(params.start_cursor, int)[0] if params.start_cursor else None
    filters = {
        "customer_id": params.customer_id,
        "balance_id": params.balance_id,
        "feature_id": params.feature_id,
        "entity_id": params.entity_id,
        "interval": params.interval,
    }
    pending = [] if before is not None else await _pending_resets(conn, filters, now)
    pending = pending[: params.limit]  # they count toward the page size
    room = params.limit - len(pending)
    rows = await ledger.page(conn, filters, before, room + 1)
    if len(rows) <= room:
        return pending + rows, None
    # A page full of pending entries continues with the newest persisted one.
    last_id = rows[room - 1].id if room > 0 else NEWEST_ID
    assert last_id is not None
    return pending + rows[:room], encode_cursor(last_id)


async def _pending_resets(
    conn: AsyncConnection, filters: dict[str, str | None], now: datetime
) -> list[StoredEntry]:
    by_balance = {**filters, "id": filters["balance_id"]}
    del by_balance["balance_id"]
    entries = []
    for balance in await balances.find_matching(conn, by_balance):
        if due_reset(balance, now) is None:
            continue
        state = state_at(balance, now)
        entries.append(
            StoredEntry(
                id=None,
                customer_id=balance.customer_id,
                balance_id=balance.id,
                feature_id=balance.feature_id,
                entity_id=balance.entity_id,
                interval=balance.interval,
                kind=EntryKind.RESET,
                remaining_delta=state.remaining - balance.remaining,
                usage_delta=-balance.usage,
                remaining_after=state.remaining,
                usage_after=state.usage,
                granted_after=state.granted,
                balance_version=balance.version,
                idempotency_key=None,
                request_id=None,
                api_key_id=None,
                created_at=now,
                # The carry-over (and trim) the reset brings, shown with it.
                rollover_delta=total(state.rollovers) - total(balance.rollovers),
                rollover_after=total(state.rollovers),
            )
        )
    return entries
