"""balances.track: deduction order, overage behaviours, giving back, unlimited, entities."""

from decimal import Decimal
from typing import Any

from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem

D = Decimal


async def track(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
    result: dict[str, Any] = await api.ok("balances.track", body)
    return result


def by_id(result: dict[str, Any]) -> dict[str, Any]:
    return {d["balance_id"]: d["value"] for d in result["deductions"]}


async def test_track_deducts_shortest_interval_first_and_one_off_last(api: Api) -> None:
    one_off = await api.create(included_grant=100)
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    result = await track(api, value=12)
    assert by_id(result) == {daily["id"]: 5, monthly["id"]: 7}
    result = await track(api, value=10)
    assert by_id(result) == {monthly["id"]: 3, one_off["id"]: 7}
    assert result["balance"]["remaining"] == 93
    assert api.invariant_violations() == []


async def test_track_prefers_the_balance_that_expires_first(api: Api) -> None:
    later = await api.create(included_grant=10, entity_id=None)
    soon = await api.create(
        feature_id="api_calls",
        included_grant=10,
        reset={"interval": "year"},
        expires_at=to_epoch_ms(START.replace(month=2)),
    )
    result = await track(api, value=4)
    assert by_id(result) == {soon["id"]: 4}
    assert later["id"] not in by_id(result)


async def test_track_caps_at_what_remains_by_default(api: Api) -> None:
    await api.create(included_grant=5)
    result = await track(api, value=8)
    assert result["value"] == 8 and result["deducted"] == 5
    assert result["balance"]["remaining"] == 0


async def test_track_overflow_takes_remaining_below_zero(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    one_off = await api.create(included_grant=5)
    result = await track(api, value=14, overage_behavior="overflow")
    # The debt lands on the first balance in deduction order (Autumn): the daily one.
    assert by_id(result) == {daily["id"]: 9, one_off["id"]: 5}
    assert result["balance"]["remaining"] == -4


async def test_track_reject_deducts_nothing_when_it_does_not_fit(api: Api) -> None:
    balance = await api.create(included_grant=5)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 6}
    body["overage_behavior"] = "reject"
    problem(await api.post("balances.track", body), 409, "insufficient_balance")
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_overage_allowed_balance_takes_what_others_cannot(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    flexible = await api.create(included_grant=5, overage_allowed=True)
    result = await track(api, value=20)
    assert by_id(result) == {daily["id"]: 5, flexible["id"]: 15}
    assert result["balance"]["remaining"] == -10


async def test_negative_value_gives_back_in_reverse_order(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    one_off = await api.create(included_grant=10)
    await track(api, value=8)
    result = await track(api, value=-4)
    assert by_id(result) == {one_off["id"]: -3, daily["id"]: -1}
    assert result["balance"]["usage"] == 4


async def test_giving_back_never_takes_usage_below_zero(api: Api) -> None:
    await api.create(included_grant=5)
    await track(api, value=2)
    result = await track(api, value=-10)
    assert result["deducted"] == -2 and result["balance"]["usage"] == 0


async def test_unlimited_balance_counts_usage_and_never_blocks(api: Api) -> None:
    balance = await api.create(unlimited=True)
    result = await track(api, value=D("1e6"), overage_behavior="reject")
    assert by_id(result) == {balance["id"]: 1_000_000}
    assert result["balance"]["unlimited"] is True and result["balance"]["usage"] == 1_000_000


async def test_entity_track_touches_only_that_entity(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    seat = await api.create(included_grant=10, entity_id="seat_1")
    result = await track(api, entity_id="seat_1", value=3)
    assert by_id(result) == {seat["id"]: 3}
    assert result["entity_id"] == "seat_1"
    assert api.ledger_kinds(customer_level["id"]) == ["create"]


async def test_customer_level_track_ignores_entity_balances(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    seat = await api.create(included_grant=10, entity_id="seat_1")
    result = await track(api, value=3)
    assert by_id(result) == {customer_level["id"]: 3}
    assert api.ledger_kinds(seat["id"]) == ["create"]


async def test_track_without_a_live_balance_is_not_found(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
    problem(await api.post("balances.track", body), 404, "balance_not_found")


async def test_track_with_a_future_timestamp_is_refused(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
    body["timestamp"] = to_epoch_ms(START) + 60_000
    problem(await api.post("balances.track", body), 422, "invalid_request")


async def test_track_with_an_event_name_is_refused(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "event_name": "call"}
    problem(await api.post("balances.track", body), 422, "invalid_request")


async def test_track_writes_one_track_entry_per_balance(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    one_off = await api.create(included_grant=10)
    await track(api, value=7)
    assert api.ledger_kinds(daily["id"]) == ["create", "track"]
    assert api.ledger(one_off["id"])[-1]["usage_delta"] == 2
    assert api.invariant_violations() == []
