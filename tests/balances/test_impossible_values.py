"""Impossible values are refused with 422 and change nothing (issue 12, point 8).

Autumn accepts them; Balances stays stricter on purpose: a usage or grant below zero, and an
``expires_at`` not in the future (including seconds sent where milliseconds are expected), are
mistakes, never requests.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem

SECONDS_NOT_MILLIS = 1_790_000_000  # 2026-09-21 in seconds; 1970-01-21 in milliseconds
AN_HOUR_AGO = to_epoch_ms(START - timedelta(hours=1))
IN_A_DAY = to_epoch_ms(START + timedelta(days=1))
IN_AN_HOUR_AND_A_HALF = to_epoch_ms(START + timedelta(minutes=90))


def refused(response: Any, field: str) -> dict[str, Any]:
    error = problem(response, 422, "invalid_request")
    assert [field] in [e["loc"] for e in error["errors"]], error
    return error


def snapshot(api: Api) -> tuple[Any, ...]:
    return (
        api.db.execute("SELECT * FROM balances ORDER BY id").fetchall(),
        api.count("balance_ledger"),
    )


# --- update ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("usage", -1),
        ("usage", Decimal("-0.000000001")),
        ("included_grant", -1),
        ("included_grant", Decimal("-0.5")),
        ("expires_at", AN_HOUR_AGO),
        ("expires_at", to_epoch_ms(START)),  # now is not in the future
        ("expires_at", SECONDS_NOT_MILLIS),
    ],
)
async def test_update_with_an_impossible_value_is_refused_and_changes_nothing(
    api: Api, field: str, value: Any
) -> None:
    await api.create(included_grant=10, reset={"interval": "month"})
    await api.update(usage=3)
    before = snapshot(api)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", field: value}
    refused(await api.post("balances.update", body), field)
    assert snapshot(api) == before


async def test_an_impossible_value_beside_a_valid_change_refuses_both(api: Api) -> None:
    balance = await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 5}
    refused(await api.post("balances.update", {**body, "expires_at": AN_HOUR_AGO}), "expires_at")
    refused(await api.post("balances.update", {**body, "included_grant": -1}), "included_grant")
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_seconds_sent_as_milliseconds_are_named_in_the_error(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "expires_at": SECONDS_NOT_MILLIS}
    error = refused(await api.post("balances.update", body), "expires_at")
    assert "milliseconds" in error["detail"] and "seconds" in error["detail"]


async def test_zero_usage_and_grant_and_a_future_expiry_are_accepted(api: Api) -> None:
    await api.create(included_grant=10)
    after = await api.update(usage=0, included_grant=0, expires_at=IN_A_DAY)
    assert (after["usage"], after["included_grant"], after["expires_at"]) == (0, 0, IN_A_DAY)


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("included_grant", -1),
        ("included_grant", Decimal("-0.000000001")),
        ("expires_at", AN_HOUR_AGO),
        ("expires_at", to_epoch_ms(START)),
        ("expires_at", SECONDS_NOT_MILLIS),
    ],
)
async def test_create_with_an_impossible_value_is_refused_and_creates_nothing(
    api: Api, field: str, value: Any
) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 5, field: value}
    refused(await api.post("balances.create", body), field)
    assert api.count("balances") == 0 and api.count("balance_ledger") == 0


async def test_a_refused_create_does_not_retire_the_expired_balance_of_its_key(
    api: Api, clock: FrozenClock
) -> None:
    old = await api.create(included_grant=5, expires_at=to_epoch_ms(START + timedelta(hours=1)))
    clock.set(START + timedelta(hours=2))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "expires_at": IN_AN_HOUR_AND_A_HALF}
    refused(await api.post("balances.create", body), "expires_at")
    assert api.ledger_kinds(old["id"]) == ["create"] and api.count("balances") == 1


async def test_the_schema_documents_the_lower_bounds(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    create = spec["CreateBalanceParams"]["properties"]
    assert create["included_grant"]["minimum"] == 0
    update = spec["UpdateBalanceParams"]["properties"]
    for field in ("usage", "included_grant"):
        [number] = [b for b in update[field]["anyOf"] if b.get("type") == "number"]
        assert number["minimum"] == 0 and "ge" not in number
