"""HTTP endpoint of history: read-only history of balance changes."""

from typing import Annotated

from fastapi import APIRouter, Body, Response

from app.auth.dependencies import ReadKey
from app.core.database import ConnectionDep
from app.core.dependencies import ClockDep, problem_responses
from app.core.json import ExactJSONRoute, render
from app.history.schemas import HistoryParams, HistoryResponse, LedgerEntry
from app.history.service import history

router = APIRouter(prefix="/v1", tags=["ledger"], route_class=ExactJSONRoute)

_EXAMPLES = {
    "balance": {"summary": "One balance's history", "value": {"balance_id": "bal_123"}},
    "feature": {
        "summary": "A customer's history of one feature",
        "value": {"customer_id": "cus_123", "feature_id": "api_calls", "limit": 20},
    },
}


@router.post(
    "/balances.history",
    operation_id="balanceHistory",
    summary="Ledger entries of a balance",
    response_model=HistoryResponse,
    responses=problem_responses(413, 422),
)
async def balance_history(
    params: Annotated[HistoryParams, Body(openapi_examples=_EXAMPLES)],
    conn: ConnectionDep,
    clock: ClockDep,
    _: ReadKey,
) -> Response:
    """The append-only ledger of one balance (or of a customer's feature), newest first.

    Every change is one entry with its `kind`, `remaining_delta`, `usage_delta` and the state
    after it. For every balance the `remaining_delta`s sum to its current `remaining`; entries of
    a deleted balance stay, closed by a `delete` entry. A reset that is due but not yet written
    shows first as a `pending` entry with `id` null.
    """
    rows, next_cursor = await history(conn, params, clock.now())
    response = HistoryResponse(
        list=[LedgerEntry.of(row) for row in rows],
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )
    return render(response)
