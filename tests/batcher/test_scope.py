"""What one write batch may hold (``BALANCES_WRITE_BATCH_SCOPE``).

``partition``: every command queued on a partition, whatever its customer, is one transaction.
``customer``: a transaction holds one customer's commands only (one shard on Citus); the others
wait for the partition's next rounds, and a hot customer cannot starve them. Which commands
shared a transaction is read from the ledger: entries written by one transaction share ``xmin``.
"""

import asyncio
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI

from app.balances.commands import UpdateBalance
from app.balances.schemas import UpdateBalanceParams
from app.balances.table import BalancesTable
from app.batcher.batcher import Batcher, BatchScope
from app.batcher.protocols import Envelope
from app.core.context import RequestContext
from app.core.json import loads_exact
from app.core.reply import Reply
from app.ledger.table import LedgerTable
from app.reservations.table import ReservationsTable
from tests.conftest import START
from tests.helpers import Api

GUARD = 20  # seconds: only so that a broken build fails instead of hanging


def add(customer_id: str, amount: int = 1) -> UpdateBalance:
    body = {"customer_id": customer_id, "feature_id": "api_calls", "add_to_balance": amount}
    envelope = Envelope(START, RequestContext(request_id="scope-test"), None)
    return UpdateBalance(UpdateBalanceParams.model_validate(body), envelope)


async def submit_together(
    app: FastAPI, commands: list[UpdateBalance], scope: BatchScope, **options: Any
) -> list[Reply]:
    """Queue every command before the partition's worker runs (one partition): what it then
    takes as a batch is decided by the scope alone."""
    batcher = Batcher(
        app.state.database.engine,
        [BalancesTable(), ReservationsTable(), LedgerTable()],
        partitions=1,
        scope=scope,
        **options,
    )
    try:
        return await asyncio.wait_for(asyncio.gather(*map(batcher.submit, commands)), GUARD)
    finally:
        await batcher.stop()


def transactions(db: psycopg.Connection) -> list[tuple[str, int]]:
    """(customer, transaction) of every ``add`` in the ledger, in commit order; transactions
    numbered 0, 1, ... in the order they wrote."""
    rows = db.execute(
        "SELECT customer_id, xmin::text FROM balance_ledger WHERE kind = 'add' ORDER BY id"
    ).fetchall()
    numbers: dict[str, int] = {}
    return [(str(c), numbers.setdefault(str(x), len(numbers))) for c, x in rows]


@pytest.mark.parametrize(
    ("scope", "transactions_of"),
    [
        ("customer", {"cus_1": {0}, "cus_2": {1}}),  # the oldest command's customer first
        ("partition", {"cus_1": {0}, "cus_2": {0}}),
    ],
)
async def test_commands_queued_together_share_the_transactions_their_scope_allows(
    api: Api,
    app: FastAPI,
    db: psycopg.Connection,
    scope: BatchScope,
    transactions_of: dict[str, set[int]],
) -> None:
    for customer in ("cus_1", "cus_2"):
        await api.create(customer_id=customer, included_grant=0)
    commands = [add("cus_1"), add("cus_2"), add("cus_1"), add("cus_2"), add("cus_1")]
    replies = await submit_together(app, commands, scope)

    assert [reply.status for reply in replies] == [200] * 5
    seen: dict[str, set[int]] = {}
    for customer, number in transactions(db):
        seen.setdefault(customer, set()).add(number)
    assert seen == transactions_of
    assert api.invariant_violations() == []


async def test_with_customer_scope_a_hot_customer_does_not_starve_the_partitions_others(
    api: Api, app: FastAPI, db: psycopg.Connection
) -> None:
    for customer in ("cus_hot", "cus_cold"):
        await api.create(customer_id=customer, included_grant=0)
    commands = [add("cus_hot", n) for n in range(1, 7)] + [add("cus_cold")]
    replies = await submit_together(app, commands, "customer", max_batch=2)

    assert [reply.status for reply in replies] == [200] * 7
    # The hot customer's first batch, then the cold one, then the rest of the hot one's.
    assert transactions(db) == [("cus_hot", 0)] * 2 + [("cus_cold", 1)] + [
        ("cus_hot", 2),
        ("cus_hot", 2),
        ("cus_hot", 3),
        ("cus_hot", 3),
    ]
    # Each customer's commands still applied in the order they came.
    remaining = [loads_exact(reply.body)["balance"]["remaining"] for reply in replies[:6]]
    assert remaining == [1, 3, 6, 10, 15, 21]
