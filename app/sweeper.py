"""Background upkeep: persist due resets, give back expired reservations, and forget
idempotency records past their retention.

Reads already show reset state and writes persist it first, and expired locks are given back by
the next check or track of their feature, so the sweeper is never needed for correctness; it
keeps stored rows, ledgers and reports current for balances nobody touches. Runs as
``balances sweep`` (one pass) or as a background task of ``serve``
(``BALANCES_SWEEP_INTERVAL_SECONDS``).
"""

import asyncio
import json
import logging
from copy import copy
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.balances import repository as balances
from app.balances.rules import catch_up
from app.balances.table import BalancesTable
from app.batcher.protocols import Envelope, Table
from app.batcher.transaction import Retry, Timeouts, run_batch
from app.core.clock import Clock
from app.core.config import Settings
from app.core.context import RequestContext
from app.core.database import log_background_failure
from app.idempotency.repository import purge_older_than
from app.ledger import repository as ledger
from app.ledger.table import LedgerTable
from app.reservations import repository as reservations
from app.reservations.commands import ExpireLocks
from app.reservations.table import ReservationsTable

logger = logging.getLogger(__name__)

SWEEPER_CONTEXT = RequestContext(request_id="sweeper")


class Sweeper:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        batch_size: int = 500,
        idempotency_retention_hours: float = 24,
        timeouts: Timeouts | None = None,
    ) -> None:
        """``timeouts``: what its transactions must set themselves (None: the connections
        start with them), so that a pass never waits forever on a row a request holds."""
        self.sessionmaker = sessionmaker
        self.engine: AsyncEngine = sessionmaker.kw["bind"]
        self.clock = clock
        self.batch_size = batch_size
        self.idempotency_retention_hours = idempotency_retention_hours
        self.timeouts = timeouts

    @classmethod
    def from_settings(
        cls, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, settings: Settings
    ) -> "Sweeper":
        return cls(
            sessionmaker,
            clock,
            settings.sweep_batch_size,
            settings.idempotency_retention_hours,
            Timeouts.unless_connected_with(settings),
        )

    async def sweep_once(self) -> int:
        """One full pass; returns how many resets and lock expiries it persisted."""
        # Locks first: one that ran out before a reset is given back into its own period, so
        # the reset then carries its units over (see ``reservations.rules.bring_up_to_date``).
        return (
            await self.expire_locks()
            + await self.persist_due_resets()
            + await self.purge_idempotency_keys()
        )

    async def persist_due_resets(self) -> int:
        """Reset every balance that is due, one short transaction per batch; return the count.

        Rows a request holds are skipped (``SKIP LOCKED``): that request resets them itself.
        """
        total = 0
        while True:
            async with self.engine.connect() as conn, conn.begin():
                if self.timeouts is not None:  # SKIP LOCKED never waits; statements might
                    await conn.exec_driver_sql(
                        "SELECT set_config('statement_timeout', %s, true)",
                        (str(self.timeouts.statement_ms),),
                    )
                now = self.clock.now()
                due = await balances.lock_due_for_reset(conn, now, self.batch_size)
                rows, entries = [], []
                for row in due:
                    row = copy(row)
                    caught_up = catch_up(row, now)
                    if caught_up:
                        rows.append(row)
                        entries += [(entry, SWEEPER_CONTEXT) for entry in caught_up]
                await balances.write(conn, updated=rows, inserted=[], deleted=[])
                if entries:
                    await ledger.append(conn, entries)
            total += len(due)
            if len(due) < self.batch_size:
                return total

    async def expire_locks(self) -> int:
        """Give back every lock past its expiry, one transaction per feature; return the count."""
        tables: list[Table] = [BalancesTable(), ReservationsTable(), LedgerTable()]
        total = 0
        while True:
            now = self.clock.now()
            async with self.engine.connect() as conn:
                expired = await reservations.find_expired(conn, now, self.batch_size)
            released = 0
            for scope in sorted({lock.scope for lock in expired}, key=str):
                command = ExpireLocks(scope, Envelope(now, SWEEPER_CONTEXT, None))
                outcome = await run_batch(
                    self.engine, tables, [command], wait=True, timeouts=self.timeouts
                )
                reply = None if isinstance(outcome, Retry) else outcome.replies.get(0)
                if reply is not None and not isinstance(reply, Exception):
                    released += json.loads(reply.body)["expired"]
            total += released
            if len(expired) < self.batch_size or released == 0:
                return total

    async def purge_idempotency_keys(self) -> int:
        """Forget idempotency records past their retention, in batches; return the count."""
        cutoff = self.clock.now() - timedelta(hours=self.idempotency_retention_hours)
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                purged = await purge_older_than(session, cutoff, self.batch_size)
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
            except Exception as error:  # keep sweeping after a failure (database restart…)
                log_background_failure(logger, "sweeper pass failed; retrying later", error)
            await asyncio.sleep(interval_seconds)
