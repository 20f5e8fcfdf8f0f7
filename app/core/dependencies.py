"""Request-scoped dependencies shared by every domain's endpoints."""

from typing import Annotated, Any

from fastapi import Depends, Request

from app.core.clock import Clock
from app.core.context import RequestContext
from app.core.schemas import Problem


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_request_context(request: Request) -> RequestContext:
    return RequestContext(request_id=getattr(request.state, "request_id", None))


ClockDep = Annotated[Clock, Depends(get_clock)]
RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]

_PROBLEM_DESCRIPTIONS = {
    404: "Nothing matches (`balance_not_found`, `lock_not_found`).",
    409: "Conflict with the current state (`balance_exists`, `ambiguous_balance`, "
    "`balance_unlimited`, `insufficient_balance`, `lock_exists`, `lock_not_active`, "
    "`ambiguous_lock`).",
    413: "Body over 64 KiB (`payload_too_large`).",
    422: "Invalid input (`invalid_request`, `amount_out_of_range`, `invalid_cursor`).",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the problem+json errors an operation can answer."""
    return {
        status: {
            "model": Problem,
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
