"""Reservations: check with a lock, then confirm, release, or let it expire."""

import asyncio
from datetime import timedelta
from typing import Any

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from app.sweeper import Sweeper
from tests.conftest import START
from tests.helpers import Api, problem


async def reserve(api: Api, amount: Any, lock_id: str = "job_1", **lock: Any) -> dict[str, Any]:
    body = {
        "customer_id": "cus_1",
        "feature_id": "api_calls",
        "required_balance": amount,
        "lock": {"lock_id": lock_id, "enabled": True, **lock},
    }
    result: dict[str, Any] = await api.ok("balances.check", body)
    return result


async def finalize(api: Api, action: str, lock_id: str = "job_1", **fields: Any) -> Any:
    body = {"customer_id": "cus_1", "lock_id": lock_id, "action": action, **fields}
    return await api.post("balances.finalize", body)


async def test_lock_reserves_the_amount_at_once(api: Api) -> None:
    balance = await api.create(included_grant=10)
    result = await reserve(api, 4)
    assert result["allowed"] is True and result["lock_id"] == "job_1" and result["reserved"] == 4
    assert result["balance"]["remaining"] == 6
    assert api.ledger_kinds(balance["id"]) == ["create", "lock"]


async def test_lock_that_does_not_fit_reserves_nothing(api: Api) -> None:
    balance = await api.create(included_grant=3)
    result = await reserve(api, 4)
    assert result["allowed"] is False and result["lock_id"] is None
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_lock_with_cap_reserves_what_fits(api: Api) -> None:
    await api.create(included_grant=3)
    result = await reserve(api, 4, overage_behavior="cap")
    assert result["allowed"] is True and result["reserved"] == 3


async def test_confirm_keeps_the_deduction(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await reserve(api, 4)
    response = await finalize(api, "confirm")
    assert response.status_code == 200 and response.json() == {"success": True}
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "confirm"]
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 6


async def test_confirm_with_a_lower_override_gives_the_difference_back(api: Api) -> None:
    await api.create(included_grant=10)
    await reserve(api, 4)
    assert (await finalize(api, "confirm", override_value=1)).status_code == 200
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 9
    assert api.invariant_violations() == []


async def test_confirm_with_a_higher_override_deducts_more(api: Api) -> None:
    await api.create(included_grant=10)
    await reserve(api, 4)
    assert (await finalize(api, "confirm", override_value=7)).status_code == 200
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 3


async def test_release_gives_everything_back(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await reserve(api, 4)
    assert (await finalize(api, "release")).status_code == 200
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "release"]
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 10


async def test_release_after_confirm_is_refused(api: Api) -> None:
    await api.create(included_grant=10)
    await reserve(api, 4)
    await finalize(api, "confirm", override_value=2)
    problem(await finalize(api, "release"), 409, "lock_not_active")


async def test_finalizing_an_unknown_lock_is_not_found(api: Api) -> None:
    problem(await finalize(api, "confirm", lock_id="nope"), 404, "lock_not_found")


async def test_a_retried_finalize_of_an_unknown_lock_replays_its_404(api: Api) -> None:
    body = {"customer_id": "cus_1", "lock_id": "nope", "action": "confirm"}
    first = await api.post("balances.finalize", body, idempotency_key="fin-404")
    again = await api.post("balances.finalize", body, idempotency_key="fin-404")
    problem(first, 404, "lock_not_found")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


async def test_reusing_a_lock_id_is_refused(api: Api) -> None:
    await api.create(included_grant=10)
    await reserve(api, 1)
    body = {
        "customer_id": "cus_1",
        "feature_id": "api_calls",
        "lock": {"lock_id": "job_1", "enabled": True},
    }
    problem(await api.post("balances.check", body), 409, "lock_exists")


async def test_expired_lock_is_released_by_the_next_track(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(included_grant=10)
    await reserve(api, 4, expires_at=to_epoch_ms(START + timedelta(minutes=5)))
    clock.set(START + timedelta(minutes=6))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
    result = await api.ok("balances.track", body)
    assert result["balance"]["remaining"] == 9
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "release", "track"]


async def test_finalizing_an_expired_lock_releases_it_and_answers_409(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(included_grant=10)
    await reserve(api, 4, expires_at=to_epoch_ms(START + timedelta(minutes=5)))
    clock.set(START + timedelta(minutes=6))
    problem(await finalize(api, "confirm"), 409, "lock_not_active")
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "release"]
    problem(await finalize(api, "confirm"), 409, "lock_not_active")


async def test_release_after_the_schedule_moved_still_gives_back(api: Api) -> None:
    balance = await api.create(included_grant=10, reset={"interval": "day"})
    await reserve(api, 4)
    await api.update(balance_id=balance["id"], next_reset_at=to_epoch_ms(START) + 3_600_000)
    assert (await finalize(api, "release")).status_code == 200
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 10


