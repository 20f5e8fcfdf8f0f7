"""Background upkeep: persist due resets, give back expired reservations, and forget
idempotency records past their retention.

Reads already show reset state and writes persist it first, and expired locks are given back by
the next check or track of their feature, so the sweeper is never needed for correctness; it
keeps stored rows, ledgers and reports current for balances nobody touches. Runs as
``balances sweep`` (one pass) or as a background task of ``serve``
(``BALANCES_SWEEP_INTERVAL_SECONDS``).
"""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.balances.repository import BalanceRepository
from app.balances.service import persist_due_reset
from app.core.clock import Clock
from app.core.config import Settings
from app.core.context import RequestContext
from app.idempotency.repository import IdempotencyRepository
from app.ledger.service import LedgerWriter
from app.reservations.repository import LockRepository
from app.reservations.service import ReservationService

logger = logging.getLogger(__name__)

SWEEPER_CONTEXT = RequestContext(request_id="sweeper")


class Sweeper:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        batch_size: int = 500,
        idempotency_retention_hours: float = 24,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.batch_size = batch_size
        self.idempotency_retention_hours = idempotency_retention_hours

    @classmethod
    def from_settings(
        cls, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, settings: Settings
    ) -> "Sweeper":
        return cls(
            sessionmaker, clock, settings.sweep_batch_size, settings.idempotency_retention_hours
        )

    async def sweep_once(self) -> int:
        """One full pass; returns how many resets and lock expiries it persisted."""
        return (
            await self.persist_due_resets()
            + await self.expire_locks()
            + await self.purge_idempotency_keys()
        )

    async def persist_due_resets(self) -> int:
        """Reset every balance that is due, one short transaction per batch; return the count."""
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                now = self.clock.now()
                due = await BalanceRepository(session).find_due_for_reset_for_update(
                    now, self.batch_size
                )
                ledger = LedgerWriter(session, SWEEPER_CONTEXT)
                for balance in due:
                    persist_due_reset(balance, now, ledger)
            total += len(due)
            if len(due) < self.batch_size:
                return total

    async def expire_locks(self) -> int:
        """Give back every lock past its expiry, one transaction per feature; return the count."""
        total = 0
        while True:
            async with self.sessionmaker() as session:
                expired = await LockRepository(session).find_expired(
                    self.clock.now(), self.batch_size
                )
            released = 0
            features = {(lock.customer_id, lock.feature_id, lock.entity_id) for lock in expired}
            for customer_id, feature_id, entity_id in sorted(features, key=str):
                async with self.sessionmaker() as session, session.begin():
                    service = ReservationService(session, self.clock, SWEEPER_CONTEXT)
                    _, count = await service.lock_feature(
                        customer_id, feature_id, entity_id, live_only=False
                    )
                    released += count
            total += released
            if len(expired) < self.batch_size or released == 0:
                return total

    async def purge_idempotency_keys(self) -> int:
        """Forget idempotency records past their retention, in batches; return the count."""
        cutoff = self.clock.now() - timedelta(hours=self.idempotency_retention_hours)
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                purged = await IdempotencyRepository(session).purge_older_than(
                    cutoff, self.batch_size
                )
            total += purged
            if purged < self.batch_size:
                return total

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            try:
                swept = await self.sweep_once()
                if swept:
                    logger.info("sweeper persisted %d resets and lock expiries", swept)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep sweeping after a transient failure (database restart…)
                logger.exception("sweeper pass failed")
            await asyncio.sleep(interval_seconds)
