"""Key management for the ``balances keys`` commands and the first-run bootstrap key."""

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Scope
from app.auth.service import ApiKeyService
from app.core.clock import SystemClock

logger = logging.getLogger("balances.auth")

BOOTSTRAP_KEY_FILE = "bootstrap-admin-key"


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


def write_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path``, readable by this user only (0600), replacing any old file.

    The file is written whole under a temporary name and then renamed, so nobody ever reads a
    half-written secret, and its mode is 0600 from the moment it exists. A missing directory is
    created with mode 0700.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secret + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


async def ensure_bootstrap_key(
    sessions: async_sessionmaker[AsyncSession], key_file: Path, secret: str | None = None
) -> str | None:
    """On the very first start (no key exists at all), create an admin key; returns its id.

    ``secret`` (from ``BALANCES_BOOTSTRAP_ADMIN_KEY``) is registered as the key, hashed. Without
    it, a secret is generated and written to ``key_file`` (mode 0600) before the key is
    committed, so a key is never registered that nobody can read. Either way the secret never
    reaches a log, stdout or stderr; only the file's path is logged. When any key exists, this
    does nothing: a supplied secret is then ignored.

    A transaction-scoped advisory lock keeps two workers or replicas starting together from
    both creating one.
    """
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT pg_advisory_xact_lock(7214330002)"))
        service = ApiKeyService(session, SystemClock())
        if await service.count() > 0:
            if secret is not None:
                logger.info(
                    "API keys already exist: BALANCES_BOOTSTRAP_ADMIN_KEY is ignored "
                    "(it is only registered on a database without keys)"
                )
            return None
        key, created = await service.create("bootstrap-admin", [Scope.ADMIN], secret)
        if secret is None:
            write_secret_file(key_file, created)  # raises before the commit if it cannot
    if secret is None:
        logger.warning(
            "No API key existed, so admin key %s was created. Its secret is in %s (mode 0600, "
            "readable by this user only): move it to your secret store and delete the file. "
            "Create narrower keys with `balances keys create`.",
            key.id,
            key_file,
        )
    else:
        logger.warning(
            "No API key existed, so the admin key from BALANCES_BOOTSTRAP_ADMIN_KEY was "
            "registered as %s.",
            key.id,
        )
    return key.id
