"""balances.delete: same targeting as update; the ledger stays, closed by a delete entry."""

from datetime import timedelta
from decimal import Decimal

from app.core.clock import FrozenClock
from tests.conftest import START
from tests.helpers import Api, problem

D = Decimal


async def test_delete_by_key_keeps_the_ledger_closed_at_zero(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await api.update(usage=3)
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    assert (await api.ok("balances.delete", body)) == {"success": True}
    assert api.count("balances") == 0
    entries = api.ledger(balance["id"])
    assert [e["kind"] for e in entries] == ["create", "set_usage", "delete"]
    assert entries[-1]["remaining_delta"] == -7 and entries[-1]["usage_delta"] == -3
    assert entries[-1]["remaining_after"] == 0
    assert api.invariant_violations() == []


async def test_delete_by_balance_id(api: Api) -> None:
    await api.create(reset={"interval": "day"})
    monthly = await api.create(reset={"interval": "month"})
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": monthly["id"]})
    assert api.count("balances") == 1


async def test_delete_of_a_missing_balance_is_not_found(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    problem(await api.post("balances.delete", body), 404, "balance_not_found")


async def test_ambiguous_delete_deletes_nothing(api: Api) -> None:
    await api.create(reset={"interval": "day"})
    await api.create(reset={"interval": "month"})
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    problem(await api.post("balances.delete", body), 409, "ambiguous_balance")
    assert api.count("balances") == 2


async def test_delete_needs_a_feature_or_a_balance_id(api: Api) -> None:
    problem(await api.post("balances.delete", {"customer_id": "cus_1"}), 422, "invalid_request")


async def test_key_can_be_created_again_after_delete(api: Api) -> None:
    first = await api.create(included_grant=1)
    await api.ok("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"})
    second = await api.create(included_grant=2)
    assert second["id"] != first["id"] and second["remaining"] == 2
    assert api.invariant_violations() == []


async def test_delete_by_balance_id_closes_that_ledger_only(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    monthly = await api.create(included_grant=8, reset={"interval": "month"})
    body = {"customer_id": "cus_1", "balance_id": monthly["id"]}
    assert (await api.ok("balances.delete", body)) == {"success": True}
    assert api.ledger_kinds(monthly["id"]) == ["create", "delete"]
    assert api.ledger(monthly["id"])[-1]["remaining_delta"] == -8
    assert api.ledger_kinds(daily["id"]) == ["create"]
    assert api.invariant_violations() == []


async def test_deleted_balance_ledger_sums_to_zero(api: Api) -> None:
    balance = await api.create(included_grant=D("10.5"))
    await api.update(add_to_balance=D("-0.25"))
    await api.update(usage=4)
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": balance["id"]})
    entries = api.ledger(balance["id"])
    assert sum(e["remaining_delta"] for e in entries) == 0
    assert sum(e["usage_delta"] for e in entries) == 0
    assert entries[-1]["remaining_after"] == 0 and entries[-1]["usage_after"] == 0
    assert api.invariant_violations() == []


async def test_ambiguous_delete_names_the_candidates_and_writes_nothing(api: Api) -> None:
    daily = await api.create(reset={"interval": "day"})
    monthly = await api.create(reset={"interval": "month"})
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    error = problem(await api.post("balances.delete", body), 409, "ambiguous_balance")
    assert "day" in error["detail"] and "month" in error["detail"]
    assert api.count("balance_ledger") == 2
    assert api.ledger_kinds(daily["id"]) == ["create"]
    assert api.ledger_kinds(monthly["id"]) == ["create"]


async def test_delete_with_interval_picks_that_balance(api: Api) -> None:
    daily = await api.create(reset={"interval": "day"})
    monthly = await api.create(reset={"interval": "month"})
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "interval": "day"}
    await api.ok("balances.delete", body)
    assert api.ledger_kinds(daily["id"]) == ["create", "delete"]
    assert await _remaining_ids(api) == [monthly["id"]]


async def test_delete_of_an_entity_balance_keeps_the_customer_level_one(api: Api) -> None:
    customer_level = await api.create()
    seat = await api.create(entity_id="seat_1")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "entity_id": "seat_1"}
    await api.ok("balances.delete", body)
    assert api.ledger_kinds(seat["id"]) == ["create", "delete"]
    assert await _remaining_ids(api) == [customer_level["id"]]


async def test_delete_by_key_without_entity_keeps_entity_balances(api: Api) -> None:
    customer_level = await api.create()
    seat = await api.create(entity_id="seat_1")
    await api.ok("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"})
    assert api.ledger_kinds(customer_level["id"]) == ["create", "delete"]
    assert await _remaining_ids(api) == [seat["id"]]


async def test_deleting_twice_is_not_found(api: Api) -> None:
    balance = await api.create()
    body = {"customer_id": "cus_1", "balance_id": balance["id"]}
    await api.ok("balances.delete", body)
    problem(await api.post("balances.delete", body), 404, "balance_not_found")
    assert api.ledger_kinds(balance["id"]) == ["create", "delete"]


async def test_deleted_balance_cannot_be_updated(api: Api) -> None:
    balance = await api.create()
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": balance["id"]})
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    problem(await api.post("balances.update", body), 404, "balance_not_found")


async def test_delete_of_another_customers_balance_id_is_not_found(api: Api) -> None:
    other = await api.create(customer_id="cus_2")
    body = {"customer_id": "cus_1", "balance_id": other["id"]}
    problem(await api.post("balances.delete", body), 404, "balance_not_found")
    assert api.ledger_kinds(other["id"]) == ["create"]


async def test_delete_of_a_balance_id_with_another_feature_is_not_found(api: Api) -> None:
    balance = await api.create(feature_id="seats")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "balance_id": balance["id"]}
    problem(await api.post("balances.delete", body), 404, "balance_not_found")
    assert api.count("balances") == 1


async def test_delete_of_a_missing_balance_id_is_not_found(api: Api) -> None:
    body = {"customer_id": "cus_1", "balance_id": "bal_missing"}
    problem(await api.post("balances.delete", body), 404, "balance_not_found")


async def test_delete_needs_a_customer(api: Api) -> None:
    body = {"feature_id": "api_calls"}
    error = problem(await api.post("balances.delete", body), 422, "invalid_request")
    assert ["customer_id"] in [e["loc"] for e in error["errors"]]


async def test_delete_refuses_unknown_fields(api: Api) -> None:
    await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "force": True}
    problem(await api.post("balances.delete", body), 422, "invalid_request")
    assert api.count("balances") == 1


async def test_delete_of_a_balance_due_a_reset_persists_the_reset_first(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(included_grant=10, reset={"interval": "day"})
    await api.update(usage=4)
    clock.set(START + timedelta(days=1, hours=1))
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": balance["id"]})
    entries = api.ledger(balance["id"])
    assert [e["kind"] for e in entries] == ["create", "set_usage", "reset", "delete"]
    assert entries[-1]["remaining_delta"] == -10 and entries[-1]["usage_delta"] == 0
    assert api.invariant_violations() == []


async def test_recreated_key_starts_a_fresh_ledger(api: Api) -> None:
    first = await api.create(included_grant=5)
    await api.update(usage=5)
    await api.ok("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"})
    second = await api.create(included_grant=7)
    assert second["usage"] == 0 and second["remaining"] == 7 and second["version"] == 1
    assert api.ledger_kinds(second["id"]) == ["create"]
    assert api.ledger_kinds(first["id"]) == ["create", "set_usage", "delete"]
    assert api.invariant_violations() == []


async def _remaining_ids(api: Api) -> list[str]:
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    return [balance["id"] for balance in page["list"]]
