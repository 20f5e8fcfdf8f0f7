"""Probes, request ids, and errors outside the API routes."""

import httpx

from tests.helpers import Api, problem


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


async def test_healthz_is_json_and_needs_no_key(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_readyz_says_ok(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_generated_request_ids_differ(app_client: httpx.AsyncClient) -> None:
    first = (await app_client.get("/healthz")).headers["x-request-id"]
    second = (await app_client.get("/healthz")).headers["x-request-id"]
    assert first and second and first != second


async def test_request_id_is_echoed_on_an_api_call(api: Api) -> None:
    response = await api.post("balances.list", {}, **{"x-request-id": "list-1"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "list-1"


async def test_request_id_is_echoed_on_an_error(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("/v1/balances.nope", json={}, headers={"x-request-id": "e-1"})
    problem(response, 404, "not_found")
    assert response.headers["x-request-id"] == "e-1"


async def test_request_id_is_set_on_a_refused_oversized_body(api: Api) -> None:
    raw = '{"pad": "' + "x" * 70_000 + '"}'
    response = await api.post("balances.create", raw, **{"x-request-id": "big-1"})
    problem(response, 413, "payload_too_large")
    assert response.headers["x-request-id"] == "big-1"


async def test_unknown_get_path_is_problem_json(app_client: httpx.AsyncClient) -> None:
    body = problem(await app_client.get("/nothing/here"), 404, "not_found")
    assert body["title"] and body["type"]


async def test_unknown_v1_operation_is_not_found_even_with_a_key(api: Api) -> None:
    problem(await api.post("balances.transfer", {}), 404, "not_found")


async def test_get_on_a_post_route_is_405_naming_post(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/v1/balances.create")
    body = problem(response, 405, "method_not_allowed")
    assert body["title"] and body["type"]
    assert "POST" in response.headers["allow"]


async def test_post_on_healthz_is_405_problem_json(app_client: httpx.AsyncClient) -> None:
    problem(await app_client.post("/healthz"), 405, "method_not_allowed")
