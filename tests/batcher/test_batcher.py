"""The write path under load: batches, a stuck row lock elsewhere, lost connections, two processes.

Every scenario drives the service over ASGI (one request per task, all committing for real) and
checks committed state on a separate connection. Lock holders and "other processes" are real:
another psycopg connection, or a second app with its own engine and batcher. Timing is judged by
ordering (what finished while what was still pending), never by wall-clock thresholds; timeouts
below only keep a broken build from hanging.
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI
from prometheus_client import REGISTRY

from app.balances.commands import UpdateBalance
from app.balances.rows import NewKey
from app.balances.schemas import UpdateBalanceParams
from app.balances.table import BalancesTable
from app.batcher.batcher import Batcher
from app.batcher.protocols import Command, Envelope
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import RequestContext
from app.core.json import loads_exact
from app.core.reply import Reply
from app.ledger.table import LedgerTable
from app.main import create_app
from app.reservations.table import ReservationsTable
from tests.conftest import START
from tests.helpers import Api, problem

GUARD = 20  # seconds: only so that a broken build fails instead of hanging


def add(amount: int | str = 1, customer_id: str = "cus_1", **target: Any) -> dict[str, Any]:
    return {"customer_id": customer_id, "feature_id": "api_calls", "add_to_balance": amount,
            **target}  # fmt: skip


def ledger(db: psycopg.Connection, balance_id: str) -> list[tuple[str, int, str]]:
    """(kind, balance_version, xmin) of a balance's entries in order; the ledger is append-only,
    so ``xmin`` names the transaction that wrote each entry."""
    rows = db.execute(
        "SELECT kind, balance_version, xmin::text FROM balance_ledger "
        "WHERE balance_id = %s ORDER BY id",
        (balance_id,),
    ).fetchall()
    return [(str(kind), int(version), str(xmin)) for kind, version, xmin in rows]


def versions(db: psycopg.Connection, balance_id: str) -> list[int]:
    return [version for _, version, _ in ledger(db, balance_id)]


def remaining(db: psycopg.Connection, balance_id: str) -> Decimal:
    row = db.execute(
        "SELECT included_grant + prepaid_grant + adjustment - usage FROM balances WHERE id = %s",
        (balance_id,),
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


def lock_waiters(db: psycopg.Connection) -> int:
    """Backends of the service waiting for a heavyweight lock (a row or transaction lock)."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'balances' AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition()`` (cheap, synchronous) until true, letting the app run in between."""
    async with asyncio.timeout(GUARD):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


