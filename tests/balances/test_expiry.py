"""Expiry: after expires_at a balance stops counting but can still be found by its id."""

import asyncio
from datetime import timedelta

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem

IN_ONE_HOUR = to_epoch_ms(START + timedelta(hours=1))


async def test_expired_balance_has_status_expired_and_is_not_listed_by_default(
    api: Api, clock: FrozenClock
) -> None:
    await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    clock.set(START + timedelta(hours=2))
    assert (await api.ok("balances.list", {"customer_id": "cus_1"}))["list"] == []
    page = await api.ok("balances.list", {"customer_id": "cus_1", "statuses": ["expired"]})
    assert [b["status"] for b in page["list"]] == ["expired"]


async def test_balance_is_active_until_its_expiry(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    assert balance["status"] == "active"
    clock.set(START + timedelta(minutes=59))
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert [b["status"] for b in page["list"]] == ["active"]


async def test_expired_balance_is_not_targeted_by_key(api: Api, clock: FrozenClock) -> None:
    await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    clock.set(START + timedelta(hours=2))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    problem(await api.post("balances.update", body), 404, "balance_not_found")


async def test_expired_balance_is_updated_by_balance_id(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    clock.set(START + timedelta(hours=2))
    later = to_epoch_ms(START + timedelta(days=1))
    after = await api.update(balance_id=balance["id"], expires_at=later)
    assert after["status"] == "active" and after["expires_at"] == later


async def test_expired_balance_is_deleted_by_balance_id(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    clock.set(START + timedelta(hours=2))
    body = {"customer_id": "cus_1", "balance_id": balance["id"]}
    assert (await api.ok("balances.delete", body))["success"] is True
    assert api.ledger_kinds(balance["id"]) == ["create", "delete"]
    assert api.invariant_violations() == []


async def test_setting_expires_at_in_the_past_is_refused(api: Api) -> None:
    """A past expiry is a mistake (often seconds sent as milliseconds): 422, nothing changes.
    To end a balance now, delete it."""
    balance = await api.create(included_grant=5)
    body: dict[str, object] = {"customer_id": "cus_1", "feature_id": "api_calls"}
    body["expires_at"] = to_epoch_ms(START - timedelta(seconds=1))
    problem(await api.post("balances.update", body), 422, "invalid_request")
    assert api.ledger_kinds(balance["id"]) == ["create"]
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert [(b["status"], b["expires_at"]) for b in page["list"]] == [("active", None)]


async def test_creating_over_an_expired_balance_retires_it(api: Api, clock: FrozenClock) -> None:
    old = await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    await api.update(usage=2)
    clock.set(START + timedelta(hours=2))
    new = await api.create(included_grant=9)
    assert new["id"] != old["id"] and new["remaining"] == 9 and new["status"] == "active"
    assert api.ledger_kinds(old["id"]) == ["create", "set_usage", "delete"]
    assert api.count("balances") == 1
    assert api.invariant_violations() == []


async def test_a_live_balance_still_holds_its_key(api: Api, clock: FrozenClock) -> None:
    live = await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    clock.set(START + timedelta(minutes=59))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 9}
    error = problem(await api.post("balances.create", body), 409, "balance_exists")
    assert error["balance_id"] == live["id"]


async def test_concurrent_creates_over_an_expired_balance_make_one(
    api: Api, clock: FrozenClock
) -> None:
    await api.create(included_grant=5, expires_at=IN_ONE_HOUR)
    clock.set(START + timedelta(hours=2))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 9}
    responses = await asyncio.gather(*(api.post("balances.create", body) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 7
    assert api.count("balances") == 1
    assert api.invariant_violations() == []
