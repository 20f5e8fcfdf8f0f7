"""balances.history: the ledger, newest first, paginated, surviving deletion."""

from datetime import timedelta
from decimal import Decimal

import pytest

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem

D = Decimal


async def test_history_of_a_balance_is_newest_first(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await api.update(add_to_balance=5)
    await api.update(usage=2)
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert [e["kind"] for e in page["list"]] == ["set_usage", "add", "create"]
    assert [e["remaining_delta"] for e in page["list"]] == [-2, 5, 10]
    assert page["list"][0]["remaining_after"] == 13 and page["list"][0]["usage_after"] == 2
    assert [e["balance_version"] for e in page["list"]] == [3, 2, 1]


async def test_history_by_customer_and_feature_spans_its_balances(api: Api) -> None:
    await api.create(reset={"interval": "day"})
    await api.create(reset={"interval": "month"})
    await api.create(feature_id="other")
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    assert len((await api.ok("balances.history", body))["list"]) == 2
    page = await api.ok("balances.history", {**body, "interval": "day"})
    assert [e["interval"] for e in page["list"]] == ["day"]


async def test_history_pages_with_a_cursor(api: Api) -> None:
    balance = await api.create()
    for _ in range(4):
        await api.update(add_to_balance=1)
    first = await api.ok("balances.history", {"balance_id": balance["id"], "limit": 3})
    assert first["has_more"] is True
    rest = await api.ok(
        "balances.history",
        {"balance_id": balance["id"], "limit": 3, "start_cursor": first["next_cursor"]},
    )
    ids = [e["id"] for e in first["list"] + rest["list"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5 and rest["has_more"] is False


async def test_history_of_a_deleted_balance_stays_readable(api: Api) -> None:
    balance = await api.create(included_grant=3)
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": balance["id"]})
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert [e["kind"] for e in page["list"]] == ["delete", "create"]


async def test_history_needs_a_balance_or_a_feature(api: Api) -> None:
    problem(await api.post("balances.history", {"customer_id": "c"}), 422, "invalid_request")


async def test_history_records_the_request_id(api: Api) -> None:
    balance = await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    response = await api.post("balances.update", body, **{"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert page["list"][0]["request_id"] == "req-42"


LEDGER_FIELDS = {
    "id", "balance_id", "customer_id", "feature_id", "entity_id", "kind", "remaining_delta",
    "usage_delta", "remaining_after", "usage_after", "granted_after", "idempotency_key",
    "request_id", "api_key_id", "created_at",
}  # fmt: skip


async def test_history_entries_carry_every_ledger_field(api: Api) -> None:
    balance = await api.create(included_grant=10, entity_id="seat_1")
    await api.update(entity_id="seat_1", add_to_balance=D("2.5"))
    [entry, _] = (await api.ok("balances.history", {"balance_id": balance["id"]}))["list"]
    assert set(entry) >= LEDGER_FIELDS
    assert entry["balance_id"] == balance["id"] and entry["customer_id"] == "cus_1"
    assert entry["feature_id"] == "api_calls" and entry["entity_id"] == "seat_1"
    assert entry["kind"] == "add" and entry["remaining_delta"] == D("2.5")
    assert entry["usage_delta"] == 0 and entry["remaining_after"] == D("12.5")
    assert entry["granted_after"] == D("12.5") and entry["usage_after"] == 0
    assert entry["api_key_id"] and entry["created_at"] == to_epoch_ms(START)


async def test_history_shows_every_kind_with_its_deltas_newest_first(api: Api) -> None:
    balance = await api.create(included_grant=100)
    await api.update(remaining=90)
    await api.update(usage=30)
    await api.update(included_grant=150)
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    summary = [(e["kind"], e["remaining_delta"], e["usage_delta"]) for e in page["list"]]
    assert summary == [
        ("set_included_grant", 50, 0),
        ("set_usage", -30, 30),
        ("set_remaining", -10, 0),
        ("create", 100, 0),
    ]
    assert [e["remaining_after"] for e in page["list"]] == [110, 60, 90, 100]
    ids = [e["id"] for e in page["list"]]
    assert ids == sorted(ids, reverse=True)


async def test_history_by_customer_and_feature_is_newest_first_across_balances(
    api: Api,
) -> None:
    daily = await api.create(reset={"interval": "day"})
    monthly = await api.create(reset={"interval": "month"})
    await api.update(interval="day", add_to_balance=1)
    await api.create(customer_id="cus_2")
    page = await api.ok("balances.history", {"customer_id": "cus_1", "feature_id": "api_calls"})
    assert [(e["balance_id"], e["kind"]) for e in page["list"]] == [
        (daily["id"], "add"),
        (monthly["id"], "create"),
        (daily["id"], "create"),
    ]


async def test_history_by_customer_feature_and_entity(api: Api) -> None:
    await api.create()
    seat = await api.create(entity_id="seat_1")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "entity_id": "seat_1"}
    page = await api.ok("balances.history", body)
    assert [e["balance_id"] for e in page["list"]] == [seat["id"]]


async def test_history_pages_through_every_entry_exactly_once(api: Api) -> None:
    balance = await api.create()
    for amount in range(1, 7):
        await api.update(add_to_balance=amount)
    body: dict[str, object] = {"balance_id": balance["id"], "limit": 3}
    pages = []
    while True:
        page = await api.ok("balances.history", body)
        pages.append(page)
        if not page["has_more"]:
            break
        body["start_cursor"] = page["next_cursor"]
    assert [len(p["list"]) for p in pages] == [3, 3, 1]
    assert pages[-1]["next_cursor"] is None
    deltas = [e["remaining_delta"] for p in pages for e in p["list"]]
    assert deltas == [6, 5, 4, 3, 2, 1, 0]


async def test_history_page_never_holds_more_than_limit(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(included_grant=10, reset={"interval": "day"})
    await api.update(usage=3)
    clock.set(START + timedelta(days=1, minutes=1))  # a reset is now due, not yet written
    page = await api.ok("balances.history", {"balance_id": balance["id"], "limit": 1})
    assert len(page["list"]) == 1 and page["has_more"] is True


async def test_history_of_a_deleted_balance_by_customer_and_feature(api: Api) -> None:
    balance = await api.create(included_grant=2)
    await api.ok("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"})
    page = await api.ok("balances.history", {"customer_id": "cus_1", "feature_id": "api_calls"})
    assert [(e["balance_id"], e["kind"]) for e in page["list"]] == [
        (balance["id"], "delete"),
        (balance["id"], "create"),
    ]
    assert page["list"][0]["remaining_delta"] == -2 and page["list"][0]["remaining_after"] == 0


async def test_history_of_an_unknown_balance_is_empty(api: Api) -> None:
    page = await api.ok("balances.history", {"balance_id": "bal_unknown"})
    assert page == {"list": [], "has_more": False, "next_cursor": None}


@pytest.mark.parametrize(
    "body",
    [{}, {"feature_id": "api_calls"}, {"customer_id": "cus_1", "entity_id": "seat_1"}],
    ids=["empty", "feature-only", "customer-and-entity"],
)
async def test_history_without_a_balance_or_customer_and_feature_is_refused(
    api: Api, body: dict[str, str]
) -> None:
    await api.create()
    problem(await api.post("balances.history", body), 422, "invalid_request")


async def test_history_refuses_a_foreign_cursor(api: Api) -> None:
    balance = await api.create()
    body = {"balance_id": balance["id"], "start_cursor": "garbage"}
    problem(await api.post("balances.history", body), 422, "invalid_cursor")


async def test_history_refuses_a_list_cursor(api: Api) -> None:
    for n in range(2):
        await api.create(feature_id=f"f{n}")
    cursor = (await api.ok("balances.list", {"limit": 1}))["next_cursor"]
    body = {"customer_id": "cus_1", "feature_id": "f0", "start_cursor": cursor}
    problem(await api.post("balances.history", body), 422, "invalid_cursor")


async def test_history_records_a_generated_request_id(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 1}
    response = await api.post("balances.create", body)
    generated = response.headers["x-request-id"]
    assert generated
    balance_id = response.json()["balance"]["id"]
    [entry] = (await api.ok("balances.history", {"balance_id": balance_id}))["list"]
    assert entry["request_id"] == generated


async def test_history_records_the_request_id_of_a_create(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    response = await api.post("balances.create", body, **{"x-request-id": "create-7"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "create-7"
    page = await api.ok("balances.history", {"balance_id": response.json()["balance"]["id"]})
    assert page["list"][0]["request_id"] == "create-7"


async def test_history_records_the_idempotency_key(api: Api) -> None:
    balance = await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    response = await api.post("balances.update", body, idempotency_key="idem-1")
    assert response.status_code == 200
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert [e["idempotency_key"] for e in page["list"]] == ["idem-1", None]
