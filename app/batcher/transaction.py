"""One batch, one transaction: lock, claim idempotency keys, apply in order, write, commit.

The steps, always in this order (Formance's single write path, TigerBeetle's batches):

1. lock the rows every command wants, table by table in the registered order, rows in key
   order (the transaction's own timeouts travel with the first statement); on the batch path
   without waiting (``SKIP LOCKED``): a command whose rows another transaction holds is
   *deferred* (to later batches, then the waiting path; see ``batcher``) instead of stalling
   the batch;
2. claim the batch's ``Idempotency-Key``s in one statement: a key already answered is replayed,
   a key in flight elsewhere is deferred;
3. apply each command's pure rules in arrival order, each seeing the previous one's result
   (many deltas to one hot balance become one row write, with one ledger entry each);
4. write changed rows, ledger entries and idempotency answers, a statement per kind, and
5. commit, all down one psycopg pipeline (one round trip). Only then is anyone answered.

A command whose rules fail gets its own error and costs the others nothing. A batch the
database refuses (a constraint, a timeout) is rolled back whole and ``Retry`` tells the caller
to run its commands one by one. A connection lost before ``COMMIT`` is retried once on a new
connection (nothing was applied); lost *during* ``COMMIT`` nobody knows whether it applied, so
every command is answered ``503 outcome_unknown``: retry with the same Idempotency-Key.
"""

import logging
import time
from collections.abc import Hashable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.batcher import idempotency
from app.batcher.driver import Fetching, Queueing, Statement
from app.batcher.errors import IdempotencyKeyReused
from app.batcher.protocols import Command, Table
from app.core.config import Settings
from app.core.errors import DomainError, ServiceUnavailable
from app.core.logging import CURRENT_REQUEST_ID
from app.core.metrics import IDEMPOTENT_REPLAYS, LOCK_WAIT_SECONDS
from app.core.problems import database_code, is_disconnect, problem_reply
from app.core.reply import Reply

logger = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(slots=True)
class Outcome:
    """Answers by position in the batch (an exception is a bug in that command alone); the
    positions that must run alone on the waiting path once this batch has committed; and those
    to run in a later batch (a repeated Idempotency-Key: it replays this batch's answer)."""

    replies: dict[int, Reply | Exception] = field(default_factory=dict)
    deferred: dict[int, frozenset[Hashable]] = field(default_factory=dict)  # → the keys held
    later: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """``lock_timeout`` and ``statement_timeout`` of a write transaction, in milliseconds."""

    lock_ms: int
    statement_ms: int

    @classmethod
    def unless_connected_with(cls, settings: Settings) -> "Timeouts | None":
        """The timeouts a transaction must set itself: none when every connection already
        starts with them (``BALANCES_DB_STARTUP_TIMEOUTS``, the default), so the hot path
        sends no statement for them; the configured ones when it does not (PgBouncer)."""
        if settings.db_startup_timeouts:
            return None
        return cls(settings.lock_timeout_ms, settings.statement_timeout_ms)


@dataclass(slots=True)
class Retry:
    """The database refused the batch; nothing was applied. ``error`` is the answer if the
    commands cannot be retried; ``again``: a lone command may succeed if simply run again."""

    error: DomainError
    again: bool = False


class _Disconnected(Exception):
    pass


async def run_batch(
    engine: AsyncEngine,
    tables: Sequence[Table],
    commands: Sequence[Command],
    *,
    wait: bool,
    deadline: float | None = None,
    timeouts: Timeouts | None = None,
) -> Outcome | Retry:
    """Run ``commands`` as one transaction. ``wait``: wait for locks others hold (the waiting
    path), all of them together until ``deadline`` (``time.monotonic()``), not each its own.
    Without a deadline, ``timeouts`` bound the transaction's waits and statements (none: the
    session's own, as the connection or its role sets them)."""
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                raw = await conn.get_raw_connection()
                pg = cast(psycopg.AsyncConnection[Any], raw.driver_connection)
                try:
                    return await _transaction(
                        pg, tables, commands, wait=wait, deadline=deadline, timeouts=timeouts
                    )
                except BaseException:
                    # Whatever went wrong, the connection may be mid-pipeline or have stale
                    # prepared statements: never hand it to anyone again.
                    raw.invalidate()
                    raise
        except _Disconnected:
            if attempt == 2:
                break
            logger.warning("database connection lost before commit; retrying on a new one")
        except PoolTimeout:
            return Retry(ServiceUnavailable("database_busy", "No database connection is free."))
        except DBAPIError as error:  # connecting failed
            if not is_disconnect(error):
                raise
            break
    return Retry(ServiceUnavailable("database_unavailable", "The database is unreachable."))


