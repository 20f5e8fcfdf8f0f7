"""Test fixtures: a real PostgreSQL, schema built by alembic, the app driven over ASGI.

With DATABASE_URL set, tests create a throwaway database on that server; otherwise they start an
embedded PostgreSQL (the same one ``balances serve`` uses) in a temporary directory. Every test
commits for real, exactly as the service does, and the tables are emptied after each test.
"""

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.embedded_postgres import EmbeddedPostgres
from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.helpers import Api

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
    name = f"balances_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture(autouse=True)
def _reset_clock(clock: FrozenClock) -> None:
    clock.set(START)


@pytest.fixture(scope="session")
async def app_client(database_url: str, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url), clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://balances.test") as client:
        yield client
    await app.state.database.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A separate autocommit connection for inspecting committed state (and holding locks)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
        conn.execute("TRUNCATE balances, balance_ledger, balance_locks RESTART IDENTITY")


@pytest.fixture
def api(app_client: httpx.AsyncClient, db: psycopg.Connection) -> Api:
    return Api(app_client, db)
