"""The ledger as the write path sees it: entries appended by a batch, inserted in one statement.

Nothing is locked: the ledger is append-only (a trigger refuses UPDATE and DELETE), and the
balance rows the entries describe are locked by the balances table, which comes first.
"""

from collections.abc import Hashable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.metrics import MUTATIONS
from app.ledger import repository
from app.ledger.entries import PendingEntries

TABLE = "balance_ledger"


class LedgerTable:
    name = TABLE

    async def lock(
        self, conn: AsyncConnection, keys: Sequence[Hashable], *, wait: bool
    ) -> tuple[PendingEntries, set[Hashable]]:
        return PendingEntries([]), set()

    async def write(self, conn: AsyncConnection, state: PendingEntries) -> None:
        if state.items:
            await repository.append(conn, state.items)

    def committed(self, state: PendingEntries) -> None:
        for entry, _ in state.items:
            MUTATIONS.labels(entry.kind).inc()
