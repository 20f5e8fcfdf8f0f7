"""All SQL that touches ``idempotency_keys``."""

from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyRecord


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, api_key_id: str, key: str, fingerprint: bytes, now: datetime) -> bool:
        """Take the key for this request; False if another request already holds it.

        The primary key does the work: while the first request's transaction is open, this
        INSERT waits on its row; once that commits, this one conflicts and the caller replays
        the stored answer; had it rolled back, this one takes the key. Never applied twice.
        """
        statement = (
            insert(IdempotencyRecord)
            .values(api_key_id=api_key_id, key=key, fingerprint=fingerprint, created_at=now)
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        )
        return (await self.session.scalar(statement)) is not None

    async def get(self, api_key_id: str, key: str) -> IdempotencyRecord | None:
        statement = select(IdempotencyRecord).where(
            IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def store_response(
        self, api_key_id: str, key: str, status_code: int, content_type: str, body: bytes
    ) -> None:
        await self.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
            .values(status_code=status_code, content_type=content_type, response_body=body)
        )

    async def purge_older_than(self, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` records created before ``cutoff``; returns how many."""
        oldest = (
            select(IdempotencyRecord.api_key_id, IdempotencyRecord.key)
            .where(IdempotencyRecord.created_at < cutoff)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        columns = tuple_(IdempotencyRecord.api_key_id, IdempotencyRecord.key)
        result = await self.session.execute(
            delete(IdempotencyRecord).where(columns.in_(oldest)).returning(IdempotencyRecord.key)
        )
        return len(result.all())
