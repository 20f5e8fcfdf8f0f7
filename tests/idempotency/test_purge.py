"""The server purges idempotency records past their retention itself, one process at a time."""

from datetime import timedelta
from typing import Any

import psycopg
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.idempotency.purge import _PURGE_LOCK, purge_once
from tests.conftest import START
from tests.helpers import Api

ADD = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}


async def _three_records(api: Api) -> None:
    await api.create()
    for n in range(3):
        await api.post("balances.update", ADD, idempotency_key=f"old-{n}")


async def test_records_older_than_the_retention_are_purged_and_the_key_is_free_again(
    api: Api, app: FastAPI, clock: FrozenClock
) -> None:
    await _three_records(api)
    sessions = app.state.database.sessionmaker
    clock.set(START + timedelta(hours=23))
    assert await purge_once(sessions, clock, retention_hours=24) == 0
    clock.set(START + timedelta(hours=25))
    assert await purge_once(sessions, clock, retention_hours=24) == 3
    again = await api.post("balances.update", ADD, idempotency_key="old-0")
    assert "idempotent-replayed" not in again.headers


async def test_a_worker_skips_the_purge_while_another_one_runs_it(
    api: Api, app: FastAPI, clock: FrozenClock, database_url: str
) -> None:
    await _three_records(api)
    clock.set(START + timedelta(hours=25))
    with psycopg.connect(database_url) as other_worker:
        other_worker.execute("SELECT pg_advisory_xact_lock(%s)", (_PURGE_LOCK,))
        skipped: Any = await purge_once(app.state.database.sessionmaker, clock, 24)
        other_worker.rollback()
    assert skipped is None
    assert await purge_once(app.state.database.sessionmaker, clock, 24) == 3