@asynccontextmanager
async def another_app(
    database_url: str, clock: FrozenClock, db: psycopg.Connection, secret: str, **settings: Any
) -> AsyncIterator[tuple[FastAPI, Api]]:
    """A second instance of the service on the same database: its own pool and batcher."""
    app = create_app(Settings(database_url=database_url, **settings), clock=clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as client:
            yield app, Api(client, db, secret=secret)
    finally:
        await app.state.batcher.stop()
        await app.state.database.dispose()


async def in_one_batch(app: FastAPI, commands: Sequence[Command]) -> list[Reply]:
    """Run ``commands`` through a one-partition batcher of their own, queued in one go before
    its worker runs: one batch, one transaction."""
    batcher = Batcher(
        app.state.database.engine,
        [BalancesTable(), ReservationsTable(), LedgerTable()],
        partitions=1,
    )
    try:
        return await asyncio.wait_for(asyncio.gather(*(batcher.submit(c) for c in commands)), GUARD)
    finally:
        await batcher.stop()


def added(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    balance: dict[str, Any] = loads_exact(response.content)["balance"]
    return balance


# 1. A stuck row lock elsewhere costs only the commands that need that row.


async def test_a_balance_locked_elsewhere_does_not_stall_the_customers_other_balances(
    api: Api, db: psycopg.Connection, database_url: str
) -> None:
    x = await api.create(feature_id="seats", included_grant=0)
    y = await api.create(included_grant=0)
    others = [await api.create(customer_id=f"cus_{n}", included_grant=0) for n in range(2, 6)]
    with psycopg.connect(database_url) as locker:
        locker.execute("SET lock_timeout = 0")
        locker.execute(
            "SELECT 1 FROM balances WHERE customer_id = 'cus_1' AND id = %s FOR UPDATE", (x["id"],)
        )
        # X first: the Y updates of the same customer are batched with it or right after it.
        held = asyncio.ensure_future(api.post("balances.update", add(1, feature_id="seats")))
        free = [api.post("balances.update", add(1)) for _ in range(10)]
        free += [api.post("balances.update", add(1, f"cus_{2 + n % 4}")) for n in range(10)]
        responses = await asyncio.wait_for(asyncio.gather(*free), GUARD)

        assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
        assert not held.done(), "the update of the locked balance cannot have been applied yet"
        await until(lambda: lock_waiters(db) == 1, "X's update waits for the row lock, alone")
        assert not held.done()
        locker.rollback()
    response = await asyncio.wait_for(held, GUARD)
    assert added(response)["remaining"] == 1
    assert remaining(db, y["id"]) == 10
    assert sum(remaining(db, b["id"]) for b in others) == 10
    assert [kind for kind, _, _ in ledger(db, x["id"])] == ["create", "add"]
    assert api.invariant_violations() == []


# 2. If the lock outlives lock_timeout, that command alone fails, retryably, changing nothing.


async def test_a_lock_held_past_the_lock_timeout_is_503_for_that_balance_only(
    api: Api, db: psycopg.Connection, database_url: str, clock: FrozenClock, keys: dict[str, str]
) -> None:
    x = await api.create(feature_id="seats", included_grant=0)
    y = await api.create(included_grant=0)
    impatient = another_app(database_url, clock, db, keys["write"], lock_timeout_ms=500)
    async with impatient as (_, fast):
        with psycopg.connect(database_url) as locker:
            locker.execute("SET lock_timeout = 0")
            locker.execute(
                "SELECT 1 FROM balances WHERE customer_id = 'cus_1' AND id = %s FOR UPDATE",
                (x["id"],),
            )
            held = asyncio.ensure_future(fast.post("balances.update", add(1, feature_id="seats")))
            free = await asyncio.wait_for(
                asyncio.gather(*(fast.post("balances.update", add(1)) for _ in range(10))), GUARD
            )
            response = await asyncio.wait_for(held, GUARD)  # while the lock is still held
            locker.rollback()
        problem(response, 503, "lock_timeout")
        assert response.headers["retry-after"] == "1"
        assert [r.status_code for r in free] == [200] * 10
        assert [kind for kind, _, _ in ledger(db, x["id"])] == ["create"]
        assert remaining(db, x["id"]) == 0
        assert remaining(db, y["id"]) == 10
        # Nothing was applied, so a plain retry is safe and now succeeds.
        retry = await fast.post("balances.update", add(1, feature_id="seats"))
        assert added(retry)["remaining"] == 1


# 3. Many deltas to one hot balance: each applied exactly once, in fewer transactions.


async def test_a_hundred_concurrent_adds_to_one_balance_all_apply_in_fewer_transactions(
    api: Api, db: psycopg.Connection
) -> None:
    balance = await api.create(included_grant=0)
    committed_before = REGISTRY.get_sample_value("balances_mutations_total", {"kind": "add"}) or 0
    responses = await asyncio.wait_for(
        asyncio.gather(*(api.post("balances.update", add(1)) for _ in range(100))), GUARD
    )
    balances = [added(r) for r in responses]
    # Each command saw the one before it: remaining and version move together, never repeat.
    assert sorted(b["version"] for b in balances) == list(range(2, 102))
    assert all(b["remaining"] == b["version"] - 1 for b in balances)
    assert remaining(db, balance["id"]) == 100

    entries = ledger(db, balance["id"])
    assert [kind for kind, _, _ in entries] == ["create"] + ["add"] * 100
    assert [version for _, version, _ in entries] == list(range(1, 102))
    committed = REGISTRY.get_sample_value("balances_mutations_total", {"kind": "add"})
    assert committed == committed_before + 100
    transactions = len({xmin for kind, _, xmin in entries if kind == "add"})
    assert transactions <= 50, f"{transactions} transactions for 100 adds: not batched"


# 4. One command's failure is its own.


async def test_failing_updates_get_their_own_error_and_cost_the_others_nothing(
    api: Api, db: psycopg.Connection
) -> None:
    good = await api.create(included_grant=0)
    unlimited = await api.create(feature_id="seats", unlimited=True)
    kinds = ["good", "missing", "good", "unlimited", "good"] * 8
    bodies = {
        "good": add(1),
        "missing": add(1, feature_id="no_such_feature"),
        "unlimited": add(1, feature_id="seats"),
    }
    responses = await asyncio.wait_for(
        asyncio.gather(*(api.post("balances.update", bodies[kind]) for kind in kinds)), GUARD
    )
    for kind, response in zip(kinds, responses, strict=True):
        if kind == "good":
            added(response)
        elif kind == "missing":
            problem(response, 404, "balance_not_found")
        else:
            problem(response, 409, "balance_unlimited")
    assert remaining(db, good["id"]) == 24
    assert versions(db, good["id"]) == list(range(1, 26))
    assert [kind for kind, _, _ in ledger(db, unlimited["id"])] == ["create"]
    assert api.count("balance_ledger") == 2 + 24


async def test_commands_submitted_together_commit_as_one_transaction_with_an_answer_each(
    api: Api, app: FastAPI, db: psycopg.Connection
) -> None:
    good = await api.create(included_grant=0)
    await api.create(feature_id="seats", unlimited=True)
    envelope = Envelope(START, RequestContext(request_id="batch-test"), None)

    def update(**fields: Any) -> UpdateBalance:
        body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
        return UpdateBalance(UpdateBalanceParams.model_validate(body), envelope)

    commands = [update(add_to_balance=1), update(feature_id="no_such_feature", add_to_balance=1),
                update(add_to_balance=2), update(feature_id="seats", add_to_balance=1),
                update(remaining=10), update(add_to_balance=-4)]  # fmt: skip
    replies = await in_one_batch(app, commands)
    statuses = [reply.status for reply in replies]
    assert statuses == [200, 404, 200, 409, 200, 200]
    remainings = [loads_exact(r.body)["balance"]["remaining"] for r in replies if r.status == 200]
    assert remainings == [1, 3, 10, 6]  # in arrival order, each on the previous one's result
    entries = ledger(db, good["id"])
    assert [kind for kind, _, _ in entries] == ["create", "add", "add", "set_remaining", "add"]
    assert len({xmin for _, _, xmin in entries[1:]}) == 1, "the batch was not one transaction"
    assert remaining(db, good["id"]) == 6


# 5. Idempotency-Key inside a batch.


async def test_ten_concurrent_retries_with_one_key_apply_once_and_replay_the_first_answer(
    api: Api, db: psycopg.Connection
) -> None:
    balance = await api.create(included_grant=0)
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(api.post("balances.update", add(5), idempotency_key="burst") for _ in range(10))
        ),
        GUARD,
    )
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    replayed = [r.headers.get("idempotent-replayed") for r in responses]
    assert sorted(replayed, key=str) == [None] + ["true"] * 9
    assert [kind for kind, _, _ in ledger(db, balance["id"])] == ["create", "add"]
    assert remaining(db, balance["id"]) == 5

    other = await api.post("balances.update", add(6), idempotency_key="burst")
    problem(other, 422, "idempotency_key_reused")
    assert remaining(db, balance["id"]) == 5


