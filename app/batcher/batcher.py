"""Smart batching: one row-locked transaction per batch, one answer per command.

Commands are queued per partition (a hash of the customer). Each partition has one worker:
it takes what is waiting (up to ``max_batch``), runs it as ONE transaction, answers every
command, and meanwhile the next batch gathers. There is no timer: alone, a command runs at once;
under load, batches grow by themselves. Since a customer's commands always meet in one
partition, two batches of one process never contend for a row; other processes (workers,
instances, the sweeper, a stuck transaction) are met with ``SKIP LOCKED`` and the commands
whose rows they hold run alone on the waiting path (see ``transaction``).

What a batch may hold is its *scope* (``Lane``): ``partition``, every command waiting in the
partition, whatever its customer (the most batching, on one Postgres); or ``customer``, the
waiting commands of one customer only, so that a batch touches one customer's rows: one shard
on Citus (distributed by customer), never a two-phase commit (docs/scaling.md).
"""

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from app.batcher.protocols import Command, Table
from app.batcher.transaction import Outcome, Retry, Timeouts, lock_timeout, run_batch
from app.core.logging import CURRENT_REQUEST_ID
from app.core.problems import problem_reply
from app.core.reply import Reply

logger = logging.getLogger(__name__)

# A command whose rows another transaction holds is first tried again in later batches: most
# such holds last one commit (another worker's batch on the same hot balance). Only after these
# delays does it go to the waiting path, where one command per held row waits at a time.
RETRY_DELAYS = (0.002, 0.004, 0.008, 0.016, 0.032)

BatchScope = Literal["partition", "customer"]


@dataclass(slots=True, eq=False)
class Pending:
    command: Command
    future: "asyncio.Future[Reply]"
    skipped: int = 0  # batches that could not lock its rows
    deadline: float | None = None  # for all its waits, set when it is first skipped


class Batcher:
    def __init__(
        self,
        engine: AsyncEngine,
        tables: Sequence[Table],
        *,
        partitions: int = 4,
        max_batch: int = 64,
        waiting_slots: int = 4,
        wait_timeout_seconds: float = 5.0,
        scope: BatchScope = "partition",
        timeouts: Timeouts | None = None,
    ) -> None:
        """``tables`` in lock order: every transaction locks them in this order. ``timeouts``:
        of every batch's transaction (the waiting path's follow ``wait_timeout_seconds``)."""
        self.engine = engine
        self.tables = list(tables)
        self.max_batch = max_batch
        self.wait_timeout_seconds = wait_timeout_seconds
        self.scope: BatchScope = scope
        self.timeouts = timeouts
        self._partitions = partitions
        self._queues: list[Lane] = []
        self._workers: list[asyncio.Task[None]] = []
        self._waiting: asyncio.Semaphore | None = None
        self._waiting_slots = waiting_slots
        self._gates = Gates()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, command: Command) -> Reply:
        """Queue a command and wait for its answer (never raises for a domain error)."""
        self._start()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue_of(command).put(Pending(command, future))
        return await future

    def _queue_of(self, command: Command) -> "Lane":
        return self._queues[hash(command.partition) % self._partitions]

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        # Started lazily, in the loop that serves requests (tests run several loops in turn).
        self._loop = loop
        self._queues = [Lane(self.scope) for _ in range(self._partitions)]
        self._waiting = asyncio.Semaphore(self._waiting_slots)
        self._gates = Gates()
        # Each worker in a context of its own: created inside the first write request, a task
        # would otherwise copy that request's id into every batch's log lines ever after.
        self._workers = [
            asyncio.create_task(self._work(queue), context=contextvars.Context())
            for queue in self._queues
        ]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with suppress(asyncio.CancelledError):
                await worker
        self._workers, self._loop = [], None

    async def _work(self, queue: "Lane") -> None:
        while True:
            batch = await queue.take(self.max_batch)
            try:
                await self._run(batch)
            except Exception as error:  # a bug: fail these requests, keep the worker alive
                logger.exception("write batch failed")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)

    async def _run(self, batch: list[Pending]) -> None:
        commands = [pending.command for pending in batch]
        outcome = await self._run_batch(commands)
        if isinstance(outcome, Retry) and len(batch) > 1:
            # The database refused the batch as a whole: each command alone, in order, so
            # one command's trouble costs the others nothing.
            for pending in batch:
                await self._run([pending])
            return
        if isinstance(outcome, Retry) and outcome.again:
            outcome = await self._run_batch(commands)
        if isinstance(outcome, Retry):
            outcome = Outcome(replies={0: problem_reply(outcome.error)})
        for index, reply in outcome.replies.items():
            _answer(batch[index].future, reply)
        for index, held in outcome.deferred.items():
            self._defer(batch[index], held)
        for index in outcome.later:
            self._queue_of(batch[index].command).put(batch[index])

    async def _run_batch(self, commands: list[Command]) -> Outcome | Retry:
        return await run_batch(
            self.engine, self.tables, commands, wait=False, timeouts=self.timeouts
        )

    def _defer(self, pending: Pending, held: frozenset[Hashable]) -> None:
        """Rows held elsewhere: try again in a later batch, then wait for them alone."""
        if pending.deadline is None:
            pending.deadline = time.monotonic() + self.wait_timeout_seconds
        if pending.skipped < len(RETRY_DELAYS):
            delay = RETRY_DELAYS[pending.skipped]
            pending.skipped += 1
            queue = self._queue_of(pending.command)
            asyncio.get_running_loop().call_later(delay, queue.put, pending)
        else:
            asyncio.create_task(self._run_waiting(pending, held))  # noqa: RUF006

    async def _run_waiting(self, pending: Pending, held: frozenset[Hashable]) -> None:
        """Run one command whose rows another transaction holds, waiting for them, off the
        partition's worker. Its gate (one waiter per held row in this process, so requests
        piling up behind one stuck row take one connection, not all), its slot, its locks and
        its retry share one deadline."""
        assert self._waiting is not None and pending.deadline is not None
        deadline, future = pending.deadline, pending.future
        CURRENT_REQUEST_ID.set(pending.command.request_id)  # this task's own context
        try:
            async with self._gates.passing(held, deadline):
                async with asyncio.timeout_at(_loop_time(deadline)):
                    await self._waiting.acquire()
                try:
                    outcome = await run_batch(
                        self.engine, self.tables, [pending.command], wait=True, deadline=deadline
                    )
                    if isinstance(outcome, Retry) and outcome.again:
                        outcome = await run_batch(
                            self.engine,
                            self.tables,
                            [pending.command],
                            wait=True,
                            deadline=deadline,
                        )
                finally:
                    self._waiting.release()
        except TimeoutError:
            _answer(future, problem_reply(lock_timeout()))
            return
        except Exception as error:
            logger.exception("write on the waiting path failed")
            _answer(future, error)
            return
        if isinstance(outcome, Retry):
            _answer(future, problem_reply(outcome.error))
        elif outcome.deferred or outcome.later:  # a lone command: cannot happen
            _answer(future, problem_reply(lock_timeout()))
        else:
            _answer(future, outcome.replies[0])


