"""The OpenAPI document generated clients and Swagger UI rely on."""

from typing import Any

import httpx
import pytest


@pytest.fixture
async def spec(app_client: httpx.AsyncClient) -> dict[str, Any]:
    response = await app_client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}


async def test_operation_ids_match_autumn(spec: dict[str, Any]) -> None:
    expected = {"createBalance", "updateBalance", "listBalances", "deleteBalance", "check",
                "track", "finalizeLock"}  # fmt: skip
    assert expected <= set(operations(spec))


async def test_body_schemas_are_named_like_autumn(spec: dict[str, Any]) -> None:
    names = set(spec["components"]["schemas"])
    assert {"CreateBalanceParams", "UpdateBalanceParams", "ListBalancesParams",
            "DeleteBalanceParams"} <= names  # fmt: skip
    update = operations(spec)["updateBalance"]["requestBody"]["content"]["application/json"]
    assert update["schema"]["$ref"].endswith("/UpdateBalanceParams")


async def test_quantities_are_numbers(spec: dict[str, Any]) -> None:
    update = spec["components"]["schemas"]["UpdateBalanceParams"]["properties"]
    for field in ("remaining", "add_to_balance", "usage", "included_grant"):
        assert {"type": "number"} in update[field]["anyOf"], update[field]
    balance = spec["components"]["schemas"]["Balance"]["properties"]
    assert balance["remaining"]["type"] == "number"


async def test_every_balance_operation_has_examples_and_documented_errors(
    spec: dict[str, Any],
) -> None:
    for operation_id, operation in operations(spec).items():
        if operation_id in {"healthz", "readyz", "metrics"}:
            continue
        content = operation["requestBody"]["content"]["application/json"]
        assert content.get("examples"), operation_id
        assert "422" in operation["responses"], operation_id
        assert operation.get("description"), operation_id


async def test_swagger_ui_is_served(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/docs")
    assert response.status_code == 200 and "swagger-ui" in response.text
