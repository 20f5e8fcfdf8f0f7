"""Two `balances serve` instances (separate processes, not workers of one) on one PostgreSQL.

Nothing in the service may assume it is the only instance: batching state is per process, so
correctness across instances rests on what they meet in the database (row locks, advisory locks
of supplied ids / new keys / Idempotency-Keys, the purge's advisory lock, the sweeper's
``SKIP LOCKED``). Both instances run the sweeper and the purge every second throughout; the
second is configured as for Citus behind PgBouncer (``CITUS_BEHIND_PGBOUNCER``).

The load shares every balance between the instances (updates, tracks, checks that lock, and
finalizes, some by ``lock_id`` alone), and sends every write under its Idempotency-Key to BOTH
instances: either both at once (the two attempts in flight together) or the second after the
first was answered. Then it checks:

- each pair of attempts got the same answer byte for byte, exactly one of them fresh and the
  other ``Idempotent-Replayed: true``; a later replay, on either instance, is identical too;
- every acknowledged write is in the ledger exactly once (its key, kind and delta), nothing
  else is, and each balance's remaining is the sum of what was acknowledged (``audit``);
- ``balances verify`` exits 0; both instances stop cleanly (exit 0 on SIGTERM).
"""

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.json import dumps_exact
from tests.faults.harness import (
    FEATURE,
    SECRET,
    Answer,
    Balance,
    Op,
    Service,
    add,
    audit,
    balances_verify,
    create,
    finalize,
    reserve,
    track,
    wrong_answers,
)
from tests.helpers import throwaway_database

pytestmark = pytest.mark.faults

NAME = "multi"
BALANCES: list[Balance] = [(f"cus_multi_{n}", FEATURE) for n in range(4)]  # all shared
CLIENTS = 16
STEPS = 16
ENV = {
    "BALANCES_SWEEP_INTERVAL_SECONDS": "1",  # both instances sweep, concurrently
    "BALANCES_IDEMPOTENCY_PURGE_INTERVAL_SECONDS": "1",  # and both try to purge
    "BALANCES_AUTH_CACHE_SECONDS": "0",
}
# Instance b runs as it would on Citus behind PgBouncer (transaction mode, < 1.21): batches of
# one customer, no prepared statements, timeouts set per transaction only. Correctness must not
# depend on either instance's choice.
CITUS_BEHIND_PGBOUNCER = {
    "BALANCES_WRITE_BATCH_SCOPE": "customer",
    "BALANCES_DB_PREPARED_STATEMENTS": "false",
    "BALANCES_DB_STARTUP_TIMEOUTS": "false",
}


@pytest.fixture
def instances(server_url: str, tmp_path: Path) -> Iterator[tuple[str, Service, Service]]:
    """Two instances on one fresh database, started together: both migrate and bootstrap the
    admin key at once (advisory locks make them take turns)."""
    with throwaway_database(server_url, "balances_multi") as url:
        started: list[Service] = []
        try:
            for name, env in (("a", ENV), ("b", ENV | CITUS_BEHIND_PGBOUNCER)):
                workdir = tmp_path / name
                workdir.mkdir()
                started.append(Service(url, workdir, env, workers=1))
            for service in started:
                service.wait_ready()
            yield url, started[0], started[1]
        finally:
            for service in started:
                service.stop()


async def send(http: httpx.AsyncClient, target: str, op: Op) -> Answer:
    headers = {"authorization": f"Bearer {SECRET}", "content-type": "application/json",
               "idempotency-key": op.key}  # fmt: skip
    started = time.monotonic()
    response = await http.post(f"{target}/v1/{op.path}", content=dumps_exact(op.body),
                               headers=headers)  # fmt: skip
    return Answer.of(response, started)


def pair_problems(op: Op, first: Answer, second: Answer) -> list[str]:
    if (first.status, first.body) != (second.status, second.body):
        return [f"{op.key}: {first.label()} {first.body[:200]!r} vs "
                f"{second.label()} {second.body[:200]!r}"]  # fmt: skip
    if sorted([first.replayed, second.replayed]) != [False, True]:
        return [f"{op.key}: replayed flags {first.replayed}, {second.replayed}"]
    return []


