"""Probes, request ids, and errors outside the API routes."""

import httpx

from tests.helpers import problem


async def test_healthz(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_reports_the_schema_at_head(app_client: httpx.AsyncClient) -> None:
    from app.core.migrations import head_revision

    response = await app_client.get("/readyz")
    assert response.status_code == 200 and response.json()["schema"] == head_revision()


async def test_request_id_is_generated_or_echoed(app_client: httpx.AsyncClient) -> None:
    generated = (await app_client.get("/healthz")).headers["x-request-id"]
    assert len(generated) == 32
    echoed = await app_client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


async def test_unprintable_request_id_is_replaced(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/healthz", headers={"x-request-id": "a" * 500})
    assert response.headers["x-request-id"] != "a" * 500


async def test_unknown_path_is_problem_json(app_client: httpx.AsyncClient) -> None:
    problem(await app_client.post("/v1/balances.nope", json={}), 404, "not_found")


async def test_wrong_method_is_problem_json(app_client: httpx.AsyncClient) -> None:
    problem(await app_client.get("/v1/balances.update"), 405, "method_not_allowed")


async def test_readyz_is_503_until_the_schema_is_at_head(server_url: str) -> None:
    from alembic import command

    from app.core.config import Settings
    from app.core.migrations import alembic_config, head_revision, upgrade_to_head
    from app.main import create_app
    from tests.helpers import throwaway_database

    with throwaway_database(server_url, "balances_ready") as url:
        command.upgrade(alembic_config(url), "0001")
        app = create_app(Settings(database_url=url))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            behind = await client.get("/readyz")
            upgrade_to_head(url)
            ready = await client.get("/readyz")
        await app.state.database.dispose()
    assert behind.status_code == 503
    assert behind.json() == {
        "status": "unavailable",
        "schema": "0001",
        "expected_schema": head_revision(),
    }
    assert ready.status_code == 200
