"""Persist due resets of balances nobody touches, so ledgers and reports stay current.

Reads already show reset state and writes persist it first, so the sweeper is never needed for
correctness; it keeps the stored rows and the ledger close to the truth. Runs as ``balances
sweep`` (one pass) or as a background task of ``serve`` (``BALANCES_SWEEP_INTERVAL_SECONDS``).
"""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.balances.repository import BalanceRepository
from app.balances.service import persist_due_reset
from app.core.clock import Clock
from app.core.context import RequestContext
from app.ledger.service import LedgerWriter

logger = logging.getLogger(__name__)

SWEEPER_CONTEXT = RequestContext(request_id="sweeper")


class ResetSweeper:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, batch_size: int = 500
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.batch_size = batch_size

    async def sweep_once(self) -> int:
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

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            try:
                swept = await self.sweep_once()
                if swept:
                    logger.info("sweeper persisted %d due resets", swept)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep sweeping after a transient failure (database restart…)
                logger.exception("sweeper pass failed")
            await asyncio.sleep(interval_seconds)
