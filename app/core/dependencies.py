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


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the problem+json errors an operation can answer (every
    operation can also answer 401, 403, 408, 413, 415, 503, and 500 for a bug)."""
    statuses = tuple(sorted({*statuses, 401, 403, 408, 413, 415, 500, 503}))
    return {
        status: {
            "model": Problem,
            "description": "Problem",  # schema and codes: app.core.problems.document_problems
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
