"""Rollovers under a controlled clock: what a reset carries over, how it is capped, spent,
reserved and expired, and that the ledger accounts for every unit of it."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from app.sweeper import Sweeper
from tests.conftest import START
from tests.helpers import Api, problem

FEB_15, MAR_15, APR_15 = (START.replace(month=m) for m in (2, 3, 4))
MONTHLY = {"included_grant": 100, "reset": {"interval": "month"}}


async def create(api: Api, entity_id: str | None = None, **rollover: Any) -> dict[str, Any]:
    policy = {"length": 1, "duration": "month", **rollover}
    return await api.create(**MONTHLY, entity_id=entity_id, rollover=policy)


async def shown(api: Api, entity_id: str | None = None) -> dict[str, Any]:
    page = await api.ok("balances.list", {"customer_id": "cus_1", "entity_id": entity_id})
    [balance] = page["list"]
    assert isinstance(balance, dict)
    return balance


async def feature(api: Api) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "required_balance": 0}
    balance: dict[str, Any] = (await api.ok("balances.check", body))["balance"]
    return balance


async def track(api: Api, value: int, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": value, **fields}
    result: dict[str, Any] = await api.ok("balances.track", body)
    return result


async def test_a_reset_carries_what_was_left_over(api: Api, clock: FrozenClock) -> None:
    await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    balance = await shown(api)
    assert balance["remaining"] == 100
    assert balance["rollovers"] == [
        {"granted": 40, "balance": 40, "expires_at": to_epoch_ms(MAR_15)}
    ]
    total = await feature(api)
    assert (total["granted"], total["remaining"], total["usage"]) == (140, 140, 0)


async def test_carry_overs_are_spent_before_the_balance_itself(
    api: Api, clock: FrozenClock
) -> None:
    balance = await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    result = await track(api, 30)
    assert result["balance"]["remaining"] == 110 and result["balance"]["usage"] == 30
    assert result["deductions"][0]["value"] == 30
    after = await shown(api)
    assert after["remaining"] == 100 and after["usage"] == 0
    assert after["rollovers"][0]["balance"] == 10 and after["rollovers"][0]["granted"] == 40
    kinds = api.ledger_kinds(balance["id"])
    assert kinds == ["create", "track", "reset", "rollover", "track"]
    assert api.rollover_ledger(balance["id"])[-1][1] == -30
    assert api.invariant_violations() == []


async def test_more_than_the_carry_overs_hold_goes_on_to_the_balance(
    api: Api, clock: FrozenClock
) -> None:
    await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await track(api, 50)
    after = await shown(api)
    assert after["remaining"] == 90 and after["rollovers"][0]["balance"] == 0


async def test_giving_back_does_not_refill_a_carry_over(api: Api, clock: FrozenClock) -> None:
    await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await track(api, 50)  # 40 from the carry-over, 10 from the balance
    await track(api, -50)
    after = await shown(api)
    assert after["remaining"] == 100 and after["rollovers"][0]["balance"] == 0


async def test_the_cap_trims_the_oldest_carry_over_first(api: Api, clock: FrozenClock) -> None:
    balance = await create(api, length=3, max=120)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(days=1))
    await track(api, 0)  # Feb 15 carried 40
    clock.set(MAR_15 + timedelta(hours=1))  # Mar 15 carries 100: 140 > 120, trim 20
    after = await shown(api)
    # Trimmed units were never spent: the trimmed carry-over was granted less, not used more.
    assert [(r["granted"], r["balance"]) for r in after["rollovers"]] == [(20, 20), (100, 100)]
    assert (await feature(api))["usage"] == 0
    await track(api, 1)  # persists what the read showed
    entries = api.rollover_ledger(balance["id"])[-3:]
    assert [(kind, delta) for kind, delta, _ in entries] == [
        ("rollover", Decimal(100)),
        ("rollover_trim", Decimal(-20)),
        ("track", Decimal(-1)),
    ]
    assert api.invariant_violations() == []


async def test_max_percentage_caps_at_a_share_of_the_grant(api: Api, clock: FrozenClock) -> None:
    await create(api, max_percentage=25)
    await track(api, 10)
    clock.set(FEB_15 + timedelta(hours=1))
    assert (await shown(api))["rollovers"][0]["balance"] == 25


async def test_a_carry_over_expires_after_its_length(api: Api, clock: FrozenClock) -> None:
    balance = await create(api)
    await track(api, 60)  # Feb 15 carries 40, until Mar 15
    clock.set(FEB_15 + timedelta(days=1))
    await track(api, 0)
    clock.set(MAR_15 + timedelta(hours=1))  # Mar 15 carries 100 (nothing used), until Apr 15
    after = await shown(api)
    assert after["rollovers"] == [
        {"granted": 100, "balance": 100, "expires_at": to_epoch_ms(APR_15)}
    ]
    await track(api, 1)
    kinds = api.ledger_kinds(balance["id"])
    assert kinds[-4:] == ["rollover_expire", "reset", "rollover", "track"]
    assert api.invariant_violations() == []


async def test_a_forever_carry_over_never_expires(api: Api, clock: FrozenClock) -> None:
    await create(api, duration="forever")
    await track(api, 60)
    clock.set(FEB_15 + timedelta(days=400))
    [carry_over] = (await shown(api))["rollovers"]
    assert carry_over == {"granted": 40, "balance": 40, "expires_at": 0}


async def test_a_fully_used_balance_carries_nothing(api: Api, clock: FrozenClock) -> None:
    balance = await create(api)
    await track(api, 100)
    clock.set(FEB_15 + timedelta(hours=1))
    await track(api, 1)
    assert (await shown(api))["rollovers"] == []
    assert "rollover" not in api.ledger_kinds(balance["id"])


async def test_each_entity_carries_over_its_own_balance(api: Api, clock: FrozenClock) -> None:
    for seat in ("seat_1", "seat_2"):
        await create(api, entity_id=seat)
    await track(api, 70, entity_id="seat_1")
    await track(api, 20, entity_id="seat_2")
    clock.set(FEB_15 + timedelta(hours=1))
    assert (await shown(api, "seat_1"))["rollovers"][0]["balance"] == 30
    assert (await shown(api, "seat_2"))["rollovers"][0]["balance"] == 80


async def test_the_sweeper_persists_the_carry_over(
    api: Api, clock: FrozenClock, sweeper: Sweeper
) -> None:
    balance = await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await sweeper.persist_due_resets()
    assert api.ledger_kinds(balance["id"])[-2:] == ["reset", "rollover"]
    assert (await shown(api))["rollovers"][0]["balance"] == 40
    assert api.invariant_violations() == []


async def test_a_lock_on_a_carry_over_is_given_back_to_it(api: Api, clock: FrozenClock) -> None:
    await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    lock = {"lock_id": "job_roll", "enabled": True}
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "required_balance": 30}
    await api.ok("balances.check", {**body, "lock": lock})
    assert (await shown(api))["rollovers"][0]["balance"] == 10
    release = {"customer_id": "cus_1", "lock_id": "job_roll", "action": "release"}
    await api.ok("balances.finalize", release)
    after = await shown(api)
    assert after["rollovers"][0]["balance"] == 40 and after["remaining"] == 100
    assert api.invariant_violations() == []


async def test_deleting_the_balance_closes_its_carry_overs(api: Api, clock: FrozenClock) -> None:
    balance = await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await track(api, 1)
    await api.ok("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"})
    assert api.rollover_ledger(balance["id"])[-1] == ("delete", Decimal(-39), Decimal(0))
    assert api.invariant_violations() == []


async def test_history_shows_what_the_rollovers_gained_and_hold(
    api: Api, clock: FrozenClock
) -> None:
    balance = await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await track(api, 5)
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    newest, carry = page["list"][0], page["list"][1]
    assert (carry["kind"], carry["rollover_delta"], carry["rollover_after"]) == ("rollover", 40, 40)
    assert (newest["kind"], newest["rollover_delta"], newest["rollover_after"]) == ("track", -5, 35)


@pytest.mark.parametrize(
    ("fields", "rollover"),
    [
        ({}, {"length": 1}),  # one_off: never resets
        ({"reset": {"interval": "one_off"}}, {"length": 1}),
        ({**MONTHLY, "unlimited": True}, {"length": 1}),
        (MONTHLY, {"length": 1, "max": 10, "max_percentage": 10}),
        (MONTHLY, {"length": 1, "max_percentage": 101}),
        (MONTHLY, {"length": 0, "duration": "month"}),
        (MONTHLY, {"length": 1, "duration": "week"}),
        (MONTHLY, {"length": 1, "max": -1}),
        ({"reset": {"interval": "minute"}}, {"length": 1}),  # 43,834 carry-overs at once
        ({"reset": {"interval": "hour"}}, {"length": 2}),  # over 1000: at most 1 month
        ({"reset": {"interval": "day", "interval_count": 2}}, {"length": 33}),
    ],
)
async def test_an_impossible_rollover_is_refused_and_creates_nothing(
    api: Api, fields: dict[str, Any], rollover: dict[str, Any]
) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields, "rollover": rollover}
    problem(await api.post("balances.create", body), 422, "invalid_request")
    assert api.count("balances") == 0


async def test_a_balance_that_expires_before_its_first_reset_cannot_roll_over(api: Api) -> None:
    body = {
        "customer_id": "cus_1",
        "feature_id": "api_calls",
        **MONTHLY,
        "expires_at": to_epoch_ms(START + timedelta(days=10)),
        "rollover": {"length": 1},
    }
    error = problem(await api.post("balances.create", body), 422, "invalid_request")
    assert "first reset" in error["detail"]
    assert api.count("balances") == 0


async def test_a_carry_over_that_would_expire_after_9999_never_expires(
    api: Api, clock: FrozenClock
) -> None:
    last_reset = START.replace(year=9999, month=11)
    await api.create(
        **MONTHLY,
        next_reset_at=to_epoch_ms(last_reset),
        rollover={"length": 1000, "duration": "month"},
    )
    clock.set(last_reset + timedelta(days=1))
    result = await track(api, 1)
    assert result["balance"]["rollovers"] == [{"granted": 100, "balance": 99, "expires_at": 0}]


async def test_forever_carry_overs_are_kept_as_one(api: Api, clock: FrozenClock) -> None:
    await create(api, duration="forever")
    await track(api, 60)
    clock.set(FEB_15 + timedelta(days=1))
    await track(api, 10)  # Feb 15 carried 40; 10 of it spent
    clock.set(MAR_15 + timedelta(days=1))
    [carry_over] = (await shown(api))["rollovers"]  # Mar 15 carried 100 into the same one
    assert carry_over == {"granted": 140, "balance": 130, "expires_at": 0}


def lock_body(amount: int, lock_id: str, expires_at: datetime | None = None) -> dict[str, Any]:
    lock: dict[str, Any] = {"lock_id": lock_id, "enabled": True}
    if expires_at is not None:
        lock["expires_at"] = to_epoch_ms(expires_at)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "required_balance": amount}
    return {**body, "lock": lock}


async def test_reads_show_an_expired_lock_given_back_to_its_carry_over(
    api: Api, clock: FrozenClock
) -> None:
    await create(api)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await api.ok("balances.check", lock_body(30, "job_r", FEB_15 + timedelta(hours=2)))
    clock.set(FEB_15 + timedelta(hours=3))  # the lock ran out; nothing written since
    assert (await shown(api))["rollovers"][0]["balance"] == 40
    assert (await feature(api))["remaining"] == 140


async def test_a_lock_on_a_spent_out_carry_over_is_given_back_after_a_reset(
    api: Api, clock: FrozenClock
) -> None:
    await create(api, length=3)
    await track(api, 60)
    clock.set(FEB_15 + timedelta(hours=1))
    await api.ok("balances.check", lock_body(40, "job_s"))  # all of the carry-over
    clock.set(MAR_15 + timedelta(hours=1))
    await track(api, 0)  # the reset keeps the spent-out carry-over: the lock still holds it
    release = {"customer_id": "cus_1", "lock_id": "job_s", "action": "release"}
    await api.ok("balances.finalize", release)
    carried = {r["granted"]: r["balance"] for r in (await shown(api))["rollovers"]}
    assert carried == {40: 40, 100: 100}
    assert api.invariant_violations() == []


async def test_a_lock_that_ran_out_before_a_reset_counts_as_unused_there(
    api: Api, clock: FrozenClock
) -> None:
    await create(api)
    clock.set(FEB_15 - timedelta(hours=3))
    await api.ok("balances.check", lock_body(30, "job_e", FEB_15 - timedelta(hours=1)))
    clock.set(FEB_15 + timedelta(hours=1))  # ran out before Feb 15, released after it
    assert (await shown(api))["rollovers"][0]["balance"] == 100
    await track(api, 1)
    assert (await shown(api))["rollovers"][0]["balance"] == 99
    assert api.invariant_violations() == []


async def test_minute_resets_may_carry_over_forever(api: Api) -> None:
    rollover = {"length": 1, "duration": "forever"}
    created = await api.create(included_grant=5, reset={"interval": "minute"}, rollover=rollover)
    assert created["rollovers"] == []
