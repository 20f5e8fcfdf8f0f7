"""Engine, sessions and the one-transaction-per-request rule.

The session dependency owns the transaction: it begins before the endpoint runs and commits after
it returns (rolling back on any error), *before* the response is sent, so a client never sees a
success whose commit then failed. Services and repositories only ``flush``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.core.metrics import MUTATIONS, POOL_IN_USE, POOL_SIZE

# Ledger entry kinds written in this session, counted as mutations once the commit succeeds.
COMMITTED_KINDS_KEY = "ledger_kinds"


def to_sqlalchemy_url(database_url: str) -> URL:
    """Accept the usual ``postgres://`` / ``postgresql://`` forms and pin the psycopg 3 driver."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got driver {url.drivername!r}")


class Database:
    def __init__(self, database_url: str, settings: Settings) -> None:
        self.engine: AsyncEngine = create_async_engine(
            to_sqlalchemy_url(database_url),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            # No pre-ping round trip per checkout: the write path retries a batch once on a
            # new connection when one turns out to be dead, before anything was committed.
            pool_pre_ping=False,
            hide_parameters=True,  # logged errors name the statement, never customer data
            connect_args={
                "application_name": "balances",
                "options": f"-c lock_timeout={settings.lock_timeout_ms}"
                f" -c statement_timeout={settings.statement_timeout_ms}",
            },
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    def report_pool_usage(self) -> None:
        pool = self.engine.pool
        POOL_IN_USE.set(pool.checkedout())  # type: ignore[attr-defined]
        POOL_SIZE.set(pool.size())  # type: ignore[attr-defined]

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        async with session.begin():
            yield session
        # Committed: only now do the changes count.
        for kind in session.info.get(COMMITTED_KINDS_KEY, ()):
            MUTATIONS.labels(kind).inc()


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for reads, in autocommit: each statement sees committed data, and no
    BEGIN or ROLLBACK round trip wraps it (the profile showed them doubling a read's cost)."""
    database: Database = request.app.state.database
    async with database.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """``reading`` as a dependency."""
    async with reading(request) as conn:
        yield conn


ConnectionDep = Annotated[AsyncConnection, Depends(get_connection)]


# scope="function": the commit runs when the endpoint returns, before the response goes out.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
