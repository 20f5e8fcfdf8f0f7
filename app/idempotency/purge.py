"""Forgetting idempotency records past their retention, by the server itself.

Every worker of every instance runs the loop; each pass tries one advisory lock first, so only
one of them purges at a time and the others skip the pass (no extra process to remember).
Each batch is a short transaction that deletes the oldest records by the ``created_at`` index.
"""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.database import log_background_failure
from app.idempotency.repository import purge_older_than

logger = logging.getLogger(__name__)

_PURGE_LOCK = 0x62616C5F70757267  # "bal_purg": the one advisory lock of the purge


async def purge_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    retention_hours: float,
    batch_size: int = 1000,
) -> int | None:
    """Delete every record older than the retention; None if another process is purging."""
    cutoff = clock.now() - timedelta(hours=retention_hours)
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(_PURGE_LOCK))):
                return None if total == 0 else total
            purged = await purge_older_than(session, cutoff, batch_size)
        total += purged
        if purged < batch_size:
            return total


async def purge_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    retention_hours: float,
    interval_seconds: float,
) -> None:
    while True:
        try:
            purged = await purge_once(sessionmaker, clock, retention_hours)
            if purged:
                logger.info("purged %d idempotency records past their retention", purged)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # try again next time
            log_background_failure(logger, "idempotency purge failed; retrying later", error)
        await asyncio.sleep(interval_seconds)
