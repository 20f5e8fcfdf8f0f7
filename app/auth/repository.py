"""All SQL that touches ``api_keys``."""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, key: ApiKey) -> None:
        self.session.add(key)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def get_by_secret_hash(self, secret_hash: bytes) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.secret_hash == secret_hash)
        return (await self.session.scalars(statement)).one_or_none()

    async def list_all(self) -> Sequence[ApiKey]:
        return (await self.session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all()

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(ApiKey)) or 0)
