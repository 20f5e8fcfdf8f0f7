"""uvicorn's HTTP protocol with a deadline for request headers.

uvicorn times out idle keep-alive connections, but nothing else: a client that connects and
sends nothing, or sends its headers a byte at a time, holds its connection (a file descriptor,
and a slot under ``limit_concurrency``) for as long as it likes. This protocol gives every
request ``request_header_timeout_seconds`` from its connection, or from the first byte of a
request on a kept-alive connection, to finish its headers. Then it answers
``408 request_timeout`` and closes the connection. The body has its own deadline
(``BodyLimitMiddleware``).

It extends uvicorn's httptools protocol (what uvicorn picks by default when httptools is
installed, as ``uvicorn[standard]`` does). Without httptools, ``protocol()`` returns "auto" and
the header deadline is left to a reverse proxy in front (see the README).
"""

import asyncio
import json
import logging
import uuid
from typing import Any

from app.core.config import get_settings

logger = logging.getLogger(__name__)

_BODY = json.dumps(
    {
        "type": "urn:balances:problem:request_timeout",
        "title": "Request timeout",
        "status": 408,
        "detail": "The request headers did not arrive in time.",
        "code": "request_timeout",
        "message": "The request headers did not arrive in time.",
    },
    separators=(",", ":"),
).encode()


def _response() -> bytes:
    """The 408, with an ``X-Request-ID`` of its own like every answer (the request's never
    arrived) so that a client's report and the server's log can still meet."""
    return (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
        b"x-request-id: " + uuid.uuid4().hex.encode() + b"\r\n"
        b"connection: close\r\n"
        b"\r\n" + _BODY
    )


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] installs httptools
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


if HttpToolsProtocol is not None:

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.header_timeout = get_settings().request_header_timeout_seconds
            self._header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:  # a new request on a kept-alive connection
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _timed_out(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            logger.info("request headers did not arrive within %gs; closing", self.header_timeout)
            self.transport.write(_response())
            self.transport.close()


def protocol() -> Any:
    """What to pass as ``uvicorn.run(http=...)``."""
    if HttpToolsProtocol is None:  # pragma: no cover
        logger.warning(
            "httptools is not installed: request headers have no deadline; put a reverse proxy "
            "with a header timeout in front"
        )
        return "auto"
    return HeaderTimeoutProtocol
