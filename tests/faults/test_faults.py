"""Faults under load, against `balances serve --workers 2` over a real PostgreSQL.

Each scenario creates its balances, runs a bounded load (updates, tracks, checks that lock and
finalizes, each write with its own Idempotency-Key, plus plain checks), injects its fault
mid-load, then retries whatever got no definitive answer with its same key, sends writes once
more (every retried one and a sample of the others: each must replay its first answer), and
audits:

- every answer was 2xx, 4xx or 503 with a code and Retry-After, never a 500 (no answer at all
  only where the service itself was killed);
- every acknowledged write is in the ledger exactly once (its idempotency_key, its kind, its
  delta), nothing else is, and each balance's remaining is the sum of what was acknowledged;
- a 503 that says nothing was applied is never followed by the replay of a stored answer;
- `balances verify` exits 0.
"""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.faults.conftest import StartService
from tests.faults.harness import (
    FEATURE,
    Answer,
    Balance,
    Load,
    Postgres,
    Service,
    add,
    audit,
    balances_verify,
    probe,
    terminate_backends,
    track,
    wrong_answers,
)
from tests.helpers import throwaway_database

pytestmark = pytest.mark.faults

BALANCES: list[Balance] = [(f"cus_{n}", FEATURE) for n in range(8)]


def http_client(keepalive: bool = True) -> httpx.AsyncClient:
    """Generous timeouts: only a request the service leaves hanging can reach them, and that is
    a failure. Without keep-alive, each request is a new connection, accepted by whichever
    worker is first, as behind a load balancer: no client sticks to one worker."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=None if keepalive else 0)
    return httpx.AsyncClient(timeout=httpx.Timeout(20), limits=limits)


@dataclass
class Laps:
    """Seconds per phase of a scenario, printed with its answers (`pytest -s`, failures)."""

    last: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self.last, 2)
        self.last = now


def report(name: str, load: Load, laps: Laps, **facts: object) -> None:
    print(f"\n[{name}] {facts} phases: {laps.seconds}")
    print(f"[{name}] answers: {dict(load.tally().most_common())}")


async def under_load(
    load: Load, http: httpx.AsyncClient, fault: Coroutine[Any, Any, None]
) -> Counter[str]:
    """Run the load and the fault together, probing /healthz and /readyz meanwhile."""
    over = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        probing = tasks.create_task(probe(http, load, over))
        tasks.create_task(fault)
        await load.run(http)
        over.set()
    return probing.result()


def assert_probes(probes: Counter[str]) -> None:
    """Liveness never fails for a database of our own (DATABASE_URL); readiness says whether
    the database answers, never with a 500."""
    assert probes["/healthz 200"] > 0 and probes["/readyz 200"] > 0, probes
    assert set(probes) <= {"/healthz 200", "/readyz 200", "/readyz 503"}, probes


async def finish(load: Load, http: httpx.AsyncClient, laps: Laps) -> list[str]:
    """After the fault: retry what is open (its same key), then send writes again (every retried
    one, a sample of the others): each must replay its first answer."""
    await load.settle(http)
    laps("settle")
    replays = await load.replay(http)
    laps("replay")
    return replays


def assert_sound(load: Load, database_url: str, workdir: Path, replays: list[str]) -> None:
    assert audit(database_url, load.ops) == []
    assert replays == []
    verified = balances_verify(database_url, workdir)
    created = {op.balance for op in load.ops if op.kind == "create"}
    assert verified["ok"] and verified["live_balances"] == len(created), verified


# 1. The database goes away under the service: backends terminated, PostgreSQL restarted.


async def test_backends_terminated_and_postgres_restarted_mid_load(
    postgres: Postgres, services: StartService, fault_db: str, tmp_path: Path
) -> None:
    laps = Laps()
    service = await asyncio.to_thread(services)
    load = Load("db", service.url, BALANCES, steps=20)
    faults: list[str] = []
    laps("start")
    async with http_client() as http:
        await load.create_balances(http, BALANCES)

        async def fault() -> None:
            for fraction in (0.15, 0.3, 0.45):
                await load.reach(fraction)
                killed = await asyncio.to_thread(terminate_backends, fault_db)
                faults.append(f"{killed} backends terminated")
            for fraction in (0.6, 0.8):
                await load.reach(fraction)
                started = time.monotonic()
                await asyncio.to_thread(postgres.restart)  # pg_ctl restart -m fast
                faults.append(f"restarted in {time.monotonic() - started:.2f}s")

        probes = await under_load(load, http, fault())
        laps("load")
        replays = await finish(load, http, laps)
        ready = (await http.get(f"{service.url}/readyz")).status_code
    report("database", load, laps, faults=faults, probes=dict(probes))

    assert len(faults) == 5 and not faults[0].startswith("0 ")
    assert wrong_answers(load.answers(), no_answer_allowed=False) == []
    assert_probes(probes)
    assert ready == 200
    assert_sound(load, fault_db, tmp_path, replays)
    assert service.stop() == 0


# 2. The service itself is killed: SIGKILL to the parent and its workers, mid-load.


async def test_service_killed_mid_load_then_every_open_request_retried_on_a_new_one(
    services: StartService, fault_db: str, tmp_path: Path
) -> None:
    laps = Laps()
    first = await asyncio.to_thread(services)
    load = Load("kill", first.url, BALANCES)
    laps("start")
    async with http_client() as http:
        await load.create_balances(http, BALANCES)

        async def fault() -> None:
            await load.reach(0.4)
            first.kill()
            # Clients keep sending meanwhile: refused, each gives up after a few attempts.
            second = await asyncio.to_thread(services)
            load.target = second.url

        await under_load(load, http, fault())
        laps("load")
        left_open = len(load.open_ops())
        replays = await finish(load, http, laps)
    retried = [op for op in load.ops if op.answers[0].status is None and op.final is not None]
    report("kill", load, laps, left_open=left_open, retried_after_no_answer=len(retried))

    assert first.process.returncode == -9
    assert left_open > 0 and retried, "the kill should leave writes without an answer"
    assert wrong_answers(load.answers(), no_answer_allowed=True) == []
    assert_sound(load, fault_db, tmp_path, replays)


# 3. A stuck transaction holds one balance's row (BEGIN; SELECT ... FOR UPDATE) while unrelated
# traffic runs, and the locked balance's own clients keep retrying (Retry-After) meanwhile.

LOCK_TIMEOUT = 3.0  # seconds (BALANCES_LOCK_TIMEOUT_MS), short to keep the suite fast
LOCKED: Balance = ("cus_locked", FEATURE)
SAME_CUSTOMER: Balance = ("cus_locked", "seats")  # same customer and partition, another row
HOT = BALANCES[0]


@dataclass
class RowLockRun:
    unrelated: Load  # everything but the locked balance, one attempt per request
    stuck: Load  # the locked balance's writes, from clients that retry
    unrelated_answers: list[Answer]  # first attempts, all made while the lock was held
    locked_at: float
    released_at: float
    audit: list[str]
    replays: list[str]
    verified: dict[str, Any]
    exit_status: int

    def stuck_answers(self) -> list[Answer]:
        return [answer for op in self.stuck.ops for answer in op.answers]


@pytest.fixture(scope="module")
async def row_lock(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RowLockRun]:
    """Runs the scenario once; the tests below judge different promises of it."""
    workdir = tmp_path_factory.mktemp("row-lock")
    laps = Laps()
    with throwaway_database(postgres.admin_url, "balances_faults") as url:
        env = {"BALANCES_LOCK_TIMEOUT_MS": str(int(LOCK_TIMEOUT * 1000))}
        service = Service(url, workdir, env)
        try:
            await asyncio.to_thread(service.wait_ready)
            run = await _run_row_lock(service, url, workdir, laps)
        finally:
            service.stop()
            print(service.log()[-3000:])
        laps("stop")
        report("row lock", run.unrelated, laps, stuck=dict(run.stuck.tally()))
        yield run


async def _run_row_lock(service: Service, url: str, workdir: Path, laps: Laps) -> RowLockRun:
    # Unrelated writes go mostly to one busy balance, as a big customer's would, so that both
    # workers often batch its row at once; and to the locked customer's other balance. Reads
    # (plain checks) of the locked balance are unrelated too: they take no lock.
    others = [HOT, HOT, HOT, SAME_CUSTOMER]
    unrelated = Load("lock", service.url, others, clients=12, attempts=1, seconds=LOCK_TIMEOUT,
                     reads=[*BALANCES, LOCKED])  # fmt: skip
    stuck = Load("stuck", service.url, [LOCKED], attempts=3)
    released = asyncio.Event()

    async def stuck_client(http: httpx.AsyncClient, n: int) -> None:
        for step in range(10):
            if released.is_set():
                return
            key = f"stuck-{n}-{step}"
            op = add(key, LOCKED, 1 + n % 3) if step % 2 else track(key, LOCKED, 1 + n % 2)
            await stuck.send(http, op)

    laps("start")
    async with http_client(keepalive=False) as http:
        await unrelated.create_balances(http, [*BALANCES, SAME_CUSTOMER, LOCKED])
        with psycopg.connect(url) as locker:
            locker.execute(
                "SELECT 1 FROM balances WHERE customer_id = %s AND feature_id = %s FOR UPDATE",
                LOCKED,
            )
            locked_at = time.monotonic()
            # More writers of the locked balance than both workers have waiting slots (4 each).
            clients = [asyncio.create_task(stuck_client(http, n)) for n in range(16)]
            await asyncio.sleep(0.2)  # they are waiting now
            await unrelated.run(http)
            unrelated_answers = unrelated.answers()
            await asyncio.sleep(locked_at + LOCK_TIMEOUT + 1 - time.monotonic())
            locker.rollback()
            released_at = time.monotonic()
            released.set()
        await asyncio.wait_for(asyncio.gather(*clients), 3 * (LOCK_TIMEOUT + 1) + 10)
        laps("load")
        replays = await finish(unrelated, http, laps) + await finish(stuck, http, laps)
    problems = audit(url, unrelated.ops + stuck.ops)
    verified = balances_verify(url, workdir)
    laps("audit")
    exit_status = await asyncio.to_thread(service.stop)
    return RowLockRun(unrelated, stuck, unrelated_answers, locked_at, released_at, problems,
                      replays, verified, exit_status)  # fmt: skip


def test_a_row_lock_held_by_a_stuck_transaction_breaks_nothing(row_lock: RowLockRun) -> None:
    answers = row_lock.unrelated.answers() + row_lock.stuck_answers()
    assert wrong_answers(answers, no_answer_allowed=False) == []
    # The locked balance's writes: 503 lock_timeout, within one deadline for all of their waits
    # (a waiting slot, the row), or applied once the lock was released.
    stuck = row_lock.stuck_answers()
    assert {a.label() for a in stuck} <= {"200", "503 lock_timeout"}
    assert all(a.finished >= row_lock.released_at for a in stuck if a.ok)
    timed_out = [a.seconds for a in stuck if not a.ok]
    assert timed_out and max(timed_out) < 1.75 * LOCK_TIMEOUT, timed_out
    # Unrelated traffic went on while the lock was held.
    first = row_lock.unrelated_answers
    assert all(a.finished < row_lock.released_at for a in first)
    assert sum(a.ok for a in first) >= 0.8 * len(first), Counter(a.label() for a in first)
    assert row_lock.audit == []
    assert row_lock.replays == []
    assert row_lock.verified["ok"], row_lock.verified
    assert row_lock.exit_status == 0


def test_a_row_lock_held_by_a_stuck_transaction_costs_unrelated_balances_nothing(
    row_lock: RowLockRun,
) -> None:
    first = row_lock.unrelated_answers
    slowest = sorted(first, key=lambda a: a.seconds)[-5:]
    assert [a.label() for a in first if not a.ok] == []
    assert max(a.seconds for a in first) < LOCK_TIMEOUT / 2, [
        (a.label(), round(a.seconds, 2), round(a.started - row_lock.locked_at, 2)) for a in slowest
    ]
