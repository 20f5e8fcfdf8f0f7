"""HTTP endpoints of metering and gating: check, track and batch_track."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from app.api.routing import command, submit
from app.auth.dependencies import ReadKey, WriteKey, authorize
from app.auth.models import Scope
from app.balances import repository as balances
from app.balances.rows import ScopeKey
from app.consumption.commands import BatchTrack, CheckAndChange, Track
from app.consumption.rules import is_allowed
from app.consumption.schemas import (
    BatchTrackParams,
    BatchTrackResponse,
    CheckParams,
    CheckResponse,
    FeatureBalance,
    TrackParams,
    TrackResponse,
)
from app.core.database import reading
from app.core.dependencies import problem_responses
from app.core.json import ExactJSONRoute, render
from app.idempotency.dependencies import EnvelopeDep
from app.reservations.reads import as_released
from app.reservations.rows import draws_on

router = APIRouter(prefix="/v1", tags=["balances"], route_class=ExactJSONRoute)


_CHECK_EXAMPLES: dict[str, Any] = {
    "gate": {
        "summary": "May this customer make 5 more API calls?",
        "value": {"customer_id": "cus_123", "feature_id": "api_calls", "required_balance": 5},
    },
    "reserve": {
        "summary": "Reserve 1000 tokens until the job finishes",
        "value": {
            "customer_id": "cus_123",
            "feature_id": "ai_tokens",
            "required_balance": 1000,
            "send_event": True,
            "lock": {"lock_id": "job_81", "enabled": True},
        },
    },
}
_TRACK_EXAMPLES: dict[str, Any] = {
    "use": {
        "summary": "Record 3 API calls",
        "value": {"customer_id": "cus_123", "feature_id": "api_calls", "value": 3},
    },
    "refund": {
        "summary": "Give 2 back",
        "value": {"customer_id": "cus_123", "feature_id": "api_calls", "value": -2},
    },
}


@command(
    router,
    "/balances.check",
    operation_id="check",
    summary="Check (and optionally reserve) a feature balance",
    response_model=CheckResponse,
    responses=problem_responses(409, 413, 422),
)
async def check(
    params: Annotated[CheckParams, Body(openapi_examples=_CHECK_EXAMPLES)],
    principal: ReadKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Whether the customer may use `required_balance` (default 1) of a feature.

    `allowed` is true when a balance is unlimited, the feature's total remaining covers it, or a
    balance allows overage. With `entity_id`, the entity's own balances and its customer's
    count. Changes nothing, unless:
    - `send_event: true`: an allowed check also deducts `required_balance` (all or nothing), in
      the same locked transaction, so check-then-use cannot overshoot;
    - `lock` (with or without `send_event`): an allowed check reserves `required_balance` until
      `balances.finalize` or `lock.expires_at` (at most 24 hours ahead), one ledger `lock`.
    """
    if params.send_event or params.lock is not None:
        authorize(principal, Scope.WRITE)  # it changes balances
        return await submit(request, CheckAndChange(params, envelope))
    # A pure read: no row locks; due resets and expired locks are applied on the fly.
    now = envelope.now
    scope = ScopeKey(params.customer_id, params.feature_id, params.entity_id)
    async with reading(request) as conn:
        rows = [
            row for drawn in draws_on(scope) for row in await balances.find_live(conn, drawn, now)
        ]
        rows = await as_released(conn, rows, now)
    response = CheckResponse(
        allowed=is_allowed(rows, params.required_balance, now),
        customer_id=params.customer_id,
        feature_id=params.feature_id,
        entity_id=params.entity_id,
        required_balance=params.required_balance,
        balance=FeatureBalance.of(params.feature_id, rows, now),
    )
    return render(response)


@command(
    router,
    "/balances.track",
    operation_id="track",
    summary="Record usage of a feature",
    response_model=TrackResponse,
    responses=problem_responses(404, 409, 413, 422),
)
async def track(
    params: Annotated[TrackParams, Body(openapi_examples=_TRACK_EXAMPLES)],
    principal: WriteKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Deduct `value` across the feature's live balances, in one locked transaction.

    With `entity_id`: the entity's own balances first, then its customer's. Within each:
    shortest reset interval first, `one_off` last, then earliest expiry, then oldest.
    `overage_behavior`: `cap` (default) deducts what fits; `overflow` deducts all (remaining may
    go negative); `reject` deducts all or nothing (`409 insufficient_balance`). Balances with
    `overage_allowed` take what the others cannot. A negative `value` gives back, in reverse
    order. Unlimited balances count usage and never block. One `track` entry per balance.
    """
    return await submit(request, Track(params, envelope))


_BATCH_TRACK_EXAMPLES: dict[str, Any] = {
    "events": {
        "summary": "Three usage events, two customers, one of them for a seat",
        "value": [
            {"customer_id": "cus_123", "feature_id": "api_calls", "value": 3},
            {"customer_id": "cus_123", "feature_id": "api_calls", "entity_id": "seat_7"},
            {"customer_id": "cus_456", "feature_id": "ai_tokens", "value": 870},
        ],
    },
}


@command(
    router,
    "/balances.batch_track",
    operation_id="batchTrack",
    summary="Record up to 1000 usage events at once",
    response_model=BatchTrackResponse,
    responses=problem_responses(413, 422),
)
async def batch_track(
    params: Annotated[BatchTrackParams, Body(openapi_examples=_BATCH_TRACK_EXAMPLES)],
    principal: WriteKey,
    envelope: EnvelopeDep,
    request: Request,
) -> Response:
    """Apply each item as `balances.track` would, in order, in one locked transaction.

    The answer (`200`) lists every item's own result in the order sent: its track answer, or
    the error it got (`404`, `409`, `422`…), in which case that item changed nothing and the
    others still applied. The whole call is one write: with an `Idempotency-Key`, a retry gets
    the same answer and applies nothing again. A malformed item refuses the whole call (`422`),
    nothing applied.
    """
    return await submit(request, BatchTrack(params.root, envelope))
