"""balances.list: filters, statuses and keyset pagination."""

import base64
from datetime import timedelta

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