async def _transaction(
    pg: psycopg.AsyncConnection[Any],
    tables: Sequence[Table],
    commands: Sequence[Command],
    *,
    wait: bool,
    deadline: float | None,
    timeouts: Timeouts | None,
) -> Outcome | Retry:
    outcome = Outcome()
    fetching = Fetching(pg, _limits(deadline, timeouts))
    conn = cast(AsyncConnection, fetching)  # repositories need only exec_driver_sql
    try:
        states, runnable = await _lock(conn, tables, commands, outcome, wait=wait)
        runnable = await _claim_keys(conn, commands, runnable, outcome, wait=wait)
        answers = _apply(commands, runnable, states, outcome)
    except psycopg.Error as error:
        await _rollback_quietly(pg)
        return _refused(error, deadline)
    try:
        async with pg.pipeline():
            queue = cast(AsyncConnection, Queueing(pg))
            if fetching.prelude is not None:  # nothing was locked or claimed: still unsent
                await queue.exec_driver_sql(*fetching.prelude)
            for table in tables:
                await table.write(queue, states[table.name])
            if answers:
                await idempotency.store(queue, answers)
            await pg.commit()
    except psycopg.Error as error:
        if error.sqlstate is None or error.sqlstate.startswith(("08", "57P")):
            # The connection went while the writes and COMMIT were in flight: nobody knows.
            logger.error("connection lost during COMMIT: outcome unknown", exc_info=error)
            for index in runnable:
                outcome.replies[index] = problem_reply(_unknown())
            return outcome
        await _rollback_quietly(pg)
        return _refused(error, deadline)
    for table in tables:
        table.committed(states[table.name])
    return outcome


def _refused(error: psycopg.Error, deadline: float | None) -> Retry:
    """The database refused the batch before COMMIT: nothing was applied."""
    if error.sqlstate is None or error.sqlstate.startswith(("08", "57P")):
        raise _Disconnected from error
    if deadline is not None and error.sqlstate == "57014":
        return Retry(lock_timeout())  # the request's deadline for its waits ran out
    code = database_code(error.sqlstate)
    return Retry(code, again=error.sqlstate == "23505")


def _unknown() -> ServiceUnavailable:
    return ServiceUnavailable(
        "outcome_unknown",
        "The database went away while committing; the change may or may not have been "
        "applied. Retry with the same Idempotency-Key to apply it exactly once.",
    )


async def _lock(
    conn: AsyncConnection,
    tables: Sequence[Table],
    commands: Sequence[Command],
    outcome: Outcome,
    *,
    wait: bool,
) -> tuple[dict[str, Any], list[int]]:
    wants = [command.wants() for command in commands]
    states: dict[str, Any] = {}
    blocked: dict[int, set[Hashable]] = {}
    started = time.perf_counter()
    for table in tables:
        keys = list(dict.fromkeys(k for want in wants for k in want.get(table.name, ())))
        states[table.name], held = await table.lock(conn, keys, wait=wait)
        for index, want in enumerate(wants) if held else ():
            mine = held.intersection(want.get(table.name, ()))
            if mine:
                blocked.setdefault(index, set()).update(mine)
    LOCK_WAIT_SECONDS.observe(time.perf_counter() - started)
    outcome.deferred.update((index, frozenset(keys)) for index, keys in blocked.items())
    return states, [i for i in range(len(commands)) if i not in blocked]


