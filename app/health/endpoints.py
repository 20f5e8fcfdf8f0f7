"""Liveness and readiness probes for orchestrators."""

import logging
import os
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from app.core.database import Database
from app.core.embedded_postgres import FAILURE_FILE_ENV
from app.core.json import ExactJSONResponse
from app.core.metrics import exposition

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


# What the probes answer, 200 and 503 alike (JSON, for people and scripts reading it).
_STATUS: dict[str, Any] = {
    "title": "HealthStatus",
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "database": {"type": "string", "description": "What is wrong with the database."},
        "schema": {"type": ["string", "null"], "description": "The database's migration."},
        "expected_schema": {"type": "string", "description": "The migration this build needs."},
    },
}


def _status_responses(unavailable: str) -> dict[int | str, dict[str, Any]]:
    content = {"application/json": {"schema": _STATUS}}
    return {200: {"content": content}, 503: {"description": unavailable, "content": content}}


def _embedded_server_failed() -> bool:
    """Whether `serve`'s supervisor gave up on the embedded server: one stat of a local file."""
    failure_file = os.environ.get(FAILURE_FILE_ENV)
    return failure_file is not None and os.path.exists(failure_file)


@router.get(
    "/healthz",
    operation_id="healthz",
    summary="Liveness",
    responses=_status_responses("The embedded PostgreSQL died and could not be restarted"),
)
async def healthz() -> Response:
    """The process is up and serving requests. Does not touch the database.

    With the embedded PostgreSQL, `balances serve` restarts the server when it dies; if it
    cannot, after `BALANCES_EMBEDDED_RESTART_ATTEMPTS` attempts, this answers 503 so that the
    orchestrator restarts the service. (A database of your own, at DATABASE_URL, never fails
    liveness: `/readyz` reports it.)
    """
    if _embedded_server_failed():
        body = {"status": "unavailable", "database": "embedded PostgreSQL could not be restarted"}
        return ExactJSONResponse(body, 503)
    return ExactJSONResponse({"status": "ok"})


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
    responses=_status_responses(
        "Not ready: the database is unreachable (`database`), or its schema is not the latest "
        "migration (`schema`, `expected_schema`)"
    ),
)
async def readyz(request: Request) -> Response:
    """Ready when the database answers and its schema is at the latest migration."""
    database: Database = request.app.state.database
    expected = request.app.state.schema_head
    try:
        async with database.engine.connect() as connection:
            current = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as error:  # any failure to reach the database means "not ready", never a 500
        # Probes repeat every few seconds while the database is down: one line each, no traceback.
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        logger.warning(
            "readiness check failed: %s: %s", type(error).__name__, reason[0] if reason else ""
        )
        return ExactJSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    if current != expected:
        body = {"status": "unavailable", "schema": current, "expected_schema": expected}
        return ExactJSONResponse(body, 503)
    return ExactJSONResponse({"status": "ok", "schema": current})
