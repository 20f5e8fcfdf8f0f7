"""Hostile or broken requests: refused cleanly, never a 500, nothing written."""

import asyncio

import httpx
import psycopg
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.main import create_app
from tests.helpers import Api, problem

ADD = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}


async def test_non_json_content_type_is_refused(api: Api) -> None:
    await api.create(included_grant=1)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        response = await api.post(
            "balances.update", '{"customer_id": "cus_1"}', content_type=content_type
        )
        problem(response, 415, "unsupported_media_type")
    assert api.count("balance_ledger") == 1


async def test_json_with_charset_is_accepted(api: Api) -> None:
    await api.create(included_grant=1)
    response = await api.post(
        "balances.update", ADD, content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200


async def test_a_stuck_lock_becomes_503_with_retry_after(api: Api, database_url: str) -> None:
    balance = await api.create(included_grant=1)
    with psycopg.connect(database_url) as locker:
        locker.execute("SET lock_timeout = 0")
        locker.execute("SELECT 1 FROM balances WHERE id = %s FOR UPDATE", (balance["id"],))
        # The service's own lock_timeout is 5 s by default; this request waits it out.
        response = await asyncio.wait_for(api.post("balances.update", ADD), timeout=30)
        locker.rollback()
    problem(response, 503, "lock_timeout")
    assert response.headers["retry-after"] == "1"
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_error_bodies_carry_no_internals(api: Api) -> None:
    response = await api.post("balances.update", '{"customer_id": ')
    text = response.text.lower()
    assert "traceback" not in text and "select" not in text and "sqlalchemy" not in text


async def test_an_unexpected_failure_is_a_bare_500_problem(api: Api, app: FastAPI) -> None:
    class Exploding:
        async def submit(self, command: object) -> None:
            raise RuntimeError("secret internal detail")

    batcher, app.state.batcher = app.state.batcher, Exploding()
    # As under uvicorn: the 500 is sent, and the exception goes on to the server's log.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"authorization": f"Bearer {api.secret}"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/v1/balances.update", json=ADD, headers=headers)
    finally:
        app.state.batcher = batcher
    body = problem(response, 500, "internal_error")
    assert "secret internal detail" not in response.text and "Traceback" not in response.text
    assert body["detail"] == "The server failed to handle this request."


async def test_an_unreachable_database_is_503_not_500(clock: FrozenClock) -> None:
    unreachable = "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir"
    app = create_app(Settings(database_url=unreachable, db_pool_timeout_seconds=2), clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://balances.test") as client:
        response = await client.post(
            "/v1/balances.list", json={}, headers={"authorization": "Bearer sk_any"}
        )
        ready = await client.get("/readyz")
    await app.state.database.dispose()
    problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == "1"
    assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
