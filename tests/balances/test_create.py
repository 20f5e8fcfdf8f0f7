"""balances.create: defaults, supplied ids, the uniqueness of the balance key."""

from datetime import timedelta
from decimal import Decimal

from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem

D = Decimal

AUTUMN_BALANCE_FIELDS = {
    "id", "customer_id", "entity_id", "feature_id", "plan_id", "included_grant", "prepaid_grant",
    "remaining", "usage", "unlimited", "reset", "price", "expires_at", "status", "rollovers",
    "created_at", "source",
}  # fmt: skip


async def test_create_without_reset_is_one_off(api: Api) -> None:
    balance = await api.create(included_grant=10)
    assert balance["reset"] is None and balance["next_reset_at"] is None
    assert balance["interval"] == "one_off"
    assert balance["remaining"] == 10 and balance["granted"] == 10 and balance["usage"] == 0


async def test_create_monthly_resets_one_month_after_now(api: Api) -> None:
    balance = await api.create(included_grant=10, reset={"interval": "month"})
    expected = to_epoch_ms(START.replace(month=2))
    assert balance["reset"] == {"interval": "month", "interval_count": 1, "resets_at": expected}
    assert balance["next_reset_at"] == expected


async def test_create_with_interval_count(api: Api) -> None:
    balance = await api.create(reset={"interval": "week", "interval_count": 2})
    assert balance["next_reset_at"] == to_epoch_ms(START + timedelta(weeks=2))


async def test_create_with_next_reset_at_uses_it(api: Api) -> None:
    at = to_epoch_ms(START + timedelta(days=3))
    balance = await api.create(reset={"interval": "month"}, next_reset_at=at)
    assert balance["next_reset_at"] == at


async def test_create_returns_every_field_autumn_clients_require(api: Api) -> None:
    balance = await api.create(included_grant=1)
    assert set(balance) >= AUTUMN_BALANCE_FIELDS
    assert balance["plan_id"] is None and balance["price"] is None
    assert balance["rollovers"] == [] and balance["status"] == "active"
    assert balance["source"] == "customer" and balance["id"].startswith("bal_")
    assert balance["created_at"] == to_epoch_ms(START)


async def test_create_for_an_entity_has_source_entity(api: Api) -> None:
    balance = await api.create(entity_id="seat_1")
    assert balance["entity_id"] == "seat_1" and balance["source"] == "entity"


async def test_create_with_a_supplied_balance_id(api: Api) -> None:
    balance = await api.create(balance_id="my-balance")
    assert balance["id"] == "my-balance"


async def test_create_writes_one_create_entry(api: Api) -> None:
    balance = await api.create(included_grant=42)
    entries = api.ledger(balance["id"])
    assert [e["kind"] for e in entries] == ["create"]
    assert entries[0]["remaining_delta"] == 42 and entries[0]["remaining_after"] == 42


async def test_flags_are_stored(api: Api) -> None:
    balance = await api.create(unlimited=True, overage_allowed=True)
    assert balance["unlimited"] is True and balance["overage_allowed"] is True


async def test_duplicate_customer_level_key_is_refused(api: Api) -> None:
    await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    problem(await api.post("balances.create", body), 409, "balance_exists")
    assert api.count("balances") == 1 and api.count("balance_ledger") == 1


async def test_duplicate_entity_key_is_refused(api: Api) -> None:
    await api.create(entity_id="seat_1")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "entity_id": "seat_1"}
    problem(await api.post("balances.create", body), 409, "balance_exists")


async def test_same_feature_with_other_interval_or_entity_is_allowed(api: Api) -> None:
    await api.create()
    await api.create(reset={"interval": "day"})
    await api.create(entity_id="seat_1")
    await api.create(entity_id="seat_2")
    await api.create(customer_id="cus_2")
    assert api.count("balances") == 5


async def test_duplicate_balance_id_is_refused(api: Api) -> None:
    await api.create(balance_id="b1")
    body = {"customer_id": "cus_1", "feature_id": "other", "balance_id": "b1"}
    error = problem(await api.post("balances.create", body), 409, "balance_exists")
    assert "b1" in error["detail"]


async def test_next_reset_at_in_the_past_is_refused(api: Api) -> None:
    body: dict[str, object] = {
        "customer_id": "cus_1",
        "feature_id": "f",
        "reset": {"interval": "day"},
    }
    body["next_reset_at"] = to_epoch_ms(START - timedelta(days=1))
    problem(await api.post("balances.create", body), 422, "invalid_request")
    assert api.count("balances") == 0


async def test_next_reset_at_on_one_off_is_refused(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "f", "next_reset_at": to_epoch_ms(START) + 1}
    problem(await api.post("balances.create", body), 422, "invalid_request")


async def test_create_answers_success_true_with_the_balance(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 5}
    answer = await api.ok("balances.create", body)
    assert answer["success"] is True and answer["balance"]["remaining"] == 5


async def test_create_defaults(api: Api) -> None:
    balance = await api.create()
    assert balance["included_grant"] == 0 and balance["prepaid_grant"] == 0
    assert balance["adjustment"] == 0 and balance["remaining"] == 0
    assert balance["unlimited"] is False and balance["overage_allowed"] is False
    assert balance["entity_id"] is None and balance["expires_at"] is None
    assert balance["version"] == 1
    assert balance["created_at"] == balance["updated_at"] == to_epoch_ms(START)


