"""HTTP endpoints of balances: parse, call one service method, render. Rules live in service."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response

from app.auth.dependencies import ReadKey, RequestContextDep, WriteKey
from app.balances import examples
from app.balances.schemas import (
    Balance,
    BalanceResponse,
    CreateBalanceParams,
    DeleteBalanceParams,
    ListBalancesParams,
    ListBalancesResponse,
    UpdateBalanceParams,
)
from app.balances.service import BalanceService
from app.core.database import SessionDep
from app.core.dependencies import ClockDep, problem_responses
from app.core.json import ExactJSONRoute, render
from app.core.schemas import SuccessResponse
from app.idempotency.dependencies import IdempotencyDep

router = APIRouter(prefix="/v1", tags=["balances"], route_class=ExactJSONRoute)


async def get_balance_service(
    session: SessionDep, clock: ClockDep, context: RequestContextDep
) -> BalanceService:
    return BalanceService(session, clock, context)


BalanceServiceDep = Annotated[BalanceService, Depends(get_balance_service)]


@router.post(
    "/balances.create",
    operation_id="createBalance",
    summary="Create a balance",
    response_model=BalanceResponse,
    responses=problem_responses(409, 413, 422),
)
async def create_balance(
    params: Annotated[CreateBalanceParams, Body(openapi_examples=examples.CREATE)],
    service: BalanceServiceDep,
    clock: ClockDep,
    _: WriteKey,
    idempotency: IdempotencyDep,
) -> Response:
    """Create the balance of a customer (or one of its entities) for a feature and reset interval.

    The key (customer, feature, entity, interval) is unique: a second create of the same key is
    refused with `409 balance_exists`. Writes a `create` ledger entry.
    """

    async def create() -> Response:
        balance = await service.create(params)
        return render(BalanceResponse(balance=Balance.of(balance, clock.now())))

    return await idempotency.run(create)


@router.post(
    "/balances.update",
    operation_id="updateBalance",
    summary="Set or adjust a balance",
    response_model=BalanceResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def update_balance(
    params: Annotated[UpdateBalanceParams, Body(openapi_examples=examples.UPDATE)],
    service: BalanceServiceDep,
    clock: ClockDep,
    _: WriteKey,
    idempotency: IdempotencyDep,
) -> Response:
    """Change one balance in a single row-locked transaction.

    - `remaining: x` sets remaining to exactly x; `add_to_balance: d` adds a signed d (both change
      `adjustment`, so `granted`); `usage: u` sets usage. At most one of the three.
    - `included_grant`, `next_reset_at`, `expires_at` set those fields.
    - Target: `balance_id`, else the live balance of (customer, feature, entity, interval); with
      no `interval` and several matches, `409 ambiguous_balance` and nothing changes.

    Each change appends one ledger entry in the same transaction. Returns the balance after it.
    """

    async def update() -> Response:
        balance = await service.update(params)
        return render(BalanceResponse(balance=Balance.of(balance, clock.now())))

    return await idempotency.run(update)


@router.post(
    "/balances.list",
    operation_id="listBalances",
    summary="List balances",
    response_model=ListBalancesResponse,
    responses=problem_responses(413, 422),
)
async def list_balances(
    params: Annotated[ListBalancesParams, Body(openapi_examples=examples.LIST)],
    service: BalanceServiceDep,
    clock: ClockDep,
    _: ReadKey,
) -> Response:
    """List balances matching the filters, in a stable order, one page at a time.

    Pass `next_cursor` back as `start_cursor` for the next page (keyset pagination: pages stay
    consistent while balances are added). Expired balances are listed only when `statuses`
    includes `expired`.
    """
    rows, next_cursor = await service.list(params)
    now = clock.now()
    response = ListBalancesResponse(
        list=[Balance.of(row, now) for row in rows],
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )
    return render(response)


@router.post(
    "/balances.delete",
    operation_id="deleteBalance",
    summary="Delete a balance",
    response_model=SuccessResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def delete_balance(
    params: Annotated[DeleteBalanceParams, Body(openapi_examples=examples.DELETE)],
    service: BalanceServiceDep,
    _: WriteKey,
    idempotency: IdempotencyDep,
) -> Response:
    """Delete one balance (same targeting rules as update).

    Its ledger stays, closed by a `delete` entry that takes it to zero.
    """

    async def delete() -> Response:
        await service.delete(params)
        return render(SuccessResponse())

    return await idempotency.run(delete)
