"""A write transaction carries its own timeouts, so they hold where the connection has none.

Behind PgBouncer in transaction mode the connection cannot carry ``lock_timeout`` and
``statement_timeout`` (``BALANCES_DB_STARTUP_TIMEOUTS=false``): each write transaction sets them
itself (``SET LOCAL``). Here a create waits, on the batch path, for another transaction's
uncommitted insert of the same balance key, which only a timeout can end while that transaction
stays open.
"""

import asyncio
from datetime import timedelta

import psycopg
import pytest

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from app.sweeper import Sweeper
from tests.batcher.test_batcher import GUARD, another_app
from tests.conftest import START
from tests.helpers import problem


def insert_uncommitted(conn: psycopg.Connection, balance_id: str) -> None:
    """An insert of cus_1's seats balance, left uncommitted (as by a frozen writer)."""
    conn.execute(
        "INSERT INTO balances (customer_id, id, feature_id, interval, created_at, updated_at) "
        "VALUES ('cus_1', %s, 'seats', 'one_off', now(), now())",
        (balance_id,),
    )


@pytest.mark.parametrize(
    ("timeouts", "code"),
    [
        ({"lock_timeout_ms": 300, "statement_timeout_ms": 60_000}, "lock_timeout"),
        ({"lock_timeout_ms": 60_000, "statement_timeout_ms": 300}, "statement_timeout"),
    ],
)
async def test_a_write_stuck_on_an_uncommitted_insert_times_out_without_connection_timeouts(
    db: psycopg.Connection,
    database_url: str,
    clock: FrozenClock,
    keys: dict[str, str],
    timeouts: dict[str, int],
    code: str,
) -> None:
    settings = {"db_startup_timeouts": False, "auth_cache_seconds": 3600, **timeouts}
    async with another_app(database_url, clock, db, keys["write"], **settings) as (_, api):
        with psycopg.connect(database_url) as stuck:
            insert_uncommitted(stuck, "bal_stuck")
            response = await asyncio.wait_for(
                api.post("balances.create", {"customer_id": "cus_1", "feature_id": "seats"}),
                GUARD,
            )
            # Answered while the insert is still uncommitted: the transaction's own timeout.
            problem(response, 503, code)
            stuck.rollback()
        assert api.count("balances") == 0
        assert api.count("balance_ledger") == 0
        # Nothing was applied, so a plain retry is safe and now succeeds.
        retry = await api.post("balances.create", {"customer_id": "cus_1", "feature_id": "seats"})
        assert retry.status_code == 200, retry.text


async def test_the_sweeper_gives_up_on_a_held_row_without_connection_timeouts(
    db: psycopg.Connection, database_url: str, clock: FrozenClock, keys: dict[str, str]
) -> None:
    """Its lock expiry waits for rows (``wait=True``): bounded by its own timeouts too."""
    settings = {"db_startup_timeouts": False, "lock_timeout_ms": 300, "auth_cache_seconds": 3600}
    async with another_app(database_url, clock, db, keys["write"], **settings) as (app, api):
        await api.create(included_grant=10)
        lock = {"lock_id": "job_held", "enabled": True, "expires_at": to_epoch_ms(START) + 60_000}
        body = {"customer_id": "cus_1", "feature_id": "api_calls", "required_balance": 4}
        await api.ok("balances.check", {**body, "lock": lock})
        clock.set(START + timedelta(minutes=5))  # the lock ran out
        sweeper = Sweeper.from_settings(app.state.database.sessionmaker, clock, app.state.settings)
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT 1 FROM balances WHERE customer_id = 'cus_1' FOR UPDATE")
            released = await asyncio.wait_for(sweeper.expire_locks(), GUARD)
            holder.rollback()
        assert released == 0  # gave up on the held row, and will try again next pass
        assert await sweeper.expire_locks() == 1