async def test_one_key_sent_concurrently_with_two_bodies_applies_one_and_refuses_the_other(
    api: Api, db: psycopg.Connection
) -> None:
    balance = await api.create(included_grant=0)
    amounts = [5, 7] * 6
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(api.post("balances.update", add(n), idempotency_key="race") for n in amounts)
        ),
        GUARD,
    )
    fresh = [n for n, r in zip(amounts, responses, strict=True)
             if r.status_code == 200 and "idempotent-replayed" not in r.headers]  # fmt: skip
    assert len(fresh) == 1, [r.text for r in responses]
    winner = fresh[0]
    for n, response in zip(amounts, responses, strict=True):
        if n == winner:
            assert added(response)["remaining"] == winner
        else:
            problem(response, 422, "idempotency_key_reused")
    assert [kind for kind, _, _ in ledger(db, balance["id"])] == ["create", "add"]
    assert remaining(db, balance["id"]) == winner


# 6. Two processes meeting on one hot balance.


async def test_two_instances_adding_to_one_hot_balance_stay_exact(
    api: Api, db: psycopg.Connection, database_url: str, clock: FrozenClock, keys: dict[str, str]
) -> None:
    balance = await api.create(included_grant=0)
    async with another_app(database_url, clock, db, keys["write"]) as (_, other):
        requests: list[Awaitable[httpx.Response]] = []
        for _ in range(60):
            requests += [api.post("balances.update", add(1)),
                         other.post("balances.update", add(1))]  # fmt: skip
        responses = await asyncio.wait_for(asyncio.gather(*requests), GUARD)
    balances = [added(r) for r in responses]
    assert sorted(b["version"] for b in balances) == list(range(2, 122))
    assert all(b["remaining"] == b["version"] - 1 for b in balances)
    assert remaining(db, balance["id"]) == 120
    assert versions(db, balance["id"]) == list(range(1, 122))
    assert api.invariant_violations() == []


