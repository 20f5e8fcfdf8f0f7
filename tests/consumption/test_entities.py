"""An entity draws on its own balances first, then on its customer's (Autumn's fallback pool)."""

import asyncio
from datetime import timedelta
from typing import Any

from autumn_sdk import Autumn

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from app.sweeper import Sweeper
from tests.conftest import START
from tests.helpers import Api, problem


async def track(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
    result: dict[str, Any] = await api.ok("balances.track", body)
    return result


async def check(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
    result: dict[str, Any] = await api.ok("balances.check", body)
    return result


def by_id(result: dict[str, Any]) -> dict[str, Any]:
    return {d["balance_id"]: d["value"] for d in result["deductions"]}


async def pool(api: Api) -> dict[str, Any]:
    page = await api.ok("balances.list", {"customer_id": "cus_1", "feature_id": "api_calls"})
    balances: list[dict[str, Any]] = [b for b in page["list"] if b["entity_id"] is None]
    [balance] = balances
    return balance


async def test_an_entity_without_balances_uses_its_customers_pool(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    result = await track(api, entity_id="e1", value=3)
    assert by_id(result) == {customer_level["id"]: 3}
    assert result["entity_id"] == "e1" and result["balance"]["remaining"] == 7
    assert (await pool(api))["remaining"] == 7
    assert (await check(api, entity_id="e1", required_balance=5))["allowed"] is True
    assert (await check(api, entity_id="e1", required_balance=8))["allowed"] is False
    assert api.ledger_kinds(customer_level["id"]) == ["create", "track"]


async def test_an_entity_uses_its_own_balances_first_then_the_pool(api: Api) -> None:
    customer_level = await api.create(included_grant=10, reset={"interval": "day"})
    own = await api.create(included_grant=2, entity_id="e1")  # one_off: last, were it one list
    result = await track(api, entity_id="e1", value=5)
    assert list(by_id(result).items()) == [(own["id"], 2), (customer_level["id"], 3)]
    checked = await check(api, entity_id="e1", required_balance=7)
    assert checked["allowed"] is True and checked["balance"]["remaining"] == 7
    assert [b["id"] for b in checked["balance"]["breakdown"]] == [own["id"], customer_level["id"]]
    assert api.invariant_violations() == []


async def test_an_unlimited_customer_balance_leads_even_for_an_entity(api: Api) -> None:
    sink = await api.create(unlimited=True)
    own = await api.create(included_grant=5, entity_id="e1")
    result = await track(api, entity_id="e1", value=3)
    assert by_id(result) == {sink["id"]: 3}  # as in Autumn: the sink takes it all
    assert api.ledger_kinds(own["id"]) == ["create"]


async def test_an_entity_gives_back_to_the_pool_first(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    own = await api.create(included_grant=2, entity_id="e1")
    await track(api, entity_id="e1", value=5)
    result = await track(api, entity_id="e1", value=-4)
    assert list(by_id(result).items()) == [(customer_level["id"], -3), (own["id"], -1)]


async def test_an_entity_never_uses_another_entitys_balances(api: Api) -> None:
    other = await api.create(included_grant=10, entity_id="e2")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "entity_id": "e1", "value": 1}
    problem(await api.post("balances.track", body), 404, "balance_not_found")
    assert (await check(api, entity_id="e1"))["allowed"] is False
    customer_level = await api.create(included_grant=1)
    assert by_id(await track(api, entity_id="e1", value=1)) == {customer_level["id"]: 1}
    assert api.ledger_kinds(other["id"]) == ["create"]


async def test_the_customer_level_never_uses_an_entitys_balances(api: Api) -> None:
    await api.create(included_grant=10, entity_id="e1")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
    problem(await api.post("balances.track", body), 404, "balance_not_found")


async def test_a_send_event_check_of_an_entity_deducts_from_the_pool(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    result = await check(api, entity_id="e1", required_balance=4, send_event=True)
    assert result["allowed"] is True and result["balance"]["remaining"] == 6
    refused = await check(api, entity_id="e1", required_balance=7, send_event=True)
    assert refused["allowed"] is False
    assert api.ledger_kinds(customer_level["id"]) == ["create", "track"]


async def test_an_entitys_reservation_holds_the_pool_until_finalized(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    lock = {"lock_id": "job_1", "enabled": True}
    result = await check(api, entity_id="e1", required_balance=4, lock=lock)
    assert result["allowed"] is True and result["reserved"] == 4
    assert (await pool(api))["remaining"] == 6
    body = {"customer_id": "cus_1", "lock_id": "job_1", "action": "confirm", "override_value": 1}
    assert await api.ok("balances.finalize", body) == {"success": True}
    assert (await pool(api))["remaining"] == 9
    assert api.ledger_kinds(customer_level["id"]) == ["create", "lock", "confirm"]
    assert api.invariant_violations() == []


async def test_an_expired_entity_lock_on_the_pool_is_released_by_a_customer_level_track(
    api: Api, clock: FrozenClock
) -> None:
    customer_level = await api.create(included_grant=10)
    lock = {"lock_id": "job_1", "enabled": True, "expires_at": to_epoch_ms(START) + 60_000}
    await check(api, entity_id="e1", required_balance=4, lock=lock)
    clock.set(START + timedelta(minutes=2))
    assert (await pool(api))["remaining"] == 10  # reads: released
    result = await track(api, value=10, overage_behavior="reject")
    assert result["balance"]["remaining"] == 0
    assert api.ledger_kinds(customer_level["id"]) == ["create", "lock", "release", "track"]


async def test_an_expired_entity_lock_on_both_scopes_waits_for_one_that_holds_both(
    api: Api, clock: FrozenClock, sweeper: Sweeper
) -> None:
    customer_level = await api.create(included_grant=10)
    own = await api.create(included_grant=2, entity_id="e1")
    lock = {"lock_id": "job_1", "enabled": True, "expires_at": to_epoch_ms(START) + 60_000}
    await check(api, entity_id="e1", required_balance=5, lock=lock)
    clock.set(START + timedelta(minutes=2))
    # A customer-level track cannot give back the entity's part: it leaves the lock be.
    await track(api, value=1)
    assert api.ledger_kinds(own["id"]) == ["create", "lock"]
    assert await sweeper.expire_locks() == 1
    assert api.ledger_kinds(own["id"]) == ["create", "lock", "release"]
    assert api.ledger_kinds(customer_level["id"]) == ["create", "lock", "track", "release"]
    assert (await pool(api))["remaining"] == 9
    assert api.invariant_violations() == []


async def test_concurrent_entity_and_customer_tracks_share_the_pool_exactly(api: Api) -> None:
    await api.create(included_grant=60)
    bodies = [
        {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1, "entity_id": f"e{n % 3}"}
        if n % 2
        else {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
        for n in range(100)
    ]
    responses = await asyncio.gather(*(api.post("balances.track", body) for body in bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    assert sum(r.json()["deducted"] for r in responses) == 60
    assert (await pool(api))["remaining"] == 0
    assert api.invariant_violations() == []


def test_sdk_entity_falls_back_to_the_customer_pool(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=10)
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", entity_id="e1", value=3)
    assert tracked.value == 3 and tracked.balance is not None
    assert tracked.balance.remaining == 7
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.entity_id is None and balance.remaining == 7
    check = autumn.check(
        customer_id=customer, feature_id="api_calls", entity_id="e1", required_balance=5
    )
    assert check.allowed is True and check.balance is not None and check.balance.remaining == 7
