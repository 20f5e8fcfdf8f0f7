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


# --- balances.create: the same rules, and nothing created ---------------------------------------

CREATE = '{"customer_id": "cus_1", "feature_id": "api_calls", '


def nothing_created(api: Api) -> None:
    assert api.count("balances") == 0
    assert api.count("balance_ledger") == 0


def locations(error: dict[str, Any]) -> list[list[str | int]]:
    return [e["loc"] for e in error["errors"]]


async def test_invalid_input_is_a_complete_problem_document(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": "5"}
    response = await api.post("balances.create", body)
    error = problem(response, 422, "invalid_request")
    assert {"type", "title", "status", "detail", "code", "message", "errors"} <= set(error)
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["title"], str) and error["title"]
    assert error["status"] == 422
    assert len(error["errors"]) == 1
    item = error["errors"][0]
    assert set(item) == {"loc", "msg"}
    assert item["loc"] == ["included_grant"] and isinstance(item["msg"], str) and item["msg"]
    assert "included_grant" in error["detail"]
    nothing_created(api)


@pytest.mark.parametrize(
    "number",
    ["NaN", "Infinity", "-Infinity", '"5"', '"0.1"', "true", "false", "null", "0.0000000001",
     "1000000000000000", "-1000000000000000", "1e15", "1000000000000000.5"],
)  # fmt: skip
async def test_bad_included_grant_creates_nothing(api: Api, number: str) -> None:
    raw = CREATE + f'"included_grant": {number}}}'
    error = problem(await api.post("balances.create", raw), 422, "invalid_request")
    assert locations(error) in ([["included_grant"]], [["body"]]), error
    nothing_created(api)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_id", "cus\x001"),
        ("customer_id", "cus\n1"),
        ("customer_id", "cus\x7f"),
        ("customer_id", ""),
        ("customer_id", "c" * 256),
        ("customer_id", 5),
        ("feature_id", "api\tcalls"),
        ("feature_id", None),
        ("entity_id", "seat\x1b[31m"),
        ("entity_id", ""),
        ("entity_id", "s" * 256),
        ("balance_id", "bal\r\n"),
        ("balance_id", "b" * 256),
        ("unlimited", "true"),
        ("unlimited", 1),
        ("overage_allowed", "yes"),
        ("reset", {"interval": "fortnight"}),
        ("reset", {"interval": "Month"}),
        ("reset", {"interval_count": 2}),
        ("reset", {"interval": "day", "interval_count": 0}),
        ("reset", {"interval": "day", "interval_count": Decimal("1.5")}),
        ("reset", {"interval": "day", "interval_count": "2"}),
        ("reset", {"interval": "day", "anchor": 1}),
        ("reset", "month"),
        ("expires_at", -1),
        ("expires_at", Decimal("1768478400000.5")),
        ("expires_at", "2026-01-16T00:00:00Z"),
        ("expires_at", True),
        ("next_reset_at", -86_400_000),
        ("next_reset_at", Decimal("1768478400000.25")),
        ("rollover", {"max": 5}),
        ("unknown_field", 1),
    ],
)
async def test_invalid_create_field_is_named_and_creates_nothing(
    api: Api, field: str, value: Any
) -> None:
    body: dict[str, Any] = {"customer_id": "cus_1", "feature_id": "api_calls", field: value}
    if field == "next_reset_at":
        body["reset"] = {"interval": "month"}
    error = problem(await api.post("balances.create", body), 422, "invalid_request")
    assert any(loc[0] == field for loc in locations(error)), error
    assert field in error["detail"]
    nothing_created(api)


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "[]",
        '[{"customer_id": "cus_1", "feature_id": "api_calls"}]',
        "null",
        "42",
        CREATE + '"included_grant": 1,}',
        "{'customer_id': 'cus_1', 'feature_id': 'api_calls'}",
        CREATE + '"included_grant": 01}',
        CREATE + '"included_grant": .5}',
        CREATE + '"included_grant": 0x10}',
    ],
    ids=["open-brace", "empty-array", "array-of-body", "null", "number", "trailing-comma",
         "single-quotes", "leading-zero", "bare-fraction", "hex"],
)  # fmt: skip
async def test_malformed_create_body_creates_nothing(api: Api, raw: str) -> None:
    error = problem(await api.post("balances.create", raw), 422, "invalid_request")
    assert locations(error) == [["body"]], error
    nothing_created(api)