async def twice(
    http: httpx.AsyncClient, op: Op, targets: tuple[str, str], together: bool
) -> list[str]:
    """``op`` to one instance and, with its same key, to the other: both in flight at once, or
    the second once the first was answered. The fresh answer is recorded first (``audit``)."""
    if together:
        first, second = await asyncio.gather(send(http, targets[0], op), send(http, targets[1], op))
    else:
        first = await send(http, targets[0], op)
        second = await send(http, targets[1], op)
    op.answers += sorted([first, second], key=lambda answer: answer.replayed)
    return pair_problems(op, first, second)


async def client(
    http: httpx.AsyncClient, n: int, urls: tuple[str, str], ops: list[Op], problems: list[str]
) -> None:
    rng = random.Random(f"{NAME}-{n}")
    granted: list[Op] = []
    for step in range(STEPS):
        key = f"{NAME}-{n}-{step}"
        balance = rng.choice(BALANCES)
        kind = rng.choices(["add", "track", "lock", "finalize"], [3, 3, 3, 3])[0]
        if kind == "finalize" and granted:
            lock = granted.pop(rng.randrange(len(granted)))
            reserved = int(-lock.delta)
            op = finalize(key, lock, rng.choice([None, reserved - 1, reserved, reserved + 2]))
            if rng.random() < 0.5:  # by lock_id alone: the lock is found across customers
                del op.body["customer_id"]
        elif kind in ("lock", "finalize"):
            op = reserve(key, balance, rng.randint(2, 5))
        elif kind == "track":
            op = track(key, balance, rng.randint(1, 3))
        else:
            op = add(key, balance, rng.randint(1, 5))
        ops.append(op)
        targets = urls if rng.random() < 0.5 else (urls[1], urls[0])
        problems += await twice(http, op, targets, together=rng.random() < 0.5)
        final = op.final
        if op.kind == "lock" and final is not None and final.ok:
            granted.append(op)


async def drive(urls: tuple[str, str]) -> tuple[list[Op], list[str]]:
    ops: list[Op] = []
    problems: list[str] = []
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(20), limits=limits) as http:
        for index, balance in enumerate(BALANCES):  # creates, also sent to both instances
            op = create(NAME, balance)
            ops.append(op)
            problems += await twice(http, op, urls if index % 2 else urls[::-1], together=True)
        async with asyncio.timeout(30):
            await asyncio.gather(*(client(http, n, urls, ops, problems) for n in range(CLIENTS)))
        # Later retries, to either instance, replay the first answer byte for byte.
        sample = random.Random(NAME).sample(ops, min(40, len(ops)))
        for index, op in enumerate(sample):
            final = op.final
            assert final is not None
            again = await send(http, urls[index % 2], op)
            if (again.status, again.body, again.replayed) != (final.status, final.body, True):
                problems.append(f"{op.key}: later replay {again.label()}, first {final.label()}")
    return ops, problems


def test_two_instances_share_balances_exactly_once(
    instances: tuple[str, Service, Service], tmp_path: Path
) -> None:
    database_url, first, second = instances
    started = time.monotonic()
    ops, problems = asyncio.run(drive((first.url, second.url)))
    seconds = time.monotonic() - started
    answers = [answer for op in ops for answer in op.answers]
    assert not wrong_answers(answers, no_answer_allowed=False)
    assert not problems, problems[:20]
    assert len(ops) == len(BALANCES) + CLIENTS * STEPS
    kinds = {op.kind for op in ops}
    assert {"add", "track", "lock", "confirm", "release"} <= kinds, kinds
    problems = audit(database_url, ops)
    assert not problems, problems[:20]
    report = balances_verify(database_url, tmp_path)
    print(f"\n[multi] {len(ops)} writes, {len(answers)} answers in {seconds:.1f}s; {report}")
    for service in (first, second):
        assert service.stop() == 0, service.log()[-3000:]
        assert "Traceback" not in service.log(), service.log()[-3000:]
