"""HTTP endpoints of balances: parse, hand a command to the write path (or read), answer."""

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from app.api.routing import command, submit
from app.auth.dependencies import ReadKey, WriteKey
from app.balances import examples, reads
from app.balances.commands import CreateBalance, DeleteBalance, UpdateBalance
from app.balances.rows import new_balance_id
from app.balances.schemas import (
    Balance,
    BalanceResponse,
    CreateBalanceParams,
    DeleteBalanceParams,
    ListBalancesParams,
    ListBalancesResponse,
    UpdateBalanceParams,
)
from app.core.database import ConnectionDep
from app.core.dependencies import ClockDep, problem_responses
from app.core.json import ExactJSONRoute, render
from app.core.schemas import SuccessResponse
from app.idempotency.dependencies import EnvelopeDep

router = APIRouter(prefix="/v1", tags=["balances"], route_class=ExactJSONRoute)


@command(
    router,
    "/balances.create",
    operation_id="createBalance",
    summary="Create a balance",
    response_model=BalanceResponse,
    responses=problem_responses(409, 413, 422),
)
async def create_balance(
    params: Annotated[CreateBalanceParams, Body(openapi_examples=examples.CREATE)],
    principal: WriteKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Create the balance of a customer (or one of its entities) for a feature and reset interval.

    The key (customer, feature, entity, interval) is unique: a second create of the same key is
    refused with `409 balance_exists`. Writes a `create` ledger entry.

    An `included_grant` below zero, or an `expires_at` / `next_reset_at` not in the future
    (times are epoch milliseconds, not seconds), is refused with `422` and nothing is created.
    """
    command = CreateBalance(params, new_balance_id(), envelope)
    return await submit(request, command)


@command(
    router,
    "/balances.update",
    operation_id="updateBalance",
    summary="Set or adjust a balance",
    response_model=BalanceResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def update_balance(
    params: Annotated[UpdateBalanceParams, Body(openapi_examples=examples.UPDATE)],
    principal: WriteKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Change one balance in a single row-locked transaction.

    - `remaining: x` sets remaining to exactly x; `add_to_balance: d` adds a signed d (both change
      `adjustment`, so `granted`); `usage: u` sets usage. At most one of the three.
    - `included_grant`, `next_reset_at`, `expires_at` set those fields.
    - Impossible values are refused with `422` and nothing changes: `usage` or
      `included_grant` below zero, `next_reset_at` or `expires_at` not in the future (times are
      epoch milliseconds, not seconds).
    - Target: `balance_id`, else the live balance of (customer, feature, entity, interval); with
      no `interval` and several matches, `409 ambiguous_balance` and nothing changes.

    Each change appends one ledger entry in the same transaction. Returns the balance after it.
    """
    return await submit(request, UpdateBalance(params, envelope))


@router.post(
    "/balances.list",
    operation_id="listBalances",
    summary="List balances",
    response_model=ListBalancesResponse,
    responses=problem_responses(413, 422),
)
async def list_balances(
    params: Annotated[ListBalancesParams, Body(openapi_examples=examples.LIST)],
    conn: ConnectionDep,
    clock: ClockDep,
    _: ReadKey,
    request: Request,
) -> Response:
    """List balances matching the filters, in a stable order, one page at a time.

    Pass `next_cursor` back as `start_cursor` for the next page (keyset pagination: pages stay
    consistent while balances are added). Expired balances are listed only when `statuses`
    includes `expired`.
    """
    now = clock.now()
    rows, next_cursor = await reads.list_page(conn, params, now)
    views: tuple[reads.ReadView, ...] = getattr(request.app.state, "balance_read_views", ())
    for view in views:
        rows = await view(conn, rows, now)
    response = ListBalancesResponse(
        list=[Balance.of(row, now) for row in rows],
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )
    return render(response)


@command(
    router,
    "/balances.delete",
    operation_id="deleteBalance",
    summary="Delete a balance",
    response_model=SuccessResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def delete_balance(
    params: Annotated[DeleteBalanceParams, Body(openapi_examples=examples.DELETE)],
    principal: WriteKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Delete one balance (same targeting rules as update).

    Its ledger stays, closed by a `delete` entry that takes it to zero.

    With `recalculate_balances: true` (Autumn's rule; needs `feature_id`), the usage the
    balance has now moves onto the live balances that survive it: for an entity balance the
    entity's others, then its customer's; for a customer-level one, the customer's. They take it
    in deduction order, each what it has left and the rest past zero on the first of them, with
    a `track` entry each, in the same transaction. With usage to move and no survivor, the
    answer is `422` and nothing changes.
    """
    return await submit(request, DeleteBalance(params, envelope))
