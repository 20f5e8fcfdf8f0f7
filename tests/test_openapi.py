"""The OpenAPI document generated clients and Swagger UI rely on."""

from typing import Any

import httpx
import pytest

from tests.helpers import Api


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
        assert any(branch.get("type") == "number" for branch in update[field]["anyOf"])
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


BALANCE_OPERATIONS = {
    "createBalance": "CreateBalanceParams",
    "updateBalance": "UpdateBalanceParams",
    "listBalances": "ListBalancesParams",
    "deleteBalance": "DeleteBalanceParams",
}
QUANTITIES = {
    "CreateBalanceParams": ["included_grant"],
    "UpdateBalanceParams": ["remaining", "add_to_balance", "usage", "included_grant"],
    "Balance": ["included_grant", "prepaid_grant", "adjustment", "granted", "usage", "remaining"],
}


def number_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The `type: number` branch of a (possibly nullable) property schema."""
    if schema.get("type") == "number":
        return schema
    branches: list[dict[str, Any]] = schema.get("anyOf", [])
    [branch] = [s for s in branches if s.get("type") == "number"]
    return branch


async def test_balance_operations_are_posts_under_v1(spec: dict[str, Any]) -> None:
    paths = {
        op["operationId"]: (path, method)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert paths["createBalance"] == ("/v1/balances.create", "post")
    assert paths["updateBalance"] == ("/v1/balances.update", "post")
    assert paths["listBalances"] == ("/v1/balances.list", "post")
    assert paths["deleteBalance"] == ("/v1/balances.delete", "post")


async def test_each_balance_operation_takes_its_named_body(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    for operation_id, schema in BALANCE_OPERATIONS.items():
        content = ops[operation_id]["requestBody"]["content"]["application/json"]
        assert content["schema"]["$ref"] == f"#/components/schemas/{schema}", operation_id


async def test_every_quantity_field_is_a_json_number(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for schema, fields in QUANTITIES.items():
        for field in fields:
            assert number_schema(schemas[schema]["properties"][field])["type"] == "number"


async def test_quantity_defaults_are_numbers_not_strings(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for schema, fields in QUANTITIES.items():
        for field in fields:
            prop = schemas[schema]["properties"][field]
            if "default" in prop and prop["default"] is not None:
                default = prop["default"]
                assert isinstance(default, int | float), (schema, field, default)
                assert not isinstance(default, bool), (schema, field, default)


async def test_each_balance_operation_has_a_request_example(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    for operation_id in BALANCE_OPERATIONS:
        examples = ops[operation_id]["requestBody"]["content"]["application/json"]["examples"]
        assert examples, operation_id
        assert all("value" in example for example in examples.values()), operation_id


async def test_every_balance_request_example_is_accepted(spec: dict[str, Any], api: Api) -> None:
    ops = operations(spec)
    paths = {"createBalance": "balances.create", "updateBalance": "balances.update",
             "listBalances": "balances.list", "deleteBalance": "balances.delete"}  # fmt: skip
    for operation_id, path in paths.items():  # creates first, so updates find their balances
        examples = ops[operation_id]["requestBody"]["content"]["application/json"]["examples"]
        for name, example in examples.items():
            response = await api.post(path, example["value"])
            assert response.status_code == 200, (operation_id, name, response.text)


async def test_bearer_auth_is_declared(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"].values()
    assert any(s["type"] == "http" and s["scheme"].lower() == "bearer" for s in schemes)
    assert operations(spec)["updateBalance"].get("security")


async def test_docs_returns_an_html_page(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower() and "/openapi.json" in response.text


async def test_openapi_json_is_served_as_json(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/openapi.json")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["openapi"].startswith("3.")