class Lane:
    """One partition's waiting commands, and what its worker takes as a batch.

    Commands wait grouped by the batch they may join (one group per customer with scope
    ``customer``, a single group with ``partition``), groups in the order their oldest command
    came, each group in arrival order: a customer's commands stay in order either way. ``take``
    hands out the first group, up to ``limit`` commands; what is left of it goes behind the
    other groups, so that one hot customer cannot starve the partition's others.
    """

    def __init__(self, scope: BatchScope) -> None:
        self._by_customer = scope == "customer"
        self._groups: dict[str, deque[Pending]] = {}  # insertion order: oldest group first
        self._arrived = asyncio.Event()

    def put(self, pending: Pending) -> None:
        group = pending.command.partition if self._by_customer else ""
        self._groups.setdefault(group, deque()).append(pending)
        self._arrived.set()

    async def take(self, limit: int) -> list[Pending]:
        """The next batch: at least one command (waits for one), at most ``limit``."""
        while not self._groups:
            self._arrived.clear()
            await self._arrived.wait()
        group = next(iter(self._groups))
        waiting = self._groups.pop(group)
        batch = [waiting.popleft() for _ in range(min(limit, len(waiting)))]
        if waiting:
            self._groups[group] = waiting
        return batch


class Gates:
    """One waiter per key at a time, in this process."""

    def __init__(self) -> None:
        self._gates: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def passing(self, keys: frozenset[Hashable], deadline: float) -> AsyncIterator[None]:
        """Hold the gate of every key (taken in one order: no deadlock between waiters) until
        the block ends; ``TimeoutError`` at ``deadline``."""
        ordered = sorted(keys, key=repr)
        for key in ordered:
            lock, users = self._gates.get(key) or (asyncio.Lock(), 0)
            self._gates[key] = (lock, users + 1)
        taken = []
        try:
            # Only the waiting is bounded here; the block itself (a transaction) must never be
            # cancelled half-way: its statements carry the deadline themselves.
            async with asyncio.timeout_at(_loop_time(deadline)):
                for key in ordered:
                    await self._gates[key][0].acquire()
                    taken.append(key)
            yield
        finally:
            for key in taken:
                self._gates[key][0].release()
            for key in ordered:
                lock, users = self._gates[key]
                if users == 1:
                    del self._gates[key]
                else:
                    self._gates[key] = (lock, users - 1)


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic()`` deadline on the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def _answer(future: "asyncio.Future[Reply]", reply: Reply | Exception) -> None:
    if future.done():  # the client may have gone away
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)
