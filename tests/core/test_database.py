"""Connections behind PgBouncer in transaction mode: no prepared statements, no startup options.

PgBouncer < 1.21 hands each transaction whichever server connection is free, where a statement
psycopg prepared on another one does not exist; and it refuses timeouts as startup options.
With ``BALANCES_DB_PREPARED_STATEMENTS=false`` and ``BALANCES_DB_STARTUP_TIMEOUTS=false`` the
service must still write and read, and leave nothing prepared on the server.

Also: how a background task (purge, sweeper) logs a failed pass.
"""

import logging
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.core.clock import FrozenClock
from app.core.database import log_background_failure
from tests.batcher.test_batcher import another_app
from tests.helpers import Api

# One connection for everything, so that what it holds is what the service left on it.
ONE_CONNECTION = {"db_pool_size": 1, "db_max_overflow": 0, "write_partitions": 1}
BEHIND_PGBOUNCER = {"db_prepared_statements": False, "db_startup_timeouts": False}


async def prepared_on_the_pool(app: FastAPI) -> int:
    async with app.state.database.engine.connect() as conn:
        return int(
            (await conn.execute(text("SELECT count(*) FROM pg_prepared_statements"))).one()[0]
        )


async def write_and_read(api: Api, times: int) -> None:
    """Each more often than psycopg's threshold for preparing a statement (5)."""
    for n in range(1, times + 1):
        balance = await api.update(add_to_balance=1)
        assert balance["remaining"] == n
        listed = await api.ok("balances.list", {"customer_id": "cus_1"})
        assert [b["remaining"] for b in listed["list"]] == [n]


@pytest.mark.parametrize(("settings", "prepared"), [(BEHIND_PGBOUNCER, False), ({}, True)])
async def test_with_prepared_statements_off_the_service_writes_and_reads_and_prepares_nothing(
    db: psycopg.Connection,
    database_url: str,
    clock: FrozenClock,
    keys: dict[str, str],
    settings: dict[str, Any],
    prepared: bool,
) -> None:
    options = {**ONE_CONNECTION, **settings, "auth_cache_seconds": 3600}
    async with another_app(database_url, clock, db, keys["write"], **options) as (app, api):
        await api.create(included_grant=0)
        await write_and_read(api, times=8)
        # The default prepares what runs often (so the check is not vacuous); off, nothing.
        assert (await prepared_on_the_pool(app) > 0) is prepared


async def connection_timeouts(app: FastAPI) -> tuple[str, str]:
    async with app.state.database.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
            )
        ).one()
        return row[0], row[1]


@pytest.mark.parametrize(
    ("settings", "expected"), [(BEHIND_PGBOUNCER, ("0", "0")), ({}, ("300ms", "2s"))]
)
async def test_with_startup_timeouts_off_connections_carry_none_of_their_own(
    db: psycopg.Connection,
    database_url: str,
    clock: FrozenClock,
    keys: dict[str, str],
    settings: dict[str, Any],
    expected: tuple[str, str],
) -> None:
    """Off, a pooled connection starts with the server's defaults (PgBouncer would refuse the
    options), so the write path's own per-transaction timeouts are what bound its waits."""
    options = {**ONE_CONNECTION, **settings, "lock_timeout_ms": 300, "statement_timeout_ms": 2000}
    async with another_app(database_url, clock, db, keys["write"], **options) as (app, _):
        assert await connection_timeouts(app) == expected


def test_a_background_pass_that_meets_a_database_outage_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OperationalError("SELECT 1", {}, Exception("connection refused\nis it running?"))
    with caplog.at_level(logging.WARNING, logger="tests"):
        log_background_failure(logging.getLogger("tests"), "purge failed", outage)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert (
        record.getMessage()
        == "purge failed: OperationalError: (builtins.Exception) connection refused"
    )


def test_a_background_pass_that_meets_a_bug_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tests"):
        log_background_failure(logging.getLogger("tests"), "purge failed", KeyError("rows"))
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