# 7. Connections killed by the server: never a 500, never a broken ledger.

ALLOWED_UNDER_KILLS = {(200, ""), (503, "database_unavailable"), (503, "outcome_unknown")}


def kill_service_connections(db: psycopg.Connection) -> int:
    rows = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'balances' AND pid <> pg_backend_pid()"
    ).fetchall()
    return len(rows)


Sent = list[tuple[dict[str, Any], str]]


def wave_of_adds(wave: int, customers: list[str], size: int = 40) -> Sent:
    """Adds of 1, 2 or 3 spread over the customers, each with its own Idempotency-Key."""
    return [(add(1 + n % 3, customers[n % len(customers)]), f"w{wave}-{n}") for n in range(size)]


async def send(api: Api, requests: Sent) -> list[httpx.Response]:
    return await asyncio.wait_for(
        asyncio.gather(*(api.post("balances.update", b, idempotency_key=k) for b, k in requests)),
        GUARD,
    )


def answer(response: httpx.Response) -> tuple[int, str]:
    code = "" if response.status_code == 200 else str(response.json().get("code"))
    return response.status_code, code


def answered(requests: Sequence["asyncio.Future[Any]"], count: int) -> Callable[[], bool]:
    return lambda: sum(request.done() for request in requests) >= count


def assert_applied_exactly(db: psycopg.Connection, sent: Sent, start: int) -> None:
    """Every balance holds ``start`` plus what was sent to it, with a gapless ledger that sums."""
    expected = Counter[str]()
    for body, _ in sent:
        expected[body["customer_id"]] += body["add_to_balance"]
    rows = db.execute(
        "SELECT b.customer_id, b.included_grant + b.prepaid_grant + b.adjustment - b.usage, "
        "sum(l.remaining_delta), array_agg(l.balance_version ORDER BY l.id) "
        "FROM balances b JOIN balance_ledger l "
        "ON l.customer_id = b.customer_id AND l.balance_id = b.id GROUP BY b.customer_id, b.id"
    ).fetchall()
    assert {row[0] for row in rows} == set(expected)
    for customer, value, total, entry_versions in rows:
        assert value == total == start + expected[customer], customer
        assert entry_versions == list(range(1, len(entry_versions) + 1)), customer


