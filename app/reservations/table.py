"""The ``balance_locks`` table as the write path sees it: the reservations a batch locked, and
the lock ids it claimed (``lock_ids``) for the locks its commands may take."""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from app.balances.rows import ScopeKey
from app.reservations import repository
from app.reservations.rows import ActiveLocks, LockKey, LockRow, NewLock

TABLE = "balance_locks"


@dataclass(slots=True)
class LockedReservations:
    rows: dict[LockKey, LockRow]
    updated: set[LockKey] = field(default_factory=set)
    inserted: set[LockKey] = field(default_factory=set)
    # Lock ids this transaction claimed in lock_ids, each for one customer.
    claimed: set[LockKey] = field(default_factory=set)

    def get(self, key: LockKey) -> LockRow | None:
        return self.rows.get(key)

    def id_taken(self, key: LockKey) -> bool:
        """A new lock cannot have this key: its id was not claimed for this customer (some
        lock has had it), or an earlier command of this batch took it."""
        return key not in self.claimed or key in self.rows

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
        new = [k for k in keys if isinstance(k, NewLock)]
        state = LockedReservations({})
        held: set[Hashable] = set()
        if lock_keys or actives:
            horizon = max((k.expired_by for k in actives), default=None)
            rows, missing = await repository.lock(
                conn, lock_keys, [k.scope for k in actives], horizon, wait=wait
            )
            state.rows = {row.key: row for row in rows}
            held |= set(missing)
            # A scope whose expired lock is held elsewhere waits too: it must not be given back
            # twice.
            held |= {
                k for k in actives if any(m.customer_id == k.scope.customer_id for m in missing)
            }
        if new:
            held |= await self._claim(conn, state, new, wait=wait)
        return state, held

    async def _claim(
        self, conn: AsyncConnection, state: LockedReservations, new: list[NewLock], *, wait: bool
    ) -> set[Hashable]:
        """Claim the ids of ``new``; return those that must wait: an id another transaction is
        claiming, or one an earlier command of this batch wants for another customer (the later
        one then sees whether the first took it)."""
        first: dict[str, LockKey] = {}
        for wanted in new:
            first.setdefault(wanted.key.lock_id, wanted.key)
        state.claimed, busy = await repository.claim_ids(conn, list(first.values()), wait=wait)
        return {k for k in new if k.key in busy or first[k.key.lock_id] != k.key}

    async def write(self, conn: AsyncConnection, state: LockedReservations) -> None:
        await repository.write(
            conn,
            updated=[state.rows[key] for key in state.updated],
            inserted=[state.rows[key] for key in state.inserted],
            unclaimed=[key.lock_id for key in state.claimed - state.inserted],
        )

    def committed(self, state: LockedReservations) -> None:
        pass
