"""Test fixtures: a real PostgreSQL, schema built by alembic, the app driven over ASGI.

With DATABASE_URL set, tests create a throwaway database on that server; otherwise they start an
embedded PostgreSQL (the same one ``balances serve`` uses) in a temporary directory. Every test
commits for real, exactly as the service does, and the tables are emptied after each test.
"""

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.auth.commands import create_key, revoke_key
from app.auth.models import Scope
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.embedded_postgres import EmbeddedPostgres
from app.core.migrations import upgrade_to_head
from app.main import create_app
from app.sweeper import Sweeper
from tests.helpers import Api, throwaway_database

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a maintenance database on the Postgres server the tests use."""
    if os.environ.get("DATABASE_URL"):
        yield _libpq_url(os.environ["DATABASE_URL"])
        return
    with tempfile.TemporaryDirectory(prefix="balances-test-") as data_dir:
        server = EmbeddedPostgres(Path(data_dir)).start()
        try:
            yield server.url("postgres")
        finally:
            server.stop()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this test run, migrated to head by alembic."""
    with throwaway_database(server_url, "balances_test") as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture(scope="session")
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture(autouse=True)
def _reset_clock(clock: FrozenClock) -> None:
    clock.set(START)


@pytest.fixture(scope="session")
async def app(database_url: str, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    # No auth cache: a revoked key must be refused by the very next request in tests.
    application = create_app(Settings(database_url=database_url, auth_cache_seconds=0), clock=clock)
    yield application
    await application.state.database.dispose()


@pytest.fixture(scope="session")
async def keys(app: FastAPI) -> dict[str, str]:
    """Secrets of one API key per scope, plus a revoked one."""
    sessions = app.state.database.sessionmaker
    secrets = {}
    for name, scopes in (("read", [Scope.READ]), ("write", [Scope.WRITE]),
                         ("admin", [Scope.ADMIN]), ("revoked", [Scope.ADMIN])):  # fmt: skip
        key_id, secrets[name] = await create_key(sessions, f"test-{name}", scopes)
        if name == "revoked":
            await revoke_key(sessions, key_id)
    return secrets


@pytest.fixture(scope="session")
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://balances.test") as client:
        yield client


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A separate autocommit connection for inspecting committed state (and holding locks)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
        conn.execute(
            "TRUNCATE balances, balance_ledger, balance_locks, lock_ids, idempotency_keys"
            " RESTART IDENTITY"
        )


@pytest.fixture
def sweeper(app: FastAPI, clock: FrozenClock) -> Sweeper:
    """A sweeper on the app's pool, with small batches so batching is exercised."""
    return Sweeper(app.state.database.sessionmaker, clock, batch_size=2)


@pytest.fixture
def api(app_client: httpx.AsyncClient, db: psycopg.Connection, keys: dict[str, str]) -> Api:
    return Api(app_client, db, secret=keys["write"])
