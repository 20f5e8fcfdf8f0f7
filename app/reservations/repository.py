"""All SQL that touches ``balance_locks``.

Lock order: a lock row is only ever locked *after* the balances it holds are locked (id order),
by every path (check, track, finalize, sweeper), so reservations cannot deadlock with usage.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.reservations.models import BalanceLock, LockStatus


class LockRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> BalanceLock | None:
        """Insert a lock; ``None`` if the customer already has one with this ``lock_id``."""
        statement = (
            insert(BalanceLock).values(values).on_conflict_do_nothing().returning(BalanceLock)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def get(self, customer_id: str, lock_id: str) -> BalanceLock | None:
        return await self.session.get(BalanceLock, (customer_id, lock_id))

    async def find_by_lock_id(self, lock_id: str) -> Sequence[BalanceLock]:
        """Locks with this id across customers (at most a few: ids are chosen per customer)."""
        statement = select(BalanceLock).where(BalanceLock.lock_id == lock_id).limit(2)
        return (await self.session.scalars(statement)).all()

    async def get_for_update(self, customer_id: str, lock_id: str) -> BalanceLock | None:
        """Lock one lock row to finalize or expire it; its status is re-read under the lock, so
        a lock is confirmed, released or expired exactly once however requests race."""
        statement = (
            select(BalanceLock)
            .where(BalanceLock.customer_id == customer_id, BalanceLock.lock_id == lock_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def find_expired_for_update(
        self, customer_id: str, feature_id: str, entity_id: str | None, now: datetime
    ) -> Sequence[BalanceLock]:
        """Lock the active, expired locks of one feature (its balances are already locked)."""
        statement = (
            select(BalanceLock)
            .where(
                BalanceLock.customer_id == customer_id,
                BalanceLock.feature_id == feature_id,
                BalanceLock.entity_id.is_not_distinct_from(entity_id),
                BalanceLock.status == LockStatus.ACTIVE,
                BalanceLock.expires_at <= now,
            )
            .order_by(BalanceLock.lock_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).all()

    async def find_expired(self, now: datetime, limit: int) -> Sequence[BalanceLock]:
        """Active locks past their expiry, read without locks (the sweeper locks per lock)."""
        statement = (
            select(BalanceLock)
            .where(BalanceLock.status == LockStatus.ACTIVE, BalanceLock.expires_at <= now)
            .order_by(BalanceLock.expires_at)
            .limit(limit)
        )
        return (await self.session.scalars(statement)).all()
