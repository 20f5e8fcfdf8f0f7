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
from collections.abc import Sequence
from contextlib import suppress

from sqlalchemy.ext.asyncio import AsyncEngine

from app.batcher.protocols import Command, Table
from app.batcher.transaction import Outcome, Retry, lock_timeout, run_batch
from app.core.problems import problem_reply
from app.core.reply import Reply

logger = logging.getLogger(__name__)

Pending = tuple[Command, "asyncio.Future[Reply]"]


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
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, command: Command) -> Reply:
        """Queue a command and wait for its answer (never raises for a domain error)."""
        self._start()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue_of(command).put_nowait((command, future))
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
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)

    async def _run(self, batch: list[Pending]) -> None:
        commands = [command for command, _ in batch]
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
            _answer(batch[index][1], reply)
        for index in outcome.deferred:
            # Rows held elsewhere: wait for them alone, off this partition's worker.
            asyncio.create_task(self._run_waiting(batch[index]))  # noqa: RUF006
        for index in outcome.later:
            self._queue_of(batch[index][0]).put_nowait(batch[index])

    async def _run_waiting(self, pending: Pending) -> None:
        """Run one command whose rows another transaction holds, waiting for them: its slot, its
        locks and its retry share one deadline, ``wait_timeout_seconds`` from now."""
        command, future = pending
        assert self._waiting is not None
        deadline = time.monotonic() + self.wait_timeout_seconds
        try:
            async with asyncio.timeout(self.wait_timeout_seconds):
                await self._waiting.acquire()
        except TimeoutError:
            _answer(future, problem_reply(lock_timeout()))
            return
        try:
            outcome = await run_batch(
                self.engine, self.tables, [command], wait=True, deadline=deadline
            )
            if isinstance(outcome, Retry) and outcome.again:
                outcome = await run_batch(
                    self.engine, self.tables, [command], wait=True, deadline=deadline
                )
            if isinstance(outcome, Retry):
                _answer(future, problem_reply(outcome.error))
            elif outcome.deferred or outcome.later:  # a lone command: cannot happen
                _answer(future, problem_reply(lock_timeout()))
            else:
                _answer(future, outcome.replies[0])
        except Exception as error:
            logger.exception("write on the waiting path failed")
            if not future.done():
                future.set_exception(error)
        finally:
            self._waiting.release()


def _answer(future: "asyncio.Future[Reply]", reply: Reply | Exception) -> None:
    if future.done():  # the client may have gone away
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)
