"""HTTP endpoint of reservations: settle a lock taken by check."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from app.auth.dependencies import RequestContextDep, WriteKey
from app.core.database import SessionDep
from app.core.dependencies import ClockDep, problem_responses
from app.core.errors import LockNotActive
from app.core.json import ExactJSONRoute, render
from app.core.problems import problem_response
from app.core.schemas import SuccessResponse
from app.idempotency.dependencies import IdempotencyDep
from app.reservations.models import LockStatus
from app.reservations.schemas import FinalizeLockParams
from app.reservations.service import ReservationService

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


@router.post(
    "/balances.finalize",
    operation_id="finalizeLock",
    summary="Confirm or release a reservation",
    response_model=SuccessResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def finalize_lock(
    params: Annotated[FinalizeLockParams, Body(openapi_examples=_EXAMPLES)],
    session: SessionDep,
    clock: ClockDep,
    context: RequestContextDep,
    _: WriteKey,
    idempotency: IdempotencyDep,
) -> Response:
    """Settle a lock taken by `balances.check` with `lock`.

    `confirm` keeps the reserved deduction, or with `override_value` deducts exactly that
    instead (the difference is taken or given back). `release` gives it all back. A lock can be
    finalized once: again, or after its `expires_at`, is `409 lock_not_active` (an expired lock
    is given back automatically); an unknown `lock_id` is `404 lock_not_found`.
    """

    async def finalize() -> Response:
        status = await ReservationService(session, clock, context).finalize(params)
        if status is LockStatus.EXPIRED:
            # Returned, not raised: the automatic release must commit with this response.
            return problem_response(
                LockNotActive(f"Lock '{params.lock_id}' expired and was released automatically.")
            )
        return render(SuccessResponse())

    return await idempotency.run(finalize)
