"""HTTP endpoint of reservations: settle a lock taken by check."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.routing import command, submit
from app.auth.dependencies import WriteKey
from app.batcher.protocols import Refusal
from app.core.database import reading
from app.core.dependencies import problem_responses
from app.core.errors import DomainError
from app.core.json import ExactJSONRoute
from app.core.schemas import SuccessResponse
from app.idempotency.dependencies import EnvelopeDep
from app.reservations import repository
from app.reservations.commands import Finalize
from app.reservations.errors import LockNotFound
from app.reservations.rows import LockKey, LockRow
from app.reservations.schemas import FinalizeLockParams

router = APIRouter(prefix="/v1", tags=["reservations"], route_class=ExactJSONRoute)

_EXAMPLES: dict[str, Any] = {
    "confirm": {
        "summary": "The job used 870 of the 1000 reserved",
        "value": {
            "lock_id": "job_81",
            "customer_id": "cus_123",
            "action": "confirm",
            "override_value": 870,
        },
    },
    "release": {
        "summary": "The job failed: give the reservation back",
        "value": {"lock_id": "job_81", "customer_id": "cus_123", "action": "release"},
    },
}


@command(
    router,
    "/balances.finalize",
    operation_id="finalizeLock",
    summary="Confirm or release a reservation",
    response_model=SuccessResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def finalize_lock(
    params: Annotated[FinalizeLockParams, Body(openapi_examples=_EXAMPLES)],
    principal: WriteKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Settle a lock taken by `balances.check` with `lock`.

    `confirm` keeps the reserved deduction, or with `override_value` deducts exactly that
    instead (the difference is taken or given back). `release` gives it all back. A lock can be
    finalized once: again, or after its `expires_at`, is `409 lock_not_active` (an expired lock
    is given back automatically); an unknown `lock_id` is `404 lock_not_found`. A `lock_id` is
    unique across the deployment, so it alone finds the lock; a `customer_id`, if given, must be
    the lock's.
    """
    try:
        async with reading(request) as conn:
            found = await _find(conn, params.customer_id, params.lock_id)
    except DomainError as error:
        if envelope.idempotency is None:
            raise
        partition = params.customer_id or params.lock_id
        return await submit(request, Refusal(partition, error, envelope))
    return await submit(request, Finalize(params, found, envelope))


async def _find(conn: AsyncConnection, customer_id: str | None, lock_id: str) -> LockRow:
    """The lock to finalize, read without locks (locks are never deleted, and their customer
    and feature never change): it tells the write path what to lock."""
    if customer_id is not None:
        lock = await repository.get(conn, LockKey(customer_id, lock_id))
        if lock is None:
            raise LockNotFound(f"Customer '{customer_id}' has no lock '{lock_id}'.")
        return lock
    found = await repository.find_by_lock_id(conn, lock_id)
    if found is None:
        raise LockNotFound(f"There is no lock '{lock_id}'.")
    return found
