"""balances.update: every rule of the spec, happy and unhappy."""

from decimal import Decimal

from tests.conftest import START
from tests.helpers import Api, problem

D = Decimal


async def test_add_to_balance_adds_a_signed_delta(api: Api) -> None:
    balance = await api.create(included_grant=100)
    after = await api.update(add_to_balance=-30)
    assert after["remaining"] == 70
    assert after["adjustment"] == -30 and after["granted"] == 70 and after["usage"] == 0
    assert api.ledger_kinds(balance["id"]) == ["create", "add"]


async def test_add_to_balance_is_exact_with_decimals(api: Api) -> None:
    await api.create(included_grant=0)
    await api.update(add_to_balance=D("0.1"))
    after = await api.update(add_to_balance=D("0.2"))
    assert after["remaining"] == D("0.3")


async def test_set_remaining_records_the_real_delta(api: Api) -> None:
    balance = await api.create(included_grant=100)
    await api.update(usage=40)
    after = await api.update(remaining=500)
    assert after["remaining"] == 500
    assert after["usage"] == 40
    assert after["adjustment"] == 440
    assert api.ledger(balance["id"])[-1]["remaining_delta"] == 440


async def test_set_remaining_below_zero_is_allowed(api: Api) -> None:
    await api.create(included_grant=10)
    after = await api.update(remaining=-5)
    assert after["remaining"] == -5


async def test_set_usage_changes_usage_not_grant(api: Api) -> None:
    balance = await api.create(included_grant=100)
    after = await api.update(usage=D("12.5"))
    assert after["usage"] == D("12.5") and after["granted"] == 100
    assert after["remaining"] == D("87.5")
    entry = api.ledger(balance["id"])[-1]
    assert entry["kind"] == "set_usage"
    assert entry["remaining_delta"] == D("-12.5") and entry["usage_delta"] == D("12.5")


async def test_set_included_grant(api: Api) -> None:
    balance = await api.create(included_grant=100)
    after = await api.update(included_grant=250)
    assert after["included_grant"] == 250 and after["remaining"] == 250
    assert api.ledger(balance["id"])[-1]["kind"] == "set_included_grant"


async def test_included_grant_and_remaining_write_one_entry_each(api: Api) -> None:
    balance = await api.create(included_grant=100)
    after = await api.update(included_grant=200, remaining=50)
    assert after["included_grant"] == 200 and after["remaining"] == 50
    assert api.ledger_kinds(balance["id"]) == ["create", "set_included_grant", "set_remaining"]
    assert api.invariant_violations() == []


async def test_update_increments_version(api: Api) -> None:
    balance = await api.create(included_grant=1)
    after = await api.update(add_to_balance=1)
    assert after["version"] == balance["version"] + 1


async def test_update_targets_customer_level_balance_without_entity(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    seat = await api.create(included_grant=10, entity_id="seat_1")
    after = await api.update(add_to_balance=5)
    assert after["id"] == customer_level["id"] and after["source"] == "customer"
    assert api.ledger_kinds(seat["id"]) == ["create"]


async def test_set_remaining_on_entity_balance(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    seat = await api.create(included_grant=10, entity_id="seat_1")
    after = await api.update(entity_id="seat_1", remaining=3)
    assert after["id"] == seat["id"] and after["remaining"] == 3 and after["source"] == "entity"
    assert api.ledger_kinds(customer_level["id"]) == ["create"]


async def test_entity_without_balance_is_not_found(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "entity_id": "seat_9", "usage": 1}
    problem(await api.post("balances.update", body), 404, "balance_not_found")


async def test_interval_targets_one_of_several_balances(api: Api) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=100, reset={"interval": "month"})
    after = await api.update(interval="month", add_to_balance=1)
    assert after["id"] == monthly["id"] and after["remaining"] == 101


async def test_ambiguous_update_is_refused_and_changes_nothing(api: Api) -> None:
    daily = await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=100, reset={"interval": "month"})
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 5}
    error = problem(await api.post("balances.update", body), 409, "ambiguous_balance")
    assert "day" in error["detail"] and "month" in error["detail"]
    assert {c["interval"] for c in error["candidates"]} == {"day", "month"}
    assert api.ledger_kinds(daily["id"]) == ["create"]
    assert api.ledger_kinds(monthly["id"]) == ["create"]


