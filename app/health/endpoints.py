"""Liveness and readiness probes for orchestrators."""

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from app.core.database import Database
from app.core.json import ExactJSONResponse
from app.core.metrics import exposition

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up and serving requests. Does not touch the database."""
    return {"status": "ok"}


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies by operation, committed mutations by kind, row-lock wait
    time, idempotent replays and database pool use, in Prometheus' text format."""
    database: Database = request.app.state.database
    database.report_pool_usage()
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness",
    responses={503: {"description": "Not ready"}},
)
async def readyz(request: Request) -> Response:
    """Ready when the database answers and its schema is at the latest migration."""
    database: Database = request.app.state.database
    expected = request.app.state.schema_head
    try:
        async with database.engine.connect() as connection:
            current = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception:  # any failure to reach the database means "not ready", never a 500
        logger.warning("readiness check failed", exc_info=True)
        return ExactJSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    if current != expected:
        body = {"status": "unavailable", "schema": current, "expected_schema": expected}
        return ExactJSONResponse(body, 503)
    return ExactJSONResponse({"status": "ok", "schema": current})
