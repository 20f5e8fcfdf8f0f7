"""balances.list: filters, statuses and keyset pagination."""

import base64
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem


async def list_ids(api: Api, **filters: object) -> list[str]:
    page = await api.ok("balances.list", filters)
    return [balance["id"] for balance in page["list"]]


async def test_list_filters_by_customer_feature_and_entity(api: Api) -> None:
    a = await api.create(feature_id="calls")
    b = await api.create(feature_id="seats", entity_id="seat_1")
    c = await api.create(customer_id="cus_2", feature_id="calls")
    assert set(await list_ids(api, customer_id="cus_1")) == {a["id"], b["id"]}
    assert set(await list_ids(api, feature_id="calls")) == {a["id"], c["id"]}
    assert await list_ids(api, entity_id="seat_1") == [b["id"]]
    assert len(await list_ids(api)) == 3


async def test_list_pages_through_every_balance_exactly_once(api: Api) -> None:
    created = {(await api.create(feature_id=f"f{n}"))["id"] for n in range(7)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        body = {"customer_id": "cus_1", "limit": 3}
        if cursor:
            body["start_cursor"] = cursor
        page = await api.ok("balances.list", body)
        pages += 1
        seen += [balance["id"] for balance in page["list"]]
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert pages == 3 and sorted(seen) == sorted(created) and len(seen) == 7


async def test_list_keeps_its_place_when_balances_are_added(api: Api) -> None:
    for n in range(4):
        await api.create(balance_id=f"b{n}", feature_id=f"f{n}")
    first = await api.ok("balances.list", {"customer_id": "cus_1", "limit": 2})
    await api.create(balance_id="a0", feature_id="new")  # sorts before the cursor
    rest = await api.ok(
        "balances.list", {"customer_id": "cus_1", "limit": 10, "start_cursor": first["next_cursor"]}
    )
    assert [b["id"] for b in rest["list"]] == ["b2", "b3"]


async def test_empty_start_cursor_means_the_first_page(api: Api) -> None:
    balance = await api.create()
    assert await list_ids(api, start_cursor="") == [balance["id"]]


DEEP_CURSOR = base64.urlsafe_b64encode(b"[" * 1500).decode()


@pytest.mark.parametrize("cursor", ["garbage!", "WzFd", "eyJhIjoxfQ", DEEP_CURSOR])
async def test_foreign_cursor_is_refused(api: Api, cursor: str) -> None:
    body = {"start_cursor": cursor}
    problem(await api.post("balances.list", body), 422, "invalid_cursor")


@pytest.mark.parametrize("limit", [0, 1001, -1])
async def test_limit_out_of_range_is_refused(api: Api, limit: int) -> None:
    problem(await api.post("balances.list", {"limit": limit}), 422, "invalid_request")


async def test_plan_filter_matches_nothing(api: Api) -> None:
    await api.create()
    assert await list_ids(api, plan_id="pro") == []
    assert len(await list_ids(api, plan_id=None)) == 1


async def test_statuses_select_active_expired_or_both(api: Api, clock: FrozenClock) -> None:
    active = await api.create(feature_id="a")
    expired = await api.create(feature_id="b", expires_at=to_epoch_ms(START) + 1000)
    clock.set(START + timedelta(minutes=1))
    assert await list_ids(api) == [active["id"]]
    assert await list_ids(api, statuses=["expired"]) == [expired["id"]]
    assert set(await list_ids(api, statuses=["active", "expired"])) == {active["id"], expired["id"]}


AUTUMN_BALANCE_FIELDS = {
    "id", "customer_id", "entity_id", "feature_id", "plan_id", "included_grant", "prepaid_grant",
    "remaining", "usage", "unlimited", "reset", "price", "expires_at", "status", "rollovers",
    "created_at", "source",
}  # fmt: skip


async def collect(api: Api, limit: int, **filters: object) -> list[dict[str, Any]]:
    """Every page, in order, as returned (list, has_more, next_cursor)."""
    pages: list[dict[str, Any]] = []
    body: dict[str, object] = {**filters, "limit": limit}
    while True:
        page = await api.ok("balances.list", body)
        pages.append(page)
        if not page["has_more"]:
            return pages
        body["start_cursor"] = page["next_cursor"]


async def test_list_items_carry_every_field_autumn_clients_require(api: Api) -> None:
    await api.create(included_grant=5, reset={"interval": "month"})
    await api.create(feature_id="seats", entity_id="seat_1")
    items = (await api.ok("balances.list", {"customer_id": "cus_1"}))["list"]
    assert len(items) == 2
    for item in items:
        assert set(item) >= AUTUMN_BALANCE_FIELDS
        assert item["plan_id"] is None and item["price"] is None and item["rollovers"] == []
    assert {item["source"] for item in items} == {"customer", "entity"}


async def test_list_answer_has_list_has_more_and_next_cursor(api: Api) -> None:
    await api.create()
    page = await api.ok("balances.list", {})
    assert set(page) >= {"list", "has_more", "next_cursor"}
    assert page["has_more"] is False and page["next_cursor"] is None


async def test_list_of_nothing_is_empty(api: Api) -> None:
    page = await api.ok("balances.list", {"customer_id": "nobody"})
    assert page == {"list": [], "has_more": False, "next_cursor": None}


async def test_list_filters_by_customer_and_entity_together(api: Api) -> None:
    await api.create(customer_id="cus_1", entity_id="seat_1", feature_id="a")
    wanted = await api.create(customer_id="cus_1", entity_id="seat_1", feature_id="b")
    await api.create(customer_id="cus_2", entity_id="seat_1", feature_id="b")
    await api.create(customer_id="cus_1", feature_id="b")
    ids = await list_ids(api, customer_id="cus_1", entity_id="seat_1", feature_id="b")
    assert ids == [wanted["id"]]


async def test_list_by_default_leaves_out_expired_balances(api: Api, clock: FrozenClock) -> None:
    active = await api.create(feature_id="a")
    await api.create(feature_id="b", expires_at=to_epoch_ms(START + timedelta(hours=1)))
    assert len(await list_ids(api)) == 2
    clock.set(START + timedelta(hours=2))
    assert await list_ids(api) == [active["id"]]
    assert await list_ids(api, statuses=["active"]) == [active["id"]]


async def test_expired_balances_are_listed_with_status_expired(
    api: Api, clock: FrozenClock
) -> None:
    expires_at = to_epoch_ms(START + timedelta(hours=1))
    await api.create(feature_id="a")
    expired = await api.create(feature_id="b", expires_at=expires_at)
    clock.set(START + timedelta(hours=1))  # expires_at itself is already past
    [item] = (await api.ok("balances.list", {"statuses": ["expired"]}))["list"]
    assert item["id"] == expired["id"] and item["status"] == "expired"


async def test_both_statuses_list_active_and_expired(api: Api, clock: FrozenClock) -> None:
    active = await api.create(feature_id="a")
    expired = await api.create(feature_id="b", expires_at=to_epoch_ms(START + timedelta(hours=1)))
    clock.set(START + timedelta(days=1))
    page = await api.ok("balances.list", {"statuses": ["expired", "active"]})
    statuses = {item["id"]: item["status"] for item in page["list"]}
    assert statuses == {active["id"]: "active", expired["id"]: "expired"}


async def test_seven_balances_in_pages_of_three(api: Api) -> None:
    created = [(await api.create(feature_id=f"f{n}"))["id"] for n in range(7)]
    pages = await collect(api, 3, customer_id="cus_1")
    assert [len(page["list"]) for page in pages] == [3, 3, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert all(isinstance(page["next_cursor"], str) for page in pages[:2])
    assert pages[-1]["next_cursor"] is None
    seen = [item["id"] for page in pages for item in page["list"]]
    assert len(seen) == len(set(seen)) == 7 and set(seen) == set(created)


async def test_pages_ending_exactly_at_the_limit_leave_no_empty_page(api: Api) -> None:
    for n in range(6):
        await api.create(feature_id=f"f{n}")
    pages = await collect(api, 3)
    assert [len(page["list"]) for page in pages] == [3, 3]
    assert pages[-1]["has_more"] is False and pages[-1]["next_cursor"] is None


async def test_page_order_is_stable_across_calls(api: Api) -> None:
    for n in range(5):
        await api.create(feature_id=f"f{n}", customer_id=f"cus_{n % 2}")
    first = await list_ids(api, limit=5)
    assert await list_ids(api, limit=5) == first
    paged = [item["id"] for page in await collect(api, 2) for item in page["list"]]
    assert paged == first


async def test_list_keeps_its_place_when_seen_balances_are_deleted(api: Api) -> None:
    for n in range(4):
        await api.create(balance_id=f"b{n}", feature_id=f"f{n}")
    first = await api.ok("balances.list", {"customer_id": "cus_1", "limit": 2})
    assert [b["id"] for b in first["list"]] == ["b0", "b1"]
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": "b0"})
    rest = await api.ok(
        "balances.list", {"customer_id": "cus_1", "limit": 2, "start_cursor": first["next_cursor"]}
    )
    assert [b["id"] for b in rest["list"]] == ["b2", "b3"] and rest["has_more"] is False


async def test_null_start_cursor_means_the_first_page(api: Api) -> None:
    balance = await api.create()
    assert await list_ids(api, start_cursor=None) == [balance["id"]]


async def test_garbage_cursor_is_invalid_cursor_with_problem_shape(api: Api) -> None:
    await api.create()
    error = problem(
        await api.post("balances.list", {"start_cursor": "not a cursor"}), 422, "invalid_cursor"
    )
    assert "start_cursor" in error["detail"]


@pytest.mark.parametrize("limit", [1, 1000])
async def test_limit_bounds_are_accepted(api: Api, limit: int) -> None:
    await api.create(feature_id="a")
    await api.create(feature_id="b")
    page = await api.ok("balances.list", {"limit": limit})
    assert len(page["list"]) == min(limit, 2) and page["has_more"] is (limit == 1)


@pytest.mark.parametrize("limit", [Decimal("2.5"), "10", True, None])
async def test_limit_that_is_not_a_whole_number_is_refused(api: Api, limit: object) -> None:
    error = problem(await api.post("balances.list", {"limit": limit}), 422, "invalid_request")
    assert ["limit"] in [e["loc"] for e in error["errors"]]


@pytest.mark.parametrize("statuses", [["deleted"], "active", [None]])
async def test_unknown_status_is_refused(api: Api, statuses: object) -> None:
    body = {"statuses": statuses}
    error = problem(await api.post("balances.list", body), 422, "invalid_request")
    assert error["errors"][0]["loc"][0] == "statuses"


async def test_plan_filter_matches_nothing_even_with_other_filters(api: Api) -> None:
    await api.create()
    page = await api.ok("balances.list", {"customer_id": "cus_1", "plan_id": "pro"})
    assert page == {"list": [], "has_more": False, "next_cursor": None}
