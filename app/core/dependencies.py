"""Request-scoped dependencies shared by every domain's endpoints."""

from typing import Annotated, Any

from fastapi import Depends, Request

from app.core.clock import Clock
from app.core.schemas import Problem


# Dependencies are `async def` even when they never await: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per dependency per request on the hot path.
async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]

_PROBLEM_DESCRIPTIONS = {
    401: "Missing, unknown or revoked API key (`unauthorized`).",
    403: "The API key lacks the scope this operation needs (`forbidden`).",
    404: "Nothing matches (`balance_not_found`, `lock_not_found`).",
    409: "Conflict with the current state (`balance_exists`, `ambiguous_balance`, "
    "`balance_unlimited`, `insufficient_balance`, `lock_exists`, `lock_not_active`, "
    "`ambiguous_lock`).",
    413: "Body over 64 KiB (`payload_too_large`).",
    415: "The body is not JSON (`unsupported_media_type`).",
    422: "Invalid input (`invalid_request`, `amount_out_of_range`, `invalid_cursor`, "
    "`idempotency_key_reused`).",
    503: "A lock or statement took too long (`lock_timeout`, `statement_timeout`); retry.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the problem+json errors an operation can answer (every
    operation can also answer 401, 403, 413, 415 and 503)."""
    statuses = tuple(sorted({*statuses, 401, 403, 413, 415, 503}))
    return {
        status: {
            "model": Problem,
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
