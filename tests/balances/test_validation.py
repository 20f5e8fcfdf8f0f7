"""Bad input: a clean 4xx problem+json with a stable code, and nothing written."""

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import Api, problem

BASE = '{"customer_id": "cus_1", "feature_id": "api_calls", '


@pytest.fixture
async def existing(api: Api) -> dict[str, Any]:
    return await api.create(included_grant=10)


def nothing_written(api: Api) -> None:
    assert api.count("balances") == 1
    assert api.count("balance_ledger") == 1


@pytest.mark.parametrize(
    "raw",
    [
        BASE + '"add_to_balance": NaN}',
        BASE + '"add_to_balance": Infinity}',
        BASE + '"add_to_balance": -Infinity}',
        BASE + '"add_to_balance": }',
        '{"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1',
        "[1, 2, 3]",
        '"just a string"',
        "",
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "missing-value",
        "truncated",
        "array",
        "string",
        "empty",
    ],
)
async def test_malformed_bodies_are_refused(api: Api, existing: dict[str, Any], raw: str) -> None:
    body = problem(await api.post("balances.update", raw), 422, "invalid_request")
    assert body["errors"] and all({"loc", "msg"} <= set(e) for e in body["errors"])
    nothing_written(api)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("add_to_balance", "5"),
        ("add_to_balance", True),
        ("add_to_balance", None),
        ("add_to_balance", Decimal("0.0000000001")),
        ("add_to_balance", Decimal("1e15")),
        ("add_to_balance", Decimal("-1000000000000000")),
        ("remaining", [1]),
        ("usage", {"value": 1}),
        ("interval", "fortnight"),
        ("next_reset_at", Decimal("1.5")),
        ("next_reset_at", -1),
        ("expires_at", "tomorrow"),
        ("customer_id", ""),
        ("customer_id", "x" * 256),
        ("entity_id", "seat\n1"),
        ("entity_id", "seat\x001"),
        ("unknown_field", 1),
    ],
)
async def test_invalid_fields_are_refused(
    api: Api, existing: dict[str, Any], field: str, value: Any
) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    body[field] = value
    error = problem(await api.post("balances.update", body), 422, "invalid_request")
    locations = [e["loc"] for e in error["errors"]]
    assert any(field in loc or loc == ["body"] for loc in locations), locations
    assert field in error["detail"] or "body" in error["detail"]
    nothing_written(api)


@pytest.mark.parametrize("field", ["add_to_balance", "next_reset_at", "expires_at"])
@pytest.mark.parametrize("number", ["1e999999999", "1e-999999999", "9" * 5000])
async def test_absurd_numbers_are_refused_quickly(
    api: Api, existing: dict[str, Any], field: str, number: str
) -> None:
    raw = BASE + f'"{field}": {number}}}'
    response = await asyncio.wait_for(api.post("balances.update", raw), timeout=10)
    problem(response, 422, "invalid_request")
    nothing_written(api)


async def test_invalid_utf8_is_refused(api: Api, existing: dict[str, Any]) -> None:
    raw = BASE.encode() + b'"add_to_balance": 1, "x": "\xff\xfe"}'
    problem(await api.post("balances.update", raw), 422, "invalid_request")


async def test_nine_decimal_places_are_accepted_exactly(api: Api, existing: dict[str, Any]) -> None:
    after = await api.update(add_to_balance=Decimal("0.000000001"))
    assert after["remaining"] == Decimal("10.000000001")


async def test_largest_amount_round_trips_digit_for_digit(api: Api) -> None:
    amount = Decimal("999999999999999.999999999")
    balance = await api.create(included_grant=amount)
    assert balance["included_grant"] == amount


async def test_zero_point_one_plus_zero_point_two_is_zero_point_three(api: Api) -> None:
    await api.create(included_grant=Decimal("0.1"))
    after = await api.update(add_to_balance=Decimal("0.2"))
    assert after["remaining"] == Decimal("0.3")
    assert (
        '"remaining":0.3,'
        in (
            await api.post(
                "balances.update",
                {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 0},
            )
        ).text
    )


async def test_missing_required_field_is_named(api: Api) -> None:
    error = problem(await api.post("balances.update", {"customer_id": "c"}), 422, "invalid_request")
    assert ["feature_id"] in [e["loc"] for e in error["errors"]]


async def test_deeply_nested_json_is_refused(api: Api, existing: dict[str, Any]) -> None:
    depth = 30_000  # under the 64 KiB limit, far past Python's recursion limit
    raw = BASE + '"add_to_balance": 1, "x": ' + "[" * depth + "]" * depth + "}"
    problem(await api.post("balances.update", raw), 422, "invalid_request")
    nothing_written(api)


async def test_moderately_nested_properties_are_refused_with_a_key(
    api: Api, existing: dict[str, Any]
) -> None:
    # Deep enough to crash a recursive walk of the body, small enough for the parser.
    nested = "[" * 900 + "]" * 900
    raw = '{"customer_id": "cus_1", "feature_id": "api_calls", "properties": {"x": ' + nested
    response = await api.post("balances.track", raw + "}}", idempotency_key="deep")
    problem(response, 422, "invalid_request")
    nothing_written(api)


async def test_body_over_the_limit_is_refused_by_declared_size(
    api: Api, existing: dict[str, Any]
) -> None:
    raw = BASE + '"add_to_balance": 1, "pad": "' + "x" * 70_000 + '"}'
    problem(await api.post("balances.update", raw), 413, "payload_too_large")
    nothing_written(api)


async def test_body_over_the_limit_is_refused_when_streamed(
    api: Api, existing: dict[str, Any]
) -> None:
    async def chunks() -> Any:
        yield (BASE + '"add_to_balance": 1, "pad": "').encode()
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    response = await api.client.post(
        "/v1/balances.update", content=chunks(), headers={"content-type": "application/json"}
    )
    problem(response, 413, "payload_too_large")
    nothing_written(api)


async def test_rollover_on_create_is_refused(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "f", "rollover": {"max": 5}}
    error = problem(await api.post("balances.create", body), 422, "invalid_request")
    assert "rollover" in error["detail"]
    assert api.count("balances") == 0


@pytest.mark.parametrize("count", [0, Decimal("1.5"), 1001])
async def test_bad_interval_count_is_refused(api: Api, count: Any) -> None:
    body = {"customer_id": "cus_1", "feature_id": "f", "reset": {"interval": "day"}}
    body["reset"]["interval_count"] = count  # type: ignore[index]
    problem(await api.post("balances.create", body), 422, "invalid_request")
    assert api.count("balances") == 0
