"""Key management for the ``balances keys`` commands and the first-run bootstrap key."""

import sys
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Scope
from app.auth.service import ApiKeyService
from app.core.clock import SystemClock


async def create_key(
    sessions: async_sessionmaker[AsyncSession], name: str, scopes: Sequence[Scope]
) -> tuple[str, str]:
    """Create a key; returns (key id, secret). The secret cannot be shown again."""
    async with sessions() as session, session.begin():
        key, secret = await ApiKeyService(session, SystemClock()).create(name, scopes)
        return key.id, secret


async def list_keys(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, object]]:
    async with sessions() as session:
        return [
            {
                "id": key.id,
                "name": key.name,
                "scopes": key.scopes,
                "secret": key.secret_hint,
                "created_at": key.created_at.isoformat(),
                "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            }
            for key in await ApiKeyService(session, SystemClock()).list()
        ]


async def revoke_key(sessions: async_sessionmaker[AsyncSession], key_id: str) -> None:
    async with sessions() as session, session.begin():
        await ApiKeyService(session, SystemClock()).revoke(key_id)


async def ensure_bootstrap_key(sessions: async_sessionmaker[AsyncSession]) -> None:
    """On the very first start (no key exists at all), create an admin key and show it once.

    A transaction-scoped advisory lock keeps two workers or replicas starting together from
    both creating one.
    """
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT pg_advisory_xact_lock(7214330002)"))
        service = ApiKeyService(session, SystemClock())
        if await service.count() > 0:
            return
        key, secret = await service.create("bootstrap-admin", [Scope.ADMIN])
    print(
        "\n" + "=" * 72 + "\n"
        "  No API key existed, so an admin key was created. It is shown only now:\n\n"
        f"    {secret}\n\n"
        f"  (id {key.id}). Create narrower keys with `balances keys create`.\n" + "=" * 72 + "\n",
        file=sys.stderr,
        flush=True,
    )
