"""The engine and its pool, and connections for reads.

Writes do not come through here: the write path (``app.batcher``) checks connections out of the
same pool and owns their transactions. Reads take a connection in autocommit, one statement
each. Sessions (``sessionmaker``) serve the few ORM users: API keys, the sweeper's purge.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import POSTGRES_DRIVERS, Settings
from app.core.metrics import POOL_IN_USE, POOL_SIZE

# What a database that is down, restarting or unreachable raises.
DATABASE_FAULTS = (DBAPIError, PoolTimeout, OSError)


def log_background_failure(logger: logging.Logger, message: str, error: Exception) -> None:
    """A background task's failed pass: a database fault (down, restarting) is expected and
    logged as one warning line; anything else is a bug and keeps its traceback."""
    if isinstance(error, DATABASE_FAULTS):
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        logger.warning("%s: %s: %s", message, type(error).__name__, first)
    else:
        logger.error(message, exc_info=error)


def to_sqlalchemy_url(database_url: str) -> URL:
    """Accept the usual ``postgres://`` / ``postgresql://`` forms and pin the psycopg 3 driver."""
    url = make_url(database_url)
    if url.drivername in POSTGRES_DRIVERS:
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got driver {url.drivername!r}")


def connect_args(settings: Settings) -> dict[str, Any]:
    """What every connection is opened with (psycopg's ``connect``).

    Timeouts: as startup options, they bound every statement of the connection: reads, the
    sweeper, API keys. PgBouncer refuses them there (``db_startup_timeouts=false``): put them on
    the role instead (``ALTER ROLE … SET``, docs/scaling.md). The write path does not depend on
    either: it sets its own per transaction (``app.batcher.transaction``).

    Prepared statements: psycopg prepares a statement once it ran 5 times on a connection.
    PgBouncer < 1.21 in transaction mode cannot keep them (the next transaction may get another
    server connection); ``db_prepared_statements=false`` never prepares (``prepare_threshold``
    None), at the price of planning every statement each time.
    """
    args: dict[str, Any] = {"application_name": "balances"}
    if settings.db_startup_timeouts:
        args["options"] = (
            f"-c lock_timeout={settings.lock_timeout_ms}"
            f" -c statement_timeout={settings.statement_timeout_ms}"
        )
    if not settings.db_prepared_statements:
        args["prepare_threshold"] = None
    return args


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
            connect_args=connect_args(settings),
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    def report_pool_usage(self) -> None:
        pool = self.engine.pool
        POOL_IN_USE.set(pool.checkedout())  # type: ignore[attr-defined]
        POOL_SIZE.set(pool.size())  # type: ignore[attr-defined]

    async def dispose(self) -> None:
        await self.engine.dispose()


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