async def _claim_keys(
    conn: AsyncConnection,
    commands: Sequence[Command],
    runnable: list[int],
    outcome: Outcome,
    *,
    wait: bool,
) -> list[int]:
    """Claim the Idempotency-Keys of the runnable commands; return those still to apply."""
    keyed: dict[tuple[str, str], int] = {}
    for index in runnable:
        claim = commands[index].idempotency
        if claim is None:
            continue
        if (claim.scope, claim.key) in keyed:  # a duplicate in this very batch: replays after
            outcome.later.append(index)
        else:
            keyed[(claim.scope, claim.key)] = index
    if not keyed:
        return runnable
    triples = []
    for index in keyed.values():
        claim = commands[index].idempotency
        assert claim is not None
        triples.append((claim.scope, claim.key, claim.fingerprint))
    now = commands[next(iter(keyed.values()))].now
    claimed, stored = await idempotency.claim(conn, triples, now, wait=wait)
    skip = set(outcome.later)
    for key, index in keyed.items():
        if key in claimed:
            continue
        skip.add(index)
        if key in stored:
            outcome.replies[index] = _replay(stored[key], commands[index])
        else:  # in flight in another transaction
            outcome.deferred[index] = frozenset({("Idempotency-Key", *key)})
    return [index for index in runnable if index not in skip]


def _replay(stored: idempotency.StoredAnswer, command: Command) -> Reply:
    assert command.idempotency is not None
    if stored.fingerprint != command.idempotency.fingerprint:
        return problem_reply(
            IdempotencyKeyReused("This Idempotency-Key was already used for a different request.")
        )
    IDEMPOTENT_REPLAYS.inc()
    return Reply(stored.status_code, stored.body, stored.content_type, {REPLAYED_HEADER: "true"})


def _apply(
    commands: Sequence[Command], runnable: list[int], states: dict[str, Any], outcome: Outcome
) -> list[tuple[str, str, int, str, bytes]]:
    """Apply the runnable commands in arrival order; return the answers to store by key."""
    answers = []
    for index in runnable:
        command = commands[index]
        request = CURRENT_REQUEST_ID.set(command.request_id)  # its log lines name its request
        try:
            reply = command.apply(states)
        except DomainError as error:
            reply = problem_reply(error)
        except Exception as error:  # a bug in this command: it alone fails (500)
            logger.exception("command failed")
            outcome.replies[index] = error
            continue
        finally:
            CURRENT_REQUEST_ID.reset(request)
        outcome.replies[index] = reply
        if command.idempotency is not None:
            claim = command.idempotency
            answers.append((claim.scope, claim.key, reply.status, reply.media_type, reply.body))
    return answers


_SET_TIMEOUTS = (
    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)"
)


def _limits(deadline: float | None, timeouts: Timeouts | None) -> Statement | None:
    """The transaction's own timeouts, transaction-local (``set_config(…, true)``, i.e.
    ``SET LOCAL``): nothing outlives the transaction on a connection a pooler such as PgBouncer
    hands to someone else next, and they hold even where the connection has none (PgBouncer
    refuses timeouts as startup options). Sent with the transaction's first statement
    (``Fetching``'s prelude), so they cost no round trip of their own.

    With a ``deadline`` (the waiting path), every wait is bounded by what is left until it:
    Postgres's ``lock_timeout`` counts each wait on its own (and a queued row lock may wait
    twice), so the whole statement is bounded too."""
    if deadline is not None:
        left = str(max(1, int((deadline - time.monotonic()) * 1000)))
        return _SET_TIMEOUTS, (left, left)
    if timeouts is not None:
        return _SET_TIMEOUTS, (str(timeouts.lock_ms), str(timeouts.statement_ms))
    return None


def lock_timeout() -> ServiceUnavailable:
    return ServiceUnavailable(
        "lock_timeout", "A balance stayed locked by another request for too long; retry."
    )


async def _rollback_quietly(pg: psycopg.AsyncConnection[Any]) -> None:
    with suppress(psycopg.Error):
        await pg.rollback()
