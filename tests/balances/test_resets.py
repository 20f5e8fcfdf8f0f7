"""Interval resets under a controlled clock: reads show them, writes persist them exactly once."""

import asyncio
from datetime import timedelta
from typing import Any

import psycopg

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from app.sweeper import Sweeper
from tests.conftest import START
from tests.helpers import Api

MONTHLY = {"included_grant": 100, "reset": {"interval": "month"}}


async def _list_one(api: Api) -> dict[str, Any]:
    page = await api.ok("balances.list", {"customer_id": "cus_1"})
    assert len(page["list"]) == 1
    balance: dict[str, Any] = page["list"][0]
    return balance


async def test_read_after_the_boundary_shows_the_reset_without_writing(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(usage=60)
    clock.set(START + timedelta(days=32))
    shown = await _list_one(api)
    assert shown["remaining"] == 100 and shown["usage"] == 0
    assert shown["next_reset_at"] == to_epoch_ms(START.replace(month=3))
    assert api.ledger_kinds(balance["id"]) == ["create", "set_usage"]


async def test_write_after_the_boundary_persists_one_reset_then_the_change(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(usage=60)
    clock.set(START + timedelta(days=32))
    after = await api.update(add_to_balance=5)
    assert after["remaining"] == 105 and after["usage"] == 0
    ledger = api.ledger(balance["id"])
    assert [e["kind"] for e in ledger] == ["create", "set_usage", "reset", "add"]
    reset = ledger[2]
    assert reset["remaining_delta"] == 60 and reset["usage_delta"] == -60
    assert api.invariant_violations() == []


async def test_three_missed_periods_make_one_reset(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(add_to_balance=-30)
    clock.set(START + timedelta(days=100))  # Apr 25: boundaries Feb 15, Mar 15, Apr 15 missed
    after = await api.update(usage=1)
    assert after["next_reset_at"] == to_epoch_ms(START.replace(month=5))
    assert api.ledger_kinds(balance["id"]).count("reset") == 1
    assert after["remaining"] == 99


async def test_reset_exactly_at_the_boundary_is_due(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(usage=10)
    clock.set(START.replace(month=2))
    after = await api.update(add_to_balance=0)
    assert after["usage"] == 0
    assert api.ledger_kinds(balance["id"]).count("reset") == 1


async def test_one_off_balance_never_resets(api: Api, clock: FrozenClock) -> None:
    balance = await api.create(included_grant=10)
    await api.update(usage=4)
    clock.set(START + timedelta(days=3650))
    after = await api.update(add_to_balance=0)
    assert after["usage"] == 4 and after["reset"] is None
    assert "reset" not in api.ledger_kinds(balance["id"])


async def test_concurrent_writes_at_the_boundary_reset_exactly_once(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(usage=100)
    clock.set(START + timedelta(days=31))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    responses = await asyncio.gather(*(api.post("balances.update", body) for _ in range(20)))
    assert all(r.status_code == 200 for r in responses)
    kinds = api.ledger_kinds(balance["id"])
    assert kinds.count("reset") == 1 and kinds.count("add") == 20
    assert (await _list_one(api))["remaining"] == 120
    assert api.invariant_violations() == []


async def test_anchor_on_the_31st_survives_short_months(api: Api, clock: FrozenClock) -> None:
    jan_31 = START.replace(day=31)
    clock.set(jan_31 - timedelta(days=1))
    await api.create(
        included_grant=1, reset={"interval": "month"}, next_reset_at=to_epoch_ms(jan_31)
    )
    clock.set(jan_31.replace(month=3, day=1))  # past Jan 31 and Feb 28
    after = await api.update(add_to_balance=0)
    assert after["next_reset_at"] == to_epoch_ms(jan_31.replace(month=3))


async def test_sweeper_persists_due_resets_in_batches(
    api: Api, clock: FrozenClock, sweeper: Sweeper
) -> None:
    ids = []
    for n in range(5):
        balance = await api.create(customer_id=f"cus_{n}", **MONTHLY)
        await api.ok(
            "balances.update",
            {
                "balance_id": balance["id"],
                "customer_id": f"cus_{n}",
                "feature_id": "api_calls",
                "usage": 7,
            },
        )
        ids.append(balance["id"])
    clock.set(START + timedelta(days=40))
    assert await sweeper.sweep_once() == 5
    assert await sweeper.sweep_once() == 0
    for balance_id in ids:
        assert api.ledger_kinds(balance_id) == ["create", "set_usage", "reset"]
    assert api.invariant_violations() == []


async def test_sweeper_skips_a_balance_a_request_holds(
    api: Api, clock: FrozenClock, sweeper: Sweeper, database_url: str
) -> None:
    held = await api.create(customer_id="cus_held", **MONTHLY)
    await api.create(customer_id="cus_free", **MONTHLY)
    clock.set(START + timedelta(days=40))
    with psycopg.connect(database_url) as locker:
        locker.execute("SELECT 1 FROM balances WHERE id = %s FOR UPDATE", (held["id"],))
        assert await asyncio.wait_for(sweeper.sweep_once(), timeout=10) == 1
        locker.rollback()
    assert await sweeper.sweep_once() == 1
    assert api.ledger_kinds(held["id"]) == ["create", "reset"]


async def test_sweeper_racing_a_request_resets_once(
    api: Api, clock: FrozenClock, sweeper: Sweeper
) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(usage=50)
    clock.set(START + timedelta(days=40))
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    _, updates = await asyncio.gather(
        sweeper.sweep_once(), asyncio.gather(*(api.post("balances.update", body) for _ in range(5)))
    )
    assert all(r.status_code == 200 for r in updates)
    assert api.ledger_kinds(balance["id"]).count("reset") == 1
    assert api.invariant_violations() == []


async def test_history_shows_a_due_reset_as_pending_without_writing(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(**MONTHLY)
    await api.update(usage=60)
    clock.set(START + timedelta(days=32))
    history = await api.ok("balances.history", {"balance_id": balance["id"]})
    first = history["list"][0]
    assert first["pending"] is True and first["id"] is None and first["kind"] == "reset"
    assert first["remaining_delta"] == 60 and first["remaining_after"] == 100
    assert [e["kind"] for e in history["list"][1:]] == ["set_usage", "create"]
    assert api.ledger_kinds(balance["id"]) == ["create", "set_usage"]


async def test_history_shows_no_pending_entry_once_the_reset_is_persisted(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(**MONTHLY)
    clock.set(START + timedelta(days=32))
    await api.update(add_to_balance=1)
    history = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert [e["pending"] for e in history["list"]] == [False, False, False]
    assert [e["kind"] for e in history["list"]] == ["add", "reset", "create"]
