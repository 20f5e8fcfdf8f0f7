"""ASGI middleware: request ids, and the request body's size limit and deadline.

Written as plain ASGI (not ``BaseHTTPMiddleware``) to keep the hot path to a few function calls.
"""

import asyncio
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_settings
from app.core.errors import DomainError, PayloadTooLarge
from app.core.logging import CURRENT_REQUEST_ID
from app.core.problems import problem_response

REQUEST_ID_HEADER = b"x-request-id"


def _valid_request_id(raw: bytes) -> str | None:
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return value if 0 < len(value) <= 200 and value.isprintable() else None


class RequestIdMiddleware:
    """Echo the caller's ``X-Request-ID`` (or make one) on every response; expose it to handlers
    as ``request.state.request_id`` so ledger entries can name the request that wrote them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                request_id = _valid_request_id(value)
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        CURRENT_REQUEST_ID.set(request_id)  # for every log line written while serving it
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # Starlette answers an unexpected exception outside every middleware, so its 500
            # would lack X-Request-ID: answer it here, with the app's own handler (which logs
            # it under this request's id), and the header.
            handler = getattr(scope.get("app"), "exception_handlers", {}).get(Exception)
            if started or handler is None:
                raise
            response = await handler(Request(scope), error)
            await response(scope, receive, send_with_id)


class RequestTimeout(DomainError):
    """The client did not send the whole request in time. Nothing was read, nothing changed."""

    code = "request_timeout"
    status = 408
    title = "Request timeout"
    # The rest of a late body may still be on its way: this connection cannot carry another
    # request, so the server closes it after answering.
    headers: ClassVar[Mapping[str, str] | None] = MappingProxyType({"Connection": "close"})


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, by declared and by actual size, and
    bodies that have not fully arrived within ``timeout_seconds`` with 408.

    The body (at most ``max_bytes``) is read up front and replayed to the app, so an oversized
    or late stream is refused before any handler, and so before any database work, has started.
    The deadline covers the whole body, not each chunk: a client trickling a byte a second is cut
    off as surely as one that stops. ``timeout_seconds`` None means the app's
    ``request_body_timeout_seconds`` setting. ``larger``: paths allowed more than ``max_bytes``
    (``balances.batch_track``'s 1000 items), each with its own limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_seconds: float | None = None,
        larger: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.larger = dict(larger or {})

    def _timeout(self, scope: Scope) -> float:
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        timeout: float = (settings or get_settings()).request_body_timeout_seconds
        return timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self._refuse(scope, send, self._too_large(limit))
                return
        chunks: list[bytes] = []
        timeout = self._timeout(scope)
        try:
            async with asyncio.timeout(timeout):
                too_large = not await self._read(receive, chunks, limit)
        except TimeoutError:
            message = f"The request body did not arrive within {timeout:g} seconds."
            await self._refuse(scope, send, RequestTimeout(message))
            return
        if too_large:
            await self._refuse(scope, send, self._too_large(limit))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, chunks: list[bytes], limit: int) -> bool:
        """Read the whole body into ``chunks``; False as soon as it exceeds ``limit``."""
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return True  # client went away; let the app see the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return True

    def _too_large(self, limit: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request bodies are limited to {limit} bytes.")

    async def _refuse(self, scope: Scope, send: Send, error: DomainError) -> None:
        response: Any = problem_response(error)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
