"""Smart batching: one row-locked transaction per batch, one answer per command.

Commands are queued per partition (a hash of the customer). Each partition has one worker:
it takes everything waiting (up to ``max_batch``), runs it as ONE transaction, answers every
command, and meanwhile the next batch gathers. There is no timer: alone, a command runs at once;
under load, batches grow by themselves. Since a customer's commands always meet in one
partition, two batches of one process never contend for a row; other processes (workers,
instances, the sweeper, a stuck transaction) are met with ``SKIP LOCKED`` and the commands
whose rows they hold run alone on the waiting path (see ``transaction``).
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.batcher.protocols import Command, Table
from app.batcher.transaction import Outcome, Retry, lock_timeout, run_batch
from app.core.problems import problem_reply
from app.core.reply import Reply

logger = logging.getLogger(__name__)

# A command whose rows another transaction holds is first tried again in later batches: most
# such holds last one commit (another worker's batch on the same hot balance). Only after these
# delays does it go to the waiting path, where one command per held row waits at a time.
RETRY_DELAYS = (0.002, 0.004, 0.008, 0.016, 0.032)


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
    ) -> None:
        """``tables`` in lock order: every transaction locks them in this order."""
        self.engine = engine
        self.tables = list(tables)
        self.max_batch = max_batch
        self.wait_timeout_seconds = wait_timeout_seconds
        self._partitions = partitions
        self._queues: list[asyncio.Queue[Pending]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._waiting: asyncio.Semaphore | None = None
        self._waiting_slots = waiting_slots
        self._gates = Gates()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, command: Command) -> Reply:
        """Queue a command and wait for its answer (never raises for a domain error)."""
        self._start()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue_of(command).put_nowait(Pending(command, future))
        return await future

    def _queue_of(self, command: Command) -> "asyncio.Queue[Pending]":
        return self._queues[hash(command.partition) % self._partitions]

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        # Started lazily, in the loop that serves requests (tests run several loops in turn).
        self._loop = loop
        self._queues = [asyncio.Queue() for _ in range(self._partitions)]
        self._waiting = asyncio.Semaphore(self._waiting_slots)
        self._gates = Gates()
        self._workers = [asyncio.create_task(self._work(queue)) for queue in self._queues]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with suppress(asyncio.CancelledError):
                await worker
        self._workers, self._loop = [], None

    async def _work(self, queue: "asyncio.Queue[Pending]") -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._run(batch)
            except Exception as error:  # a bug: fail these requests, keep the worker alive
                logger.exception("write batch failed")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)

    async def _run(self, batch: list[Pending]) -> None:
        commands = [pending.command for pending in batch]
        outcome = await run_batch(self.engine, self.tables, commands, wait=False)
        if isinstance(outcome, Retry) and len(batch) > 1:
            # The database refused the batch as a whole: each command alone, in order, so
            # one command's trouble costs the others nothing.
            for pending in batch:
                await self._run([pending])
            return
        if isinstance(outcome, Retry) and outcome.again:
            outcome = await run_batch(self.engine, self.tables, commands, wait=False)
        if isinstance(outcome, Retry):
            outcome = Outcome(replies={0: problem_reply(outcome.error)})
        for index, reply in outcome.replies.items():
            _answer(batch[index].future, reply)
        for index, held in outcome.deferred.items():
            self._defer(batch[index], held)
        for index in outcome.later:
            self._queue_of(batch[index].command).put_nowait(batch[index])

    def _defer(self, pending: Pending, held: frozenset[Hashable]) -> None:
        """Rows held elsewhere: try again in a later batch, then wait for them alone."""
        if pending.deadline is None:
            pending.deadline = time.monotonic() + self.wait_timeout_seconds
        if pending.skipped < len(RETRY_DELAYS):
            delay = RETRY_DELAYS[pending.skipped]
            pending.skipped += 1
            queue = self._queue_of(pending.command)
            asyncio.get_running_loop().call_later(delay, queue.put_nowait, pending)
        else:
            asyncio.create_task(self._run_waiting(pending, held))  # noqa: RUF006

    async def _run_waiting(self, pending: Pending, held: frozenset[Hashable]) -> None:
        """Run one command whose rows another transaction holds, waiting for them, off the
        partition's worker. Its gate (one waiter per held row in this process, so requests
        piling up behind one stuck row take one connection, not all), its slot, its locks and
        its retry share one deadline."""
        assert self._waiting is not None and pending.deadline is not None
        deadline, future = pending.deadline, pending.future
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
