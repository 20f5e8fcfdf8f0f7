"""SQL on ``idempotency_keys`` outside the write path (which claims and stores keys itself)."""

from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyRecord


async def purge_older_than(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` records created before ``cutoff``; returns how many."""
    oldest = (
        select(IdempotencyRecord.scope, IdempotencyRecord.key)
        .where(IdempotencyRecord.created_at < cutoff)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    columns = tuple_(IdempotencyRecord.scope, IdempotencyRecord.key)
    result = await session.execute(
        delete(IdempotencyRecord).where(columns.in_(oldest)).returning(IdempotencyRecord.key)
    )
    return len(result.all())