async def test_a_pool_killed_between_requests_costs_writers_nothing(
    db: psycopg.Connection,
    database_url: str,
    clock: FrozenClock,
    keys: dict[str, str],
    app: FastAPI,
) -> None:
    # Its own instance with a warm auth cache: only the write path meets the dead connections.
    warm = another_app(database_url, clock, db, keys["write"], auth_cache_seconds=3600)
    async with warm as (_, api):
        customers = [f"cus_{n}" for n in range(1, 7)]
        for customer in customers:
            await api.create(customer_id=customer, included_grant=100)
        sent: Sent = []
        try:
            for wave in range(4):
                assert kill_service_connections(db) > 0  # every pooled connection is now dead
                requests = wave_of_adds(wave, customers)
                sent += requests
                responses = await send(api, requests)
                assert Counter(map(answer, responses)) == {(200, ""): len(requests)}, wave
        finally:
            await app.state.database.engine.dispose()  # the shared app's pool was killed too
    assert_applied_exactly(db, sent, start=100)


async def test_connections_killed_mid_load_never_yield_a_500_nor_break_the_ledger(
    db: psycopg.Connection,
    database_url: str,
    clock: FrozenClock,
    keys: dict[str, str],
    app: FastAPI,
) -> None:
    warm = another_app(database_url, clock, db, keys["write"], auth_cache_seconds=3600)
    async with warm as (_, api):
        customers = [f"cus_{n}" for n in range(1, 7)]
        for customer in customers:
            await api.create(customer_id=customer, included_grant=100)
        killed = 0

        async def kill_as_answers_come(
            requests: Sequence["asyncio.Future[httpx.Response]"],
        ) -> None:
            """Kill every connection of the service once a quarter, a half and three quarters
            of the wave are answered: the rest are in flight, some of them mid-transaction or
            mid-COMMIT (the event loop stands still while the kill runs)."""
            nonlocal killed
            for quarter in (1, 2, 3):
                await until(answered(requests, quarter * len(requests) // 4), "answers")
                killed += kill_service_connections(db)

        answers: dict[str, tuple[int, str]] = {}
        sent: Sent = []
        try:
            for wave in range(5):
                requests = wave_of_adds(wave, customers)
                sent += requests
                tasks = [
                    asyncio.ensure_future(api.post("balances.update", body, idempotency_key=key))
                    for body, key in requests
                ]
                await kill_as_answers_come(tasks)
                responses = await asyncio.wait_for(asyncio.gather(*tasks), GUARD)
                answers |= {key: answer(r) for (_, key), r in zip(requests, responses, strict=True)}
                assert api.invariant_violations() == []
            assert killed > 0
            assert set(answers.values()) <= ALLOWED_UNDER_KILLS, Counter(answers.values())
            # 200: applied. database_unavailable: not applied. outcome_unknown: either.
            applied = {key for (key,) in db.execute(
                "SELECT idempotency_key FROM balance_ledger WHERE idempotency_key IS NOT NULL"
            )}  # fmt: skip
            assert {k for k, a in answers.items() if a == (200, "")} <= applied
            assert {k for k, a in answers.items() if a[1] == "database_unavailable"}.isdisjoint(
                applied
            )

            # A client that retries its 503s with the same Idempotency-Key gets each change once.
            responses = await send(api, sent)
            assert Counter(map(answer, responses)) == {(200, ""): len(sent)}, [
                r.text for r in responses if r.status_code != 200
            ]
        finally:
            await app.state.database.engine.dispose()  # the shared app's pool was killed too
    assert_applied_exactly(db, sent, start=100)


async def test_a_killed_pool_costs_at_most_one_503_per_dead_connection_even_with_no_auth_cache(
    api: Api, app: FastAPI, db: psycopg.Connection
) -> None:
    # The shared app looks every API key up (no auth cache). That lookup, unlike the write path,
    # does not retry on a new connection: each dead pooled connection may cost one request a
    # 503 database_unavailable (pool_pre_ping is off by design), never more, never a 500.
    customers = [f"cus_{n}" for n in range(1, 7)]
    for customer in customers:
        await api.create(customer_id=customer, included_grant=100)
    sent: Sent = []
    try:
        for wave in range(3):
            dead = kill_service_connections(db)
            requests = wave_of_adds(wave, customers)
            responses = await send(api, requests)
            answers = Counter(map(answer, responses))
            assert set(answers) <= {(200, ""), (503, "database_unavailable")}, answers
            assert answers[(503, "database_unavailable")] <= dead, (answers, dead)
            sent += [r for r, response in zip(requests, responses, strict=True)
                     if response.status_code == 200]  # fmt: skip
    finally:
        await app.state.database.engine.dispose()
    assert_applied_exactly(db, sent, start=100)


# 8. Transactions the batch cannot see coming: inserts in flight, replays of one key.


async def test_a_create_racing_a_stuck_insert_of_its_key_does_not_stall_the_customers_updates(
    db: psycopg.Connection, database_url: str, clock: FrozenClock, keys: dict[str, str]
) -> None:
    async with another_app(
        database_url, clock, db, keys["write"], lock_timeout_ms=1000, auth_cache_seconds=3600
    ) as (_, api):
        balance = await api.create(included_grant=0)
        with psycopg.connect(database_url) as stuck:  # e.g. another instance frozen mid-batch
            # An instance of the service inserting a key holds that key's advisory lock.
            name = NewKey("cus_1", "seats", None, "one_off").lock_name
            stuck.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
            stuck.execute(
                "INSERT INTO balances (customer_id, id, feature_id, interval, created_at, "
                "updated_at) VALUES ('cus_1', 'bal_stuck', 'seats', 'one_off', now(), now())"
            )
            create = asyncio.ensure_future(
                api.post("balances.create", {"customer_id": "cus_1", "feature_id": "seats"})
            )
            updates: list[asyncio.Future[httpx.Response]] = []
            try:
                await until(lambda: lock_waiters(db) == 1, "the create waits for the stuck insert")
                updates = [
                    asyncio.ensure_future(api.post("balances.update", add(1))) for _ in range(10)
                ]
                responses = await asyncio.wait_for(asyncio.gather(*updates), GUARD)
                assert not create.done(), "the updates waited for the create's lock timeout"
                assert [r.status_code for r in responses] == [200] * 10
            finally:
                stuck.rollback()
                await asyncio.gather(create, *updates, return_exceptions=True)
        assert create.result().status_code == 200  # the stuck insert rolled back: key free
        assert remaining(db, balance["id"]) == 10


async def test_concurrent_retries_are_not_held_up_by_requests_waiting_on_an_unrelated_lock(
    db: psycopg.Connection, database_url: str, clock: FrozenClock, keys: dict[str, str]
) -> None:
    async with another_app(
        database_url, clock, db, keys["write"], lock_timeout_ms=1000, auth_cache_seconds=3600
    ) as (_, api):
        stuck_balance = await api.create(customer_id="cus_9", feature_id="seats")
        balance = await api.create(included_grant=0)
        with psycopg.connect(database_url) as locker:
            locker.execute(
                "SELECT 1 FROM balances WHERE id = %s FOR UPDATE", (stuck_balance["id"],)
            )
            held = [
                asyncio.ensure_future(
                    api.post("balances.update", add(1, "cus_9", feature_id="seats"))
                )
                for _ in range(4)  # as many as write_waiting_slots
            ]
            retries: list[asyncio.Future[httpx.Response]] = []
            try:
                # However many requests wait for the stuck row, one connection waits for it.
                await until(lambda: lock_waiters(db) == 1, "one waiter for the stuck row")
                retries = [
                    asyncio.ensure_future(
                        api.post("balances.update", add(5), idempotency_key="retry")
                    )
                    for _ in range(10)
                ]
                responses = await asyncio.wait_for(asyncio.gather(*retries), GUARD)
                assert not any(h.done() for h in held), "the retries waited for the stuck lock"
                assert [r.status_code for r in responses] == [200] * 10
            finally:
                locker.rollback()
                await asyncio.gather(*held, *retries, return_exceptions=True)
        assert remaining(db, balance["id"]) == 5