@pytest.mark.parametrize(
    "body",
    [
        {"reset": {"interval": "day"}, "next_reset_at": 1_000},
        {"next_reset_at": 1_768_500_000_000},
    ],
    ids=["in-the-past", "on-one-off"],
)
async def test_invalid_next_reset_at_found_by_the_service_is_named_in_errors(
    api: Api, body: dict[str, Any]
) -> None:
    request = {"customer_id": "cus_1", "feature_id": "api_calls", **body}
    error = problem(await api.post("balances.create", request), 422, "invalid_request")
    assert ["next_reset_at"] in locations(error), error
    assert all(item["msg"] for item in error["errors"])
    nothing_created(api)


async def test_ids_of_255_printable_characters_are_accepted(api: Api) -> None:
    long_id = "é" + "x" * 253 + "☃"
    balance = await api.create(customer_id=long_id, feature_id=long_id, entity_id=long_id)
    assert balance["customer_id"] == long_id and balance["entity_id"] == long_id


async def test_exponent_notation_is_accepted_exactly(api: Api) -> None:
    raw = CREATE + '"included_grant": 1.5e2}'
    response = await api.post("balances.create", raw)
    assert response.status_code == 200, response.text
    assert '"included_grant":150,' in response.text
    await api.ok("balances.update", BASE + '"add_to_balance": 5E-9}')
    assert api.ledger(response.json()["balance"]["id"])[-1]["remaining_after"] == Decimal(
        "150.000000005"
    )


async def test_zero_point_one_plus_zero_point_two_is_exact_in_the_ledger(api: Api) -> None:
    balance = await api.create(included_grant=Decimal("0.1"))
    await api.update(add_to_balance=Decimal("0.2"))
    entries = api.ledger(balance["id"])
    assert [e["remaining_after"] for e in entries] == [Decimal("0.1"), Decimal("0.3")]
    assert sum(e["remaining_delta"] for e in entries) == Decimal("0.3")
    assert api.invariant_violations() == []


async def test_largest_negative_amount_is_accepted(api: Api) -> None:
    await api.create(included_grant=0)
    after = await api.update(remaining=Decimal("-999999999999999.999999999"))
    assert after["remaining"] == Decimal("-999999999999999.999999999")
    assert api.invariant_violations() == []


async def test_body_of_exactly_64_kib_is_not_too_large(api: Api) -> None:
    raw = CREATE + '"pad": "'
    raw += "x" * (65_536 - len(raw) - 2) + '"}'
    assert len(raw.encode()) == 65_536
    error = problem(await api.post("balances.create", raw), 422, "invalid_request")
    assert ["pad"] in locations(error)
    nothing_created(api)


async def test_body_one_byte_over_64_kib_is_too_large(api: Api) -> None:
    raw = CREATE + '"included_grant": 1, "pad": "'
    raw += "x" * (65_537 - len(raw) - 2) + '"}'
    assert len(raw.encode()) == 65_537
    problem(await api.post("balances.create", raw), 413, "payload_too_large")
    nothing_created(api)


async def test_streamed_create_over_the_limit_creates_nothing(api: Api) -> None:
    sent: list[int] = []

    async def chunks() -> Any:
        yield (CREATE + '"included_grant": 1, "pad": "').encode()
        for _ in range(100):
            sent.append(1)
            yield b"y" * 1024
        yield b'"}'

    response = await api.client.post(
        "/v1/balances.create",
        content=chunks(),
        headers={"content-type": "application/json", "authorization": f"Bearer {api.secret}"},
    )
    assert "content-length" not in response.request.headers
    problem(response, 413, "payload_too_large")
    nothing_created(api)
