"""Concurrency: many requests at once, each on its own pooled connection, all committing for real.

The row lock must serialize writers of one balance (no lost update, no double apply) and must not
make writers of different balances wait on each other.
"""

import asyncio
import random
from decimal import Decimal

import psycopg

from tests.helpers import Api


async def test_fifty_concurrent_adds_all_apply(api: Api) -> None:
    balance = await api.create(included_grant=0)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    responses = await asyncio.gather(*(api.post("balances.update", body) for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    final = await api.update(add_to_balance=0)
    assert final["remaining"] == 50
    assert api.ledger_kinds(balance["id"]).count("add") == 51
    # Each request saw the previous one's result: the versions are a permutation, never repeated.
    versions = sorted(r.json()["balance"]["version"] for r in responses)
    assert versions == list(range(2, 52))


async def test_interleaved_sets_and_adds_keep_the_ledger_invariant(api: Api) -> None:
    balance = await api.create(included_grant=100)
    rng = random.Random(7)
    changes = [
        {"remaining": rng.randint(-50, 500)}
        if rng.random() < 0.3
        else {"add_to_balance": Decimal(rng.randint(-999, 999)) / 100}
        for _ in range(40)
    ]
    base = {"customer_id": "cus_1", "feature_id": "api_calls"}
    responses = await asyncio.gather(
        *(api.post("balances.update", {**base, **change}) for change in changes)
    )
    assert all(r.status_code == 200 for r in responses)
    assert api.invariant_violations() == []
    ledger = api.ledger(balance["id"])
    assert len(ledger) == 41
    final = await api.update(add_to_balance=0)
    assert final["remaining"] == ledger[-1]["remaining_after"]


async def test_concurrent_creates_of_one_key_make_one_balance(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 5}
    responses = await asyncio.gather(*(api.post("balances.create", body) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 9
    assert all(r.json()["code"] == "balance_exists" for r in responses if r.status_code == 409)
    assert api.count("balances") == 1
    assert api.count("balance_ledger") == 1


async def test_update_racing_delete_either_applies_first_or_finds_nothing(api: Api) -> None:
    balance = await api.create(included_grant=10)
    base = {"customer_id": "cus_1", "feature_id": "api_calls"}
    updates = [api.post("balances.update", {**base, "add_to_balance": 1}) for _ in range(10)]
    delete = api.post("balances.delete", {**base, "balance_id": balance["id"]})
    responses = await asyncio.gather(*updates, delete)
    assert responses[-1].status_code == 200
    assert {r.status_code for r in responses[:-1]} <= {200, 404}
    kinds = api.ledger_kinds(balance["id"])
    assert kinds[-1] == "delete"
    assert kinds.count("add") == sum(r.status_code == 200 for r in responses[:-1])
    assert api.invariant_violations() == []


async def test_update_does_not_wait_for_a_lock_on_another_balance(
    api: Api, database_url: str
) -> None:
    held = await api.create(feature_id="seats", included_grant=1)
    await api.create(feature_id="api_calls", included_grant=1)
    with psycopg.connect(database_url) as locker:
        locker.execute(
            "SELECT 1 FROM balances WHERE customer_id = 'cus_1' AND id = %s FOR UPDATE",
            (held["id"],),
        )
        free = await asyncio.wait_for(api.update(add_to_balance=1), timeout=10)
        assert free["remaining"] == 2

        body = {"customer_id": "cus_1", "feature_id": "seats", "add_to_balance": 1}
        blocked = asyncio.ensure_future(api.post("balances.update", body))
        await asyncio.sleep(0.5)
        assert not blocked.done(), "an update of a locked balance must wait for the lock"
        locker.rollback()
    response = await asyncio.wait_for(blocked, timeout=10)
    assert response.status_code == 200 and response.json()["balance"]["remaining"] == 2


async def test_two_customers_racing_for_one_supplied_id_get_it_once(api: Api) -> None:
    bodies = [
        {"customer_id": f"cus_{n}", "feature_id": "api_calls", "balance_id": "contested"}
        for n in range(6)
    ]
    responses = await asyncio.gather(*(api.post("balances.create", b) for b in bodies))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    assert api.count("balances") == 1
