"""balances.delete: same targeting as update; the ledger stays, closed by a delete entry."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
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


# --- recalculate_balances: the deleted usage moves onto the survivors (Autumn's rule) ---------


def delete_body(**fields: Any) -> dict[str, Any]:
    return {"customer_id": "cus_1", "feature_id": "api_calls", **fields}


async def shown(api: Api) -> dict[str, tuple[Any, Any]]:
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    return {balance["id"]: (balance["usage"], balance["remaining"]) for balance in page["list"]}


async def test_recalculate_moves_the_usage_onto_the_survivors_in_deduction_order(
    api: Api,
) -> None:
    daily = await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    one_off = await api.create(included_grant=5)
    await api.update(interval="day", usage=7)
    await api.update(interval="month", usage=6)
    body = delete_body(interval="day", recalculate_balances=True)
    assert (await api.ok("balances.delete", body)) == {"success": True}
    # The monthly balance had 4 left and takes 4; the one_off takes the other 3.
    assert await shown(api) == {monthly["id"]: (10, 0), one_off["id"]: (3, 2)}
    assert api.ledger_kinds(daily["id"]) == ["create", "set_usage", "delete"]
    assert api.ledger(monthly["id"])[-1] == {
        "kind": "track",
        "remaining_delta": -4,
        "usage_delta": 4,
        "remaining_after": 0,
        "usage_after": 10,
    }
    assert api.ledger(one_off["id"])[-1]["kind"] == "track"
    assert api.invariant_violations() == []


async def test_recalculate_puts_what_does_not_fit_on_the_first_survivor(api: Api) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    one_off = await api.create(included_grant=5)
    await api.update(interval="day", usage=20)
    await api.ok("balances.delete", delete_body(interval="day", recalculate_balances=True))
    # 20 moves: 10 and 5 fill the survivors, the 5 left go past zero on the first (monthly).
    assert await shown(api) == {monthly["id"]: (15, -5), one_off["id"]: (5, 0)}
    assert api.invariant_violations() == []


async def test_recalculate_onto_an_unlimited_survivor_leaves_the_limited_ones(api: Api) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    unlimited = await api.create(unlimited=True, reset={"interval": "year"})
    await api.update(interval="day", usage=6)
    await api.ok("balances.delete", delete_body(interval="day", recalculate_balances=True))
    assert await shown(api) == {monthly["id"]: (0, 10), unlimited["id"]: (6, 0)}


async def test_recalculate_of_an_entity_balance_falls_back_to_the_customer_pool(
    api: Api,
) -> None:
    seat = await api.create(included_grant=5, entity_id="seat_1")
    pool = await api.create(included_grant=10)
    other_seat = await api.create(included_grant=5, entity_id="seat_2")
    await api.update(entity_id="seat_1", usage=3)
    body = delete_body(entity_id="seat_1", recalculate_balances=True)
    await api.ok("balances.delete", body)
    assert await shown(api) == {pool["id"]: (3, 7), other_seat["id"]: (0, 5)}
    assert api.ledger_kinds(seat["id"])[-1] == "delete"


async def test_recalculate_of_an_entity_balance_sinks_into_its_customers_unlimited_one(
    api: Api,
) -> None:
    await api.create(included_grant=5, entity_id="seat_1", reset={"interval": "day"})
    other = await api.create(included_grant=5, entity_id="seat_1")
    unlimited = await api.create(unlimited=True)
    await api.update(entity_id="seat_1", interval="day", usage=4)
    body = delete_body(entity_id="seat_1", interval="day", recalculate_balances=True)
    await api.ok("balances.delete", body)
    # As a track for seat_1 would: the customer's unlimited balance leads and takes it all.
    assert await shown(api) == {other["id"]: (0, 5), unlimited["id"]: (4, 0)}


async def test_recalculate_with_nowhere_to_move_the_usage_is_refused(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await api.update(usage=4)
    body = delete_body(recalculate_balances=True)
    error = problem(await api.post("balances.delete", body), 422, "invalid_request")
    assert ["recalculate_balances"] in [e["loc"] for e in error["errors"]]
    assert api.ledger_kinds(balance["id"]) == ["create", "set_usage"]
    assert api.count("balances") == 1


async def test_recalculate_of_an_unused_balance_just_deletes_it(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await api.ok("balances.delete", delete_body(recalculate_balances=True))
    assert api.ledger_kinds(balance["id"]) == ["create", "delete"]
    assert api.count("balances") == 0


async def test_recalculate_moves_nothing_of_a_period_that_has_reset(
    api: Api, clock: FrozenClock
) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    await api.update(interval="day", usage=7)
    clock.set(START + timedelta(days=1, hours=1))
    await api.ok("balances.delete", delete_body(interval="day", recalculate_balances=True))
    assert await shown(api) == {monthly["id"]: (0, 10)}


async def test_recalculate_moves_nothing_of_an_expired_balance(
    api: Api, clock: FrozenClock
) -> None:
    expiring = await api.create(
        included_grant=10,
        reset={"interval": "day"},
        expires_at=to_epoch_ms(START + timedelta(hours=1)),
    )
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    await api.update(balance_id=expiring["id"], usage=7)
    clock.set(START + timedelta(hours=2))
    body = delete_body(balance_id=expiring["id"], recalculate_balances=True)
    await api.ok("balances.delete", body)
    assert await shown(api) == {monthly["id"]: (0, 10)}
    assert api.ledger_kinds(expiring["id"])[-1] == "delete"


async def test_recalculate_needs_a_feature_id(api: Api) -> None:
    balance = await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "balance_id": balance["id"], "recalculate_balances": True}
    problem(await api.post("balances.delete", body), 422, "invalid_request")
    assert api.count("balances") == 1


async def test_recalculate_by_balance_id_needs_the_entity_of_an_entity_balance(
    api: Api,
) -> None:
    seat = await api.create(included_grant=5, entity_id="seat_1")
    await api.create(included_grant=10)
    await api.update(entity_id="seat_1", usage=2)
    body = delete_body(balance_id=seat["id"], recalculate_balances=True)
    error = problem(await api.post("balances.delete", body), 422, "invalid_request")
    assert ["entity_id"] in [e["loc"] for e in error["errors"]]
    assert api.count("balances") == 2
    await api.ok("balances.delete", {**body, "entity_id": "seat_1"})
    assert [usage for usage, _ in (await shown(api)).values()] == [2]


async def test_without_recalculate_the_usage_goes_with_the_balance(api: Api) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    await api.update(interval="day", usage=7)
    for flag in (None, False):
        body = delete_body(interval="day")
        if flag is not None:
            body["recalculate_balances"] = flag
        await api.ok("balances.delete", body)
        assert await shown(api) == {monthly["id"]: (0, 10)}
        await api.create(included_grant=10, reset={"interval": "day"})
        await api.update(interval="day", usage=7)
