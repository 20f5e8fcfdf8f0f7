"""What the batcher asks of a domain: commands that say what they need, tables that lock and
write rows. Kept free of any domain so the batcher sits below every domain package."""

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.context import RequestContext
from app.core.errors import DomainError
from app.core.reply import Reply


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An ``Idempotency-Key`` and the fingerprint of the request that carries it."""

    scope: str
    key: str
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every command carries besides its parameters: one ``now`` for the whole request,
    who asks (stamped on ledger entries), and its Idempotency-Key if it has one."""

    now: datetime
    context: RequestContext
    idempotency: IdempotencyClaim | None


class Enveloped:
    """``now`` and ``idempotency`` of a command, read from its envelope."""

    envelope: Envelope

    @property
    def now(self) -> datetime:
        return self.envelope.now

    @property
    def idempotency(self) -> IdempotencyClaim | None:
        return self.envelope.idempotency

    @property
    def request_id(self) -> str | None:
        return self.envelope.context.request_id


class Command(Protocol):
    """One client request that changes state.

    ``partition``: commands of one partition (a customer) are batched together in arrival
    order, so no two batches of one process ever contend for a row.
    ``wants``: per table name, the keys of the rows to lock before ``apply`` runs.
    ``apply``: pure; reads and changes the locked rows held by the tables' states, returns the
    answer or raises a ``DomainError`` (then it must have changed nothing).
    """

    @property
    def partition(self) -> str: ...

    @property
    def now(self) -> datetime: ...

    @property
    def idempotency(self) -> IdempotencyClaim | None: ...

    @property
    def request_id(self) -> str | None:
        """The request's id, for the log lines written while the command runs."""
        ...

    def wants(self) -> Mapping[str, Sequence[Hashable]]: ...

    def apply(self, states: Mapping[str, Any]) -> Reply: ...


class Table(Protocol):
    """A table whose rows a batch locks, changes in memory, then writes in one statement."""

    name: str

    async def lock(
        self, conn: AsyncConnection, keys: Sequence[Hashable], *, wait: bool
    ) -> tuple[Any, set[Hashable]]:
        """Lock the rows of ``keys``; return the state holding them and the keys whose rows
        someone else holds. ``wait=False`` must never wait for a lock (``SKIP LOCKED``)."""
        ...

    async def write(self, conn: AsyncConnection, state: Any) -> None:
        """Write what the commands changed in ``state`` (a statement per kind of change)."""
        ...

    def committed(self, state: Any) -> None:
        """Called once the batch has committed (metrics)."""
        ...


@dataclass(slots=True)
class Refusal(Enveloped):
    """An answer decided before any row was locked (an unknown lock, say), sent through the
    write path all the same when the request has an Idempotency-Key, so that the key remembers
    it as it remembers every other answer."""

    partition: str
    error: DomainError
    envelope: Envelope

    def wants(self) -> Mapping[str, Sequence[Hashable]]:
        return {}

    def apply(self, states: Mapping[str, Any]) -> Reply:
        raise self.error
