"""A lock id is unique across the deployment: one lock of one customer takes it, for good, and
finalize finds that lock by the id alone (Autumn's SDK sends nothing else)."""

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI

from app.batcher.protocols import Envelope
from app.consumption.commands import CheckAndChange
from app.consumption.schemas import CheckParams
from app.core.context import RequestContext
from app.core.json import loads_exact
from app.reservations import repository
from app.reservations.rows import LockKey
from tests.batcher.test_batcher import in_one_batch
from tests.conftest import START
from tests.helpers import Api, problem

GUARD = 20  # seconds: only so that a broken build fails instead of hanging


def check_body(customer: str, lock_id: str = "job_1", amount: int = 4) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "feature_id": "api_calls",
        "required_balance": amount,
        "lock": {"lock_id": lock_id, "enabled": True},
    }


async def lock(api: Api, customer: str, lock_id: str = "job_1", amount: int = 4) -> Any:
    return await api.post("balances.check", check_body(customer, lock_id, amount))


async def remaining(api: Api, customer: str) -> Any:
    page = await api.ok("balances.list", {"customer_id": customer})
    return page["list"][0]["remaining"]


def holder(db: psycopg.Connection, lock_id: str) -> str | None:
    row = db.execute("SELECT customer_id FROM lock_ids WHERE lock_id = %s", (lock_id,)).fetchone()
    return None if row is None else str(row[0])


async def test_a_lock_id_another_customer_used_is_refused_and_holds_nothing(api: Api) -> None:
    await api.create(customer_id="cus_1", included_grant=10)
    other = await api.create(customer_id="cus_2", included_grant=10)
    assert (await lock(api, "cus_1")).status_code == 200
    problem(await lock(api, "cus_2"), 409, "lock_exists")
    assert await remaining(api, "cus_2") == 10
    assert api.ledger_kinds(other["id"]) == ["create"]


async def test_finalize_by_lock_id_alone_settles_the_lock_of_its_customer(api: Api) -> None:
    for customer in ("cus_1", "cus_2"):
        await api.create(customer_id=customer, included_grant=10)
    await lock(api, "cus_1", "job_a", amount=3)
    await lock(api, "cus_2", "job_b", amount=4)
    body = {"lock_id": "job_b", "action": "confirm", "override_value": 1}
    assert await api.ok("balances.finalize", body) == {"success": True}
    assert await remaining(api, "cus_2") == 9
    assert await remaining(api, "cus_1") == 7  # still held by job_a
    assert api.invariant_violations() == []


async def test_finalize_naming_another_customer_does_not_find_the_lock(api: Api) -> None:
    await api.create(customer_id="cus_1", included_grant=10)
    await lock(api, "cus_1")
    body = {"customer_id": "cus_2", "lock_id": "job_1", "action": "release"}
    problem(await api.post("balances.finalize", body), 404, "lock_not_found")
    assert await remaining(api, "cus_1") == 6


async def test_a_lock_id_stays_taken_after_its_lock_is_finalized(api: Api) -> None:
    for customer in ("cus_1", "cus_2"):
        await api.create(customer_id=customer, included_grant=10)
    await lock(api, "cus_1")
    body = {"lock_id": "job_1", "action": "release"}
    assert (await api.post("balances.finalize", body)).status_code == 200
    problem(await lock(api, "cus_1"), 409, "lock_exists")
    problem(await lock(api, "cus_2"), 409, "lock_exists")
    problem(await api.post("balances.finalize", body), 409, "lock_not_active")
    assert [await remaining(api, c) for c in ("cus_1", "cus_2")] == [10, 10]


async def test_a_check_that_takes_no_lock_leaves_its_id_free(
    api: Api, db: psycopg.Connection
) -> None:
    await api.create(customer_id="cus_1", included_grant=3)
    await api.create(customer_id="cus_2", included_grant=10)
    refused = await api.ok("balances.check", check_body("cus_1", amount=4))
    assert refused["allowed"] is False and refused["lock_id"] is None
    assert holder(db, "job_1") is None
    assert (await api.ok("balances.check", check_body("cus_2")))["lock_id"] == "job_1"
    assert holder(db, "job_1") == "cus_2"


