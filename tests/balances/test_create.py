"""balances.create: defaults, supplied ids, the uniqueness of the balance key."""

from datetime import timedelta

from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem

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
    body = {"customer_id": "cus_1", "feature_id": "f", "reset": {"interval": "day"}}
    body["next_reset_at"] = to_epoch_ms(START - timedelta(days=1))
    problem(await api.post("balances.create", body), 422, "invalid_request")
    assert api.count("balances") == 0


async def test_next_reset_at_on_one_off_is_refused(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "f", "next_reset_at": to_epoch_ms(START) + 1}
    problem(await api.post("balances.create", body), 422, "invalid_request")