async def test_explicit_one_off_reset_is_reported_as_null(api: Api) -> None:
    balance = await api.create(reset={"interval": "one_off"})
    assert balance["interval"] == "one_off"
    assert balance["reset"] is None and balance["next_reset_at"] is None


async def test_create_daily_resets_one_day_after_now(api: Api) -> None:
    balance = await api.create(reset={"interval": "day"})
    expected = to_epoch_ms(START + timedelta(days=1))
    assert balance["reset"] == {"interval": "day", "interval_count": 1, "resets_at": expected}


async def test_create_with_expires_at_is_active_until_then(api: Api) -> None:
    expires_at = to_epoch_ms(START + timedelta(hours=1))
    balance = await api.create(expires_at=expires_at)
    assert balance["expires_at"] == expires_at and balance["status"] == "active"


async def test_unlimited_balance_with_overage(api: Api) -> None:
    balance = await api.create(unlimited=True, overage_allowed=False, included_grant=0)
    assert balance["unlimited"] is True and balance["overage_allowed"] is False


async def test_overage_allowed_alone(api: Api) -> None:
    balance = await api.create(overage_allowed=True)
    assert balance["overage_allowed"] is True and balance["unlimited"] is False


async def test_create_entry_records_the_grant_as_its_delta(api: Api) -> None:
    balance = await api.create(included_grant=D("12.345"), reset={"interval": "month"})
    [entry] = api.ledger(balance["id"])
    assert entry["kind"] == "create"
    assert entry["remaining_delta"] == D("12.345") and entry["usage_delta"] == 0
    assert entry["remaining_after"] == D("12.345") and entry["usage_after"] == 0
    assert api.invariant_violations() == []


async def test_duplicate_entity_key_writes_nothing(api: Api) -> None:
    existing = await api.create(entity_id="seat_1", included_grant=3)
    body: dict[str, object] = {
        "customer_id": "cus_1",
        "feature_id": "api_calls",
        "entity_id": "seat_1",
    }
    body["included_grant"] = 99
    problem(await api.post("balances.create", body), 409, "balance_exists")
    assert api.count("balances") == 1 and api.ledger_kinds(existing["id"]) == ["create"]
    [listed] = (await api.ok("balances.list", {"customer_id": "cus_1"}))["list"]
    assert listed["included_grant"] == 3


async def test_customer_level_duplicate_is_refused_even_when_an_entity_balance_exists(
    api: Api,
) -> None:
    await api.create(entity_id="seat_1")
    await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    problem(await api.post("balances.create", body), 409, "balance_exists")
    assert api.count("balances") == 2


async def test_same_feature_with_another_interval_is_allowed(api: Api) -> None:
    monthly = await api.create(reset={"interval": "month"})
    daily = await api.create(reset={"interval": "day"})
    assert monthly["id"] != daily["id"]
    assert api.count("balances") == 2


async def test_same_entity_key_with_another_interval_is_allowed(api: Api) -> None:
    await api.create(entity_id="seat_1", reset={"interval": "month"})
    await api.create(entity_id="seat_1", reset={"interval": "week"})
    assert api.count("balances") == 2


async def test_same_key_for_another_entity_is_allowed(api: Api) -> None:
    first = await api.create(entity_id="seat_1")
    second = await api.create(entity_id="seat_2")
    assert second["entity_id"] == "seat_2" and second["id"] != first["id"]


async def test_same_key_for_another_customer_is_allowed(api: Api) -> None:
    await api.create(customer_id="cus_1")
    other = await api.create(customer_id="cus_2")
    assert other["customer_id"] == "cus_2"


async def test_duplicate_balance_id_writes_nothing(api: Api) -> None:
    await api.create(balance_id="b1")
    body = {"customer_id": "cus_1", "feature_id": "other", "balance_id": "b1"}
    problem(await api.post("balances.create", body), 409, "balance_exists")
    assert api.count("balances") == 1 and api.count("balance_ledger") == 1


async def test_balance_id_of_another_customers_balance_is_refused(api: Api) -> None:
    # A balance is identified by its id (spec §1): two balances must not share one.
    await api.create(customer_id="cus_1", balance_id="shared")
    body = {"customer_id": "cus_2", "feature_id": "api_calls", "balance_id": "shared"}
    problem(await api.post("balances.create", body), 409, "balance_exists")
    assert api.count("balances") == 1 and api.count("balance_ledger") == 1


async def test_next_reset_at_equal_to_now_is_refused(api: Api) -> None:
    body: dict[str, object] = {
        "customer_id": "cus_1",
        "feature_id": "f",
        "reset": {"interval": "day"},
    }
    body["next_reset_at"] = to_epoch_ms(START)
    problem(await api.post("balances.create", body), 422, "invalid_request")
    assert api.count("balances") == 0 and api.count("balance_ledger") == 0


async def test_next_reset_at_on_explicit_one_off_is_refused(api: Api) -> None:
    body: dict[str, object] = {
        "customer_id": "cus_1",
        "feature_id": "f",
        "reset": {"interval": "one_off"},
    }
    body["next_reset_at"] = to_epoch_ms(START + timedelta(days=1))
    problem(await api.post("balances.create", body), 422, "invalid_request")
    assert api.count("balances") == 0
