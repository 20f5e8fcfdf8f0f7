"""Concurrent tracks: the feature's balances are locked together, so totals never overshoot."""

import asyncio
from decimal import Decimal

from tests.helpers import Api


async def _track_many(api: Api, count: int, **fields: object) -> list[Decimal]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1, **fields}
    responses = await asyncio.gather(*(api.post("balances.track", body) for _ in range(count)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    return [Decimal(str(r.json()["deducted"])) for r in responses]


async def test_hundred_capped_tracks_against_sixty_deduct_exactly_sixty(api: Api) -> None:
    await api.create(included_grant=60)
    deducted = await _track_many(api, 100)
    assert deducted.count(Decimal(1)) == 60 and deducted.count(Decimal(0)) == 40
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 0
    assert api.invariant_violations() == []


async def test_hundred_overflowing_tracks_against_sixty_end_at_minus_forty(api: Api) -> None:
    await api.create(included_grant=60)
    deducted = await _track_many(api, 100, overage_behavior="overflow")
    assert sum(deducted) == 100
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == -40


async def test_concurrent_tracks_over_two_balances_do_not_deadlock(api: Api) -> None:
    await api.create(included_grant=50, reset={"interval": "day"})
    await api.create(included_grant=50)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 3}
    give_back = {**body, "value": -2}
    requests = [api.post("balances.track", body if n % 3 else give_back) for n in range(60)]
    responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=60)
    assert all(r.status_code == 200 for r in responses)
    assert api.invariant_violations() == []


async def test_concurrent_send_event_checks_never_overshoot(api: Api) -> None:
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "required_balance": 3}
    body["send_event"] = True
    responses = await asyncio.gather(*(api.post("balances.check", body) for _ in range(10)))
    assert [r.json()["allowed"] for r in responses].count(True) == 3
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 1