async def test_lock_taken_before_a_reset_is_not_given_back_into_the_new_period(
    api: Api, clock: FrozenClock
) -> None:
    await api.create(included_grant=10, reset={"interval": "day"})
    await reserve(api, 4)
    clock.set(START + timedelta(days=1, minutes=1))
    assert (await finalize(api, "release")).status_code == 200
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 10 and page["list"][0]["usage"] == 0


async def test_sweeper_releases_expired_locks(
    api: Api, clock: FrozenClock, sweeper: Sweeper
) -> None:
    balance = await api.create(included_grant=10)
    for n in range(3):
        await reserve(api, 1, lock_id=f"job_{n}", expires_at=to_epoch_ms(START) + 1000)
    clock.set(START + timedelta(minutes=1))
    assert await sweeper.expire_locks() == 3
    assert api.ledger_kinds(balance["id"]).count("release") == 3
    assert await sweeper.expire_locks() == 0


async def test_lock_expiry_releases_once_when_sweeper_and_requests_race(
    api: Api, clock: FrozenClock, sweeper: Sweeper
) -> None:
    balance = await api.create(included_grant=10)
    await reserve(api, 4, expires_at=to_epoch_ms(START) + 1000)
    clock.set(START + timedelta(minutes=1))
    track = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
    results = await asyncio.gather(
        sweeper.expire_locks(),
        finalize(api, "release"),
        *(api.post("balances.track", track) for _ in range(3)),
    )
    assert results[1].status_code == 409
    assert api.ledger_kinds(balance["id"]).count("release") == 1
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert page["list"][0]["remaining"] == 7
    assert api.invariant_violations() == []


async def test_finalize_without_customer_finds_the_lock_by_id(api: Api) -> None:
    await api.create(included_grant=10)
    await reserve(api, 4)
    body = {"lock_id": "job_1", "action": "release"}
    assert (await api.ok("balances.finalize", body)) == {"success": True}


async def test_list_shows_an_expired_lock_released_without_writing(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(included_grant=10)
    await api.create(feature_id="other", included_grant=5)
    await reserve(api, 4, expires_at=to_epoch_ms(START + timedelta(minutes=5)))
    page = await api.ok("balances.list", {"customer_id": "cus_1", "feature_id": "api_calls"})
    assert page["list"][0]["remaining"] == 6
    clock.set(START + timedelta(minutes=5))  # at expires_at, it holds nothing
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    shown = {b["feature_id"]: (b["remaining"], b["usage"], b["version"]) for b in page["list"]}
    assert shown == {"api_calls": (10, 0, 2), "other": (5, 0, 1)}
    assert api.ledger_kinds(balance["id"]) == ["create", "lock"]  # nothing written
    assert (await reserve(api, 10, lock_id="job_2"))["reserved"] == 10  # the write agrees
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "release", "lock"]


async def test_reads_never_give_an_expired_lock_back_into_a_later_period(
    api: Api, clock: FrozenClock
) -> None:
    daily = await api.create(
        included_grant=10,
        reset={"interval": "day"},
        next_reset_at=to_epoch_ms(START + timedelta(hours=1)),
    )
    await reserve(api, 4, expires_at=to_epoch_ms(START + timedelta(hours=2)))
    clock.set(START + timedelta(hours=1, minutes=1))  # the reset is persisted by this track
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 6}
    await api.ok("balances.track", body)
    clock.set(START + timedelta(hours=2, minutes=1))
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert (page["list"][0]["remaining"], page["list"][0]["usage"]) == (4, 6)
    check = {"customer_id": "cus_1", "feature_id": "api_calls", "required_balance": 5}
    assert (await api.ok("balances.check", check))["allowed"] is False
    assert api.ledger_kinds(daily["id"]) == ["create", "lock", "reset", "track"]


async def test_a_finalize_of_an_entitys_lock_gives_back_to_the_pool(api: Api) -> None:
    customer_level = await api.create(included_grant=10)
    own = await api.create(included_grant=1, entity_id="seat_1")
    body = {
        "customer_id": "cus_1",
        "feature_id": "api_calls",
        "entity_id": "seat_1",
        "required_balance": 5,
        "lock": {"lock_id": "job_1", "enabled": True},
    }
    assert (await api.ok("balances.check", body))["reserved"] == 5
    assert (await finalize(api, "release")).status_code == 200
    assert api.ledger_kinds(own["id"]) == ["create", "lock", "release"]
    assert api.ledger_kinds(customer_level["id"]) == ["create", "lock", "release"]
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert sorted(b["remaining"] for b in page["list"]) == [1, 10]
    assert api.invariant_violations() == []