async def test_checks_of_one_batch_claiming_one_id_let_exactly_one_take_it(
    api: Api, app: FastAPI, db: psycopg.Connection
) -> None:
    await api.create(customer_id="cus_1", included_grant=3)  # cannot hold 4: takes no lock
    for customer in ("cus_2", "cus_3"):
        await api.create(customer_id=customer, included_grant=10)
    envelope = Envelope(START, RequestContext(request_id="lock-ids"), None)
    commands = [
        CheckAndChange(CheckParams.model_validate(check_body(customer)), envelope)
        for customer in ("cus_1", "cus_2", "cus_3")
    ]
    replies = await in_one_batch(app, commands)
    assert replies[0].status == 200 and loads_exact(replies[0].body)["allowed"] is False
    statuses = sorted(reply.status for reply in replies[1:])
    assert statuses == [200, 409], [reply.body for reply in replies]
    winner = "cus_2" if replies[1].status == 200 else "cus_3"
    assert holder(db, "job_1") == winner
    assert api.count("balance_locks") == 1
    assert sorted([await remaining(api, c) for c in ("cus_2", "cus_3")]) == [6, 10]


async def _claimed_elsewhere_then(api: Api, app: FastAPI, *, commit: bool) -> httpx.Response:
    """cus_1 checks with lock job_1 while another transaction has claimed job_1 for cus_2 and
    not yet ended; that transaction then commits or rolls back."""
    await api.create(customer_id="cus_1", included_grant=10)
    async with app.state.database.engine.connect() as elsewhere:
        claimed, _ = await repository.claim_ids(elsewhere, [LockKey("cus_2", "job_1")], wait=False)
        assert claimed == {LockKey("cus_2", "job_1")}
        request = asyncio.create_task(lock(api, "cus_1"))
        await asyncio.sleep(0.3)  # lets the request reach the claim (either way, same outcome)
        await (elsewhere.commit() if commit else elsewhere.rollback())
    return await asyncio.wait_for(request, GUARD)


async def test_a_check_waits_for_a_claim_in_flight_and_is_refused_if_it_commits(
    api: Api, app: FastAPI, db: psycopg.Connection
) -> None:
    problem(await _claimed_elsewhere_then(api, app, commit=True), 409, "lock_exists")
    assert holder(db, "job_1") == "cus_2"
    assert await remaining(api, "cus_1") == 10


async def test_a_check_waits_for_a_claim_in_flight_and_takes_the_id_if_it_rolls_back(
    api: Api, app: FastAPI, db: psycopg.Connection
) -> None:
    response = await _claimed_elsewhere_then(api, app, commit=False)
    assert response.status_code == 200 and response.json()["lock_id"] == "job_1"
    assert holder(db, "job_1") == "cus_1"


async def test_concurrent_checks_of_two_customers_on_real_http_give_each_id_to_exactly_one(
    service_url: str, keys: dict[str, str], db: psycopg.Connection
) -> None:
    """Through `balances serve`: its batches run on separate connections, committed."""
    customers = ("cus_a", "cus_b")
    ids = [f"job_{n}" for n in range(12)]
    headers = {"authorization": f"Bearer {keys['write']}"}
    async with httpx.AsyncClient(base_url=service_url, headers=headers, timeout=GUARD) as http:
        for customer in customers:
            body = {"customer_id": customer, "feature_id": "api_calls", "included_grant": 100}
            assert (await http.post("/v1/balances.create", json=body)).status_code == 200
        responses = await asyncio.gather(
            *(
                http.post("/v1/balances.check", json=check_body(customer, lock_id, amount=1))
                for lock_id in ids
                for customer in customers
            )
        )
    outcomes = [(r.status_code, r.json().get("code")) for r in responses]
    for n, lock_id in enumerate(ids):
        pair = outcomes[2 * n : 2 * n + 2]
        assert sorted(pair, key=str) == [(200, None), (409, "lock_exists")], (lock_id, pair)
        winner = customers[0] if pair[0][0] == 200 else customers[1]
        assert holder(db, lock_id) == winner
    locks = "SELECT customer_id, count(*) FROM balance_locks GROUP BY customer_id"
    held: dict[str, int] = dict(db.execute(locks).fetchall())
    usage: dict[str, Decimal] = dict(
        db.execute("SELECT customer_id, usage FROM balances").fetchall()
    )
    assert sum(held.values()) == len(ids)
    assert {c: usage[c] for c in customers} == {c: held.get(c, 0) for c in customers}