async def test_balance_id_targets_that_balance(api: Api) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=100, reset={"interval": "month"})
    after = await api.update(balance_id=monthly["id"], usage=1)
    assert after["id"] == monthly["id"] and after["usage"] == 1


async def test_balance_id_of_another_feature_is_not_found(api: Api) -> None:
    other = await api.create(feature_id="seats", included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "balance_id": other["id"]}
    body["usage"] = 1
    problem(await api.post("balances.update", body), 404, "balance_not_found")
    assert api.ledger_kinds(other["id"]) == ["create"]


async def test_balance_id_of_another_customer_is_not_found(api: Api) -> None:
    other = await api.create(customer_id="cus_2", included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "balance_id": other["id"]}
    body["usage"] = 1
    problem(await api.post("balances.update", body), 404, "balance_not_found")


async def test_missing_balance_is_not_found(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    problem(await api.post("balances.update", body), 404, "balance_not_found")


async def test_remaining_and_add_to_balance_together_are_refused(api: Api) -> None:
    balance = await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "remaining": 1, "add_to_balance": 1}
    error = problem(await api.post("balances.update", body), 422, "invalid_request")
    assert "remaining and add_to_balance" in error["detail"]
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_usage_and_remaining_together_are_refused(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "remaining": 1, "usage": 1}
    problem(await api.post("balances.update", body), 422, "invalid_request")


async def test_update_with_nothing_to_change_is_refused(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "interval": "one_off"}
    error = problem(await api.post("balances.update", body), 422, "invalid_request")
    assert "nothing to change" in error["detail"]


async def test_unlimited_balance_refuses_remaining_changes(api: Api) -> None:
    balance = await api.create(unlimited=True)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    problem(await api.post("balances.update", body), 409, "balance_unlimited")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "usage": 1}
    problem(await api.post("balances.update", body), 409, "balance_unlimited")
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_unlimited_balance_accepts_time_changes(api: Api) -> None:
    await api.create(unlimited=True)
    expires_at = int(START.timestamp() * 1000) + 86_400_000
    after = await api.update(expires_at=expires_at)
    assert after["expires_at"] == expires_at


async def test_set_next_reset_at_moves_the_schedule(api: Api) -> None:
    balance = await api.create(included_grant=10, reset={"interval": "month"})
    next_reset_at = int(START.timestamp() * 1000) + 3_600_000
    after = await api.update(next_reset_at=next_reset_at)
    assert after["next_reset_at"] == next_reset_at
    assert after["reset"]["resets_at"] == next_reset_at
    assert api.ledger_kinds(balance["id"]) == ["create", "set_times"]


async def test_next_reset_at_in_the_past_is_refused(api: Api) -> None:
    await api.create(included_grant=10, reset={"interval": "month"})
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "next_reset_at": 1_000}
    error = problem(await api.post("balances.update", body), 422, "invalid_request")
    assert "future" in error["detail"]


async def test_next_reset_at_on_one_off_balance_is_refused(api: Api) -> None:
    await api.create(included_grant=10)
    next_reset_at = int(START.timestamp() * 1000) + 3_600_000
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "next_reset_at": next_reset_at}
    problem(await api.post("balances.update", body), 422, "invalid_request")


async def test_result_beyond_limit_is_refused_without_writing(api: Api) -> None:
    balance = await api.create(included_grant=D("999999999999999"))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    problem(await api.post("balances.update", body), 422, "amount_out_of_range")
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_every_update_keeps_the_ledger_invariant(api: Api) -> None:
    await api.create(included_grant=100)
    for change in ({"add_to_balance": 7}, {"usage": 30}, {"remaining": 1}, {"included_grant": 5}):
        await api.update(**change)
    assert api.invariant_violations() == []
