"""The FastAPI application: wiring only (routers, middleware, error handlers, lifecycle)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.auth.service import Authenticator
from app.balances.endpoints import router as balances_router
from app.balances.table import BalancesTable
from app.batcher.batcher import Batcher
from app.batcher.transaction import Timeouts
from app.consumption.endpoints import router as consumption_router
from app.core.clock import Clock, SystemClock
from app.core.config import Settings, get_settings
from app.core.database import Database
from app.core.docs import OPENAPI_TAGS, install_contract, install_docs
from app.core.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.core.migrations import head_revision
from app.core.observability import ObservabilityMiddleware
from app.core.problems import install_problem_handlers
from app.core.version import service_version
from app.health.endpoints import router as health_router
from app.history.endpoints import router as history_router
from app.idempotency.purge import purge_forever
from app.ledger.table import LedgerTable
from app.reservations.endpoints import router as reservations_router
from app.reservations.reads import as_released
from app.reservations.table import ReservationsTable
from app.sweeper import Sweeper

DESCRIPTION = """
Customer feature balances, exact and concurrent-safe. Every change runs in one row-locked
Postgres transaction and appends an immutable ledger entry. Wire-compatible with Autumn's
balances API: quantities are JSON numbers computed exactly, times are Unix epoch milliseconds,
errors are `application/problem+json` with a stable `code`.
"""


def create_app(
    settings: Settings | None = None,
    clock: Clock | None = None,
    database_url: str | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    url = database_url or settings.database_url
    if url is None:
        raise RuntimeError("DATABASE_URL is not set (`balances serve` starts an embedded server).")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper_task = None
        if settings.sweep_interval_seconds > 0:
            database: Database = app.state.database
            sweeper = Sweeper.from_settings(database.sessionmaker, app.state.clock, settings)
            sweeper_task = asyncio.create_task(sweeper.run_forever(settings.sweep_interval_seconds))
        purge_task = None
        if settings.idempotency_purge_interval_seconds > 0:
            purge_task = asyncio.create_task(
                purge_forever(
                    app.state.database.sessionmaker,
                    app.state.clock,
                    settings.idempotency_retention_hours,
                    settings.idempotency_purge_interval_seconds,
                )
            )
        yield
        for task in (sweeper_task, purge_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await app.state.batcher.stop()
        await app.state.database.dispose()

    app = FastAPI(
        title="Balances",
        version=service_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by app.core.docs from local assets
        redoc_url=None,
        openapi_tags=OPENAPI_TAGS,
    )
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.database = Database(url, settings)
    # Lock order, service-wide: balances, then reservations; the ledger locks nothing.
    app.state.batcher = Batcher(
        app.state.database.engine,
        [BalancesTable(), ReservationsTable(), LedgerTable()],
        partitions=settings.write_partitions,
        max_batch=settings.write_batch_size,
        waiting_slots=settings.write_waiting_slots,
        wait_timeout_seconds=settings.lock_timeout_ms / 1000,
        scope=settings.write_batch_scope,
        timeouts=Timeouts.unless_connected_with(settings),
    )
    app.state.schema_head = head_revision()
    app.state.authenticator = Authenticator(settings.auth_cache_seconds)
    # Reads of balances show what the packages above them hold (see app.balances.reads).
    app.state.balance_read_views = (as_released,)

    install_problem_handlers(app)
    install_contract(app)  # the served OpenAPI document: FastAPI's, finished as the contract
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        larger={"/v1/balances.batch_track": settings.max_batch_body_bytes},
    )
    app.add_middleware(RequestIdMiddleware)  # even a 413 carries X-Request-ID
    app.add_middleware(ObservabilityMiddleware)  # outermost: counts and logs every answer
    app.include_router(balances_router)
    app.include_router(consumption_router)
    app.include_router(reservations_router)
    app.include_router(history_router)
    app.include_router(health_router)
    install_docs(app)
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document every deployment serves (it depends on no setting or database)."""
    return create_app(Settings(database_url="postgresql://unused@/unused")).openapi()
