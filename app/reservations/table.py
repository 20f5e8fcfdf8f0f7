"""The ``balance_locks`` table as the write path sees it: the reservations a batch locked."""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances.rows import ScopeKey
from app.reservations import repository
from app.reservations.rows import ActiveLocks, LockKey, LockRow

TABLE = "balance_locks"


@dataclass(slots=True)
class LockedReservations:
    rows: dict[LockKey, LockRow]
    updated: set[LockKey] = field(default_factory=set)
    inserted: set[LockKey] = field(default_factory=set)

    def get(self, key: LockKey) -> LockRow | None:
        return self.rows.get(key)

    def active_of(self, scope: ScopeKey) -> list[LockRow]:
        """The locked active reservations of the scope's feature, every entity's."""
        return sorted(
            (
                r
                for r in self.rows.values()
                if r.customer_id == scope.customer_id
                and r.feature_id == scope.feature_id
                and r.status == "active"
            ),
            key=lambda r: r.lock_id,
        )

    def save(self, rows: Sequence[LockRow]) -> None:
        """Keep new values of locked rows; a row this batch has not seen is inserted."""
        for row in rows:
            if row.key not in self.rows:
                self.inserted.add(row.key)
            elif row.key not in self.inserted:
                self.updated.add(row.key)
            self.rows[row.key] = row


class ReservationsTable:
    name = TABLE

    async def lock(
        self, conn: AsyncConnection, keys: Sequence[Hashable], *, wait: bool
    ) -> tuple[LockedReservations, set[Hashable]]:
        lock_keys = [k for k in keys if isinstance(k, LockKey)]
        actives = [k for k in keys if isinstance(k, ActiveLocks)]
        state = LockedReservations({})
        if not lock_keys and not actives:
            return state, set()
        horizon = max((k.expired_by for k in actives), default=None)
        rows, missing = await repository.lock(
            conn, lock_keys, [k.scope for k in actives], horizon, wait=wait
        )
        state.rows = {row.key: row for row in rows}
        held: set[Hashable] = set(missing)
        # A scope whose expired lock is held elsewhere waits too: it must not be given back twice.
        held |= {k for k in actives if any(m.customer_id == k.scope.customer_id for m in missing)}
        return state, held

    async def write(self, conn: AsyncConnection, state: LockedReservations) -> None:
        await repository.write(
            conn,
            updated=[state.rows[key] for key in state.updated],
            inserted=[state.rows[key] for key in state.inserted],
        )

    def committed(self, state: LockedReservations) -> None:
        pass
