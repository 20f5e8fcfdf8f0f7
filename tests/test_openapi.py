"""The OpenAPI document generated clients and Swagger UI rely on."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.docs import document_text
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


REPOSITORY = Path(__file__).resolve().parents[1]
# What JSON Schema 2020-12 and OpenAPI 3.1 define for a schema object: nothing else may leak
# (pydantic's "ge" did once); generators ignore, or choke on, what they do not know.
SCHEMA_KEYWORDS = {
    "$ref", "type", "enum", "const", "title", "description", "default", "examples", "format",
    "properties", "required", "additionalProperties", "items", "anyOf", "allOf", "oneOf", "not",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems",
}  # fmt: skip


def schemas_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object under ``node`` (a schema)."""
    if not isinstance(node, dict):
        return
    yield node
    for key in ("items", "additionalProperties", "not"):
        yield from schemas_in(node.get(key))
    for key in ("anyOf", "allOf", "oneOf"):
        for branch in node.get(key, []):
            yield from schemas_in(branch)
    for prop in node.get("properties", {}).values():
        yield from schemas_in(prop)


async def test_committed_openapi_json_is_the_served_document(spec: dict[str, Any]) -> None:
    committed = (REPOSITORY / "openapi.json").read_text(encoding="utf-8")
    assert committed == document_text(spec), (
        "openapi.json is not the document the service serves: regenerate it with "
        "`balances openapi > openapi.json` and commit it"
    )


async def test_every_operation_id_is_chosen_not_generated(spec: dict[str, Any]) -> None:
    assert set(operations(spec)) == {
        "createBalance", "updateBalance", "listBalances", "deleteBalance", "check", "track",
        "batchTrack", "finalizeLock", "balanceHistory", "healthz", "readyz", "metrics",
    }  # fmt: skip


async def test_every_error_is_problem_json_with_the_one_problem_schema(
    spec: dict[str, Any],
) -> None:
    for operation_id, operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if int(status) < 400 or operation_id in {"healthz", "readyz"}:
                continue
            assert response["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (operation_id, status)
            assert "Codes: `" in response["description"], (operation_id, status)


async def test_problem_code_is_an_enum_of_every_code_sent(spec: dict[str, Any], api: Api) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["properties"]["code"]["$ref"] == "#/components/schemas/ProblemCode"
    codes = spec["components"]["schemas"]["ProblemCode"]["enum"]
    sent = [
        await api.post("balances.update", {"customer_id": "c", "feature_id": "f", "usage": 1}),
        await api.post("balances.update", {"customer_id": "c"}),
        await api.post("balances.create", {"customer_id": "c", "feature_id": "f"}),
        await api.post("balances.create", {"customer_id": "c", "feature_id": "f"}),
        await api.post("balances.list", {}, authorization="Bearer sk_unknown"),
        await api.post("balances.list", "x", content_type="text/plain"),
        await api.post("balances.list", {"start_cursor": "not-a-cursor"}),
    ]
    problems = [response for response in sent if response.status_code >= 400]
    assert {response.status_code for response in problems} == {401, 404, 409, 415, 422}
    assert {response.json()["code"] for response in problems} <= set(codes)


async def test_retry_after_request_id_and_replay_headers_are_documented(
    spec: dict[str, Any],
) -> None:
    for operation_id, operation in operations(spec).items():
        for status, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"]["required"], (operation_id, status)
        if operation_id not in {"healthz", "readyz", "metrics"}:
            assert operation["responses"]["503"]["headers"]["Retry-After"]["required"]
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    for operation_id in ("createBalance", "track", "finalizeLock"):
        headers = operations(spec)[operation_id]["responses"]["200"]["headers"]
        assert "Idempotent-Replayed" in headers, operation_id


async def test_amounts_are_exact_decimals_not_floats(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for schema, fields in {**QUANTITIES, "CheckParams": ["required_balance"]}.items():
        for field in fields:
            assert number_schema(schemas[schema]["properties"][field])["format"] == "decimal"
    numbers = [s for schema in schemas.values() for s in schemas_in(schema)]
    assert all(s.get("format") == "decimal" for s in numbers if s.get("type") == "number")


async def test_schemas_use_only_standard_keywords(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        for node in schemas_in(schema):
            assert set(node) <= SCHEMA_KEYWORDS, (name, set(node) - SCHEMA_KEYWORDS)


async def test_non_negative_amounts_are_documented_as_such(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    required = schemas["CheckParams"]["properties"]["required_balance"]
    override = number_schema(schemas["FinalizeLockParams"]["properties"]["override_value"])
    assert required["minimum"] == 0 and override["minimum"] == 0


@pytest.mark.parametrize(
    "identifier",
    [
        "cus_1",
        "é☃ x",
        "😀",
        "a\u00a0b",
        "a\u200bb",
        "a\tb",
        "a\u2028b",
        "bad\n",
        "\ufeffx",
        "x\x85",
    ],
    ids=["ascii", "unicode", "emoji", "nbsp", "zwsp", "tab", "line-sep", "newline", "bom", "nel"],
)
async def test_the_identifier_pattern_is_the_rule_the_server_applies(
    spec: dict[str, Any], api: Api, identifier: str
) -> None:
    pattern = spec["components"]["schemas"]["CreateBalanceParams"]["properties"]["customer_id"]
    documented = re.fullmatch(pattern["pattern"], identifier) is not None  # "$" as in ECMA-262
    response = await api.post("balances.create", {"customer_id": identifier, "feature_id": "f"})
    assert (response.status_code == 200) == documented, response.text


@pytest.mark.parametrize(
    "key", ["k-1", "a b", " a", "a ", "a\x01b", "x" * 255, "x" * 256, "\x7f"],
    ids=["plain", "inner-space", "leading-space", "trailing-space", "control", "255", "256",
         "del"],
)  # fmt: skip
async def test_the_idempotency_key_pattern_is_the_rule_the_server_applies(
    spec: dict[str, Any], api: Api, key: str
) -> None:
    [parameter] = operations(spec)["createBalance"]["parameters"]
    documented = re.fullmatch(parameter["schema"]["pattern"], key) is not None
    body = {"customer_id": "cus_1", "feature_id": "f"}
    response = await api.post("balances.create", body, idempotency_key=key)
    assert (response.status_code == 200) == documented, response.text
