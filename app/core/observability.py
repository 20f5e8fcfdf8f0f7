"""Per-request metrics and the one-line request log, as plain ASGI middleware."""

import logging
import time

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import REQUEST_SECONDS, REQUESTS

logger = logging.getLogger("balances.request")


def _operation(scope: Scope) -> str:
    route = scope.get("route")
    if isinstance(route, APIRoute):
        return route.operation_id or route.name
    path: str = getattr(route, "path", "unmatched")
    return path


class ObservabilityMiddleware:
    """Counts and times every request by operation, and logs it as one line with the request
    id, operation, customer, feature, status, duration and API key id (never the secret)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            elapsed = time.perf_counter() - started
            operation = _operation(scope)
            REQUESTS.labels(operation, str(status)).inc()
            REQUEST_SECONDS.labels(operation).observe(elapsed)
            if "app" in scope:
                scope["app"].state.database.report_pool_usage()
            state = scope.get("state", {})
            logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "request_id": state.get("request_id"),
                    "operation": operation,
                    "customer_id": state.get("customer_id"),
                    "feature_id": state.get("feature_id"),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "api_key_id": state.get("api_key_id"),
                },
            )
