"""API keys: creating, revoking, and authenticating the bearer secret of a request."""

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.errors import ApiKeyNotFound
from app.auth.models import SCOPE_RANK, ApiKey, Scope
from app.auth.repository import ApiKeyRepository
from app.core.clock import Clock

SECRET_PREFIX = "sk_"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. ``key_id`` is None only with authentication turned off."""

    key_id: str | None
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return any(SCOPE_RANK[held] >= SCOPE_RANK[scope] for held in self.scopes)


UNAUTHENTICATED_DEVELOPER = Principal(key_id=None, scopes=frozenset({Scope.ADMIN}))


MIN_SECRET_LENGTH = 32


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_problem(secret: str) -> str | None:
    """Why an operator-supplied secret is unacceptable, or None. Never repeats the secret."""
    if not secret.startswith(SECRET_PREFIX):
        return f"it must start with '{SECRET_PREFIX}'"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it must be at least {MIN_SECRET_LENGTH} characters long"
    if not secret.isascii() or not secret.isprintable() or any(c.isspace() for c in secret):
        return "it must be printable ASCII without spaces"
    return None


class ApiKeyService:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.keys = ApiKeyRepository(session)
        self.session = session
        self.clock = clock

    async def create(
        self, name: str, scopes: Sequence[Scope], secret: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its secret. The secret is returned once and never stored.

        ``secret`` registers one the operator chose (``BALANCES_BOOTSTRAP_ADMIN_KEY``); check it
        with ``secret_problem`` first. Otherwise a random one is generated.
        """
        secret = secret or new_secret()
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            scopes=sorted(set(scopes)),
            secret_hash=hash_secret(secret),
            secret_hint=secret[:7] + "…",
            created_at=self.clock.now(),
        )
        self.keys.add(key)
        await self.session.flush()
        return key, secret

    async def revoke(self, key_id: str) -> ApiKey:
        key = await self.keys.get(key_id)
        if key is None:
            raise ApiKeyNotFound(f"There is no API key '{key_id}'.")
        if key.revoked_at is None:
            key.revoked_at = self.clock.now()
            await self.session.flush()
        return key

    async def list(self) -> Sequence[ApiKey]:
        return await self.keys.list_all()

    async def count(self) -> int:
        return await self.keys.count()


class Authenticator:
    """Turns a bearer secret into a Principal, caching valid keys for ``cache_seconds``.

    The cache saves a database round trip on nearly every request; the price is that a revoked
    key keeps working for at most ``cache_seconds`` in each worker (0 turns the cache off).
    Unknown secrets are never cached, so guessing cannot grow the cache.
    """

    def __init__(self, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[Principal, float]] = {}

    def cached(self, secret: str) -> Principal | None:
        """The principal of a key validated less than ``cache_seconds`` ago, without SQL."""
        cached = self._cache.get(hash_secret(secret))
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    async def authenticate(self, session: AsyncSession, secret: str) -> Principal | None:
        principal = self.cached(secret)
        if principal is not None:
            return principal
        digest = hash_secret(secret)
        key = await ApiKeyRepository(session).get_by_secret_hash(digest)
        if key is None or not hmac.compare_digest(key.secret_hash, digest):
            return None
        if key.revoked_at is not None:
            self._cache.pop(digest, None)
            return None
        principal = Principal(key_id=key.id, scopes=frozenset(Scope(s) for s in key.scopes))
        if self.cache_seconds > 0:
            self._cache[digest] = (principal, time.monotonic() + self.cache_seconds)
        return principal
