"""The ``balances`` table as the write path sees it: the rows a batch locked, changed in memory.

Commands read rows through ``LockedBalances`` and hand back the rows their rules produced;
nothing is written until the batch's ``write``, one statement per kind of change.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances import repository
from app.balances.rows import BalanceRow, NewKey, RowKey, ScopeKey, SuppliedId

TABLE = "balances"


@dataclass(slots=True)
class LockedBalances:
    rows: dict[RowKey, BalanceRow]
    taken_ids: set[SuppliedId] = field(default_factory=set)
    updated: set[RowKey] = field(default_factory=set)
    inserted: set[RowKey] = field(default_factory=set)
    deleted: set[RowKey] = field(default_factory=set)

    def get(self, key: RowKey) -> BalanceRow | None:
        return self.rows.get(key)

    def scope(self, scope: ScopeKey) -> list[BalanceRow]:
        """Every locked balance of the scope, live or expired, in id order."""
        return sorted((row for row in self.rows.values() if row.scope == scope), key=_by_id)

    def id_taken(self, claim: SuppliedId) -> bool:
        """Whether another customer's balance has (or had) this id, this batch's included."""
        if claim in self.taken_ids:
            return True
        return any(key.id == claim.id and key.customer_id != claim.customer_id
                   for key in self.inserted)  # fmt: skip

    def save(self, rows: Sequence[BalanceRow]) -> None:
        """Keep the new values of locked rows (or of rows inserted by this batch); a row whose
        version did not move was not changed and is not written."""
        for row in rows:
            if self.rows[row.key].version == row.version:
                continue
            self.rows[row.key] = row
            if row.key not in self.inserted:
                self.updated.add(row.key)

    def insert(self, row: BalanceRow) -> None:
        self.rows[row.key] = row
        self.inserted.add(row.key)

    def delete(self, row: BalanceRow) -> None:
        del self.rows[row.key]
        self.updated.discard(row.key)
        if row.key in self.inserted:
            self.inserted.discard(row.key)
        else:
            self.deleted.add(row.key)


def _by_id(row: BalanceRow) -> str:
    return row.id


class BalancesTable:
    name = TABLE

    async def lock(
        self, conn: AsyncConnection, keys: Sequence[Hashable], *, wait: bool
    ) -> tuple[LockedBalances, set[Hashable]]:
        scopes = [k for k in keys if isinstance(k, ScopeKey)]
        ids = [k for k in keys if isinstance(k, RowKey)]
        names = [k for k in keys if isinstance(k, SuppliedId | NewKey)]
        state = LockedBalances({})
        held: set[Hashable] = set()
        if names:  # advisory locks that guard inserts: only creates take them
            busy = await repository.lock_names(conn, [k.lock_name for k in names], wait=wait)
            held |= {k for k in names if k.lock_name in busy}
            claims = [k for k in names if isinstance(k, SuppliedId) and k not in held]
            if claims:
                state.taken_ids = await repository.used_ids(conn, claims)
        if scopes or ids:
            rows, missing = await repository.lock(conn, scopes, ids, wait=wait)
            state.rows = {row.key: row for row in rows}
            if not wait:
                for customer_id, balance_id, feature_id, entity_id in missing:
                    held.add(RowKey(customer_id, balance_id))
                    held.add(ScopeKey(customer_id, feature_id, entity_id))
        return state, held

    async def write(self, conn: AsyncConnection, state: LockedBalances) -> None:
        await repository.write(
            conn,
            updated=[state.rows[key] for key in state.updated],
            inserted=[state.rows[key] for key in state.inserted],
            deleted=list(state.deleted),
        )

    def committed(self, state: LockedBalances) -> None:
        pass
