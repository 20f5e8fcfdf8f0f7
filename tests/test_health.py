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
