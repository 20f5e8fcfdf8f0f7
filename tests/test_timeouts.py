"""A client that sends its headers or body slowly gets 408 and loses its connection.

The body deadline lives in ``BodyLimitMiddleware`` (tested here at the ASGI level, with a
``receive`` that never completes); the header deadline in the HTTP protocol ``balances serve``
gives uvicorn. Both are then tested end to end, over raw sockets against a real service.
"""

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.core.middleware import BodyLimitMiddleware
from tests.helpers import RunningService

# --- the body deadline, at the ASGI level --------------------------------------------------------


async def call(middleware: BodyLimitMiddleware, receive: Any) -> tuple[list[Any], float]:
    """Run one request through ``middleware``; the messages it sent, and how long it took."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"10")],
    }
    started = time.monotonic()
    await middleware(scope, receive, send)
    return sent, time.monotonic() - started


async def never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not run for a request whose body never arrived")


def assert_408(sent: list[Any]) -> None:
    start, body = sent[0], sent[1]
    assert start["status"] == 408
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"
    problem = json.loads(body["body"])
    assert problem["code"] == "request_timeout" and problem["status"] == 408


async def test_a_body_that_never_arrives_is_408_at_the_deadline() -> None:
    async def receive() -> Any:
        await asyncio.Event().wait()  # the client sent its headers, then nothing

    middleware = BodyLimitMiddleware(never_called, max_bytes=1024, timeout_seconds=0.3)
    sent, took = await asyncio.wait_for(call(middleware, receive), timeout=5)
    assert_408(sent)
    assert 0.3 <= took < 2


async def test_a_trickled_body_is_408_at_the_deadline_for_the_whole_body() -> None:
    async def receive() -> Any:
        await asyncio.sleep(0.05)  # a byte at a time, each well inside any per-read timeout
        return {"type": "http.request", "body": b" ", "more_body": True}

    middleware = BodyLimitMiddleware(never_called, max_bytes=1024, timeout_seconds=0.3)
    sent, took = await asyncio.wait_for(call(middleware, receive), timeout=5)
    assert_408(sent)
    assert 0.3 <= took < 2


async def test_a_body_in_time_reaches_the_app_whole() -> None:
    chunks = [b'{"a":', b" 1}"]
    seen: list[bytes] = []

    async def receive() -> Any:
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = BodyLimitMiddleware(app, max_bytes=1024, timeout_seconds=5)
    sent, _ = await call(middleware, receive)
    assert seen == [b'{"a": 1}'] and sent[0]["status"] == 204


def test_the_deadline_defaults_to_the_setting() -> None:
    from app.core.config import Settings

    middleware = BodyLimitMiddleware(never_called, max_bytes=1024)

    class App:
        class state:  # shaped like Starlette's app.state
            settings = Settings(request_body_timeout_seconds=3.5)

    assert middleware._timeout({"app": App()}) == 3.5
    assert middleware._timeout({}) == 10  # no app in scope: the environment's setting


# --- end to end, against `balances serve` --------------------------------------------------------

DEADLINE = 1.0


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[RunningService]:
    env = {
        "DATABASE_URL": database_url,
        "BALANCES_REQUEST_HEADER_TIMEOUT_SECONDS": str(DEADLINE),
        "BALANCES_REQUEST_BODY_TIMEOUT_SECONDS": str(DEADLINE),
    }
    running = RunningService(env).wait_ready()
    yield running
    assert running.stop() == 0


def connect(service: RunningService) -> socket.socket:
    host, port = service.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, trickle: bytes = b"") -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed.

    With ``trickle``, one byte of it is sent every 0.2 s meanwhile (a slowloris client).
    """
    started = time.monotonic()
    received = b""
    sock.settimeout(0.2 if trickle else 10)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if time.monotonic() - started > 10:
                raise AssertionError("the server never closed the connection") from None
            if trickle:
                with contextlib.suppress(OSError):
                    sock.sendall(trickle[:1])
                trickle = trickle[1:] or trickle
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def assert_408_problem(response: bytes) -> None:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), response
    assert b"application/problem+json" in head.lower()
    assert b"\r\nx-request-id: " in head.lower()  # like every answer, for the report
    assert json.loads(body)["code"] == "request_timeout"


def test_a_request_body_that_stops_arriving_is_408(service: RunningService) -> None:
    with connect(service) as sock:
        sock.sendall(
            b"POST /v1/balances.list HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"customer_id"'
        )
        # Meanwhile the service keeps serving everyone else.
        assert httpx.get(f"{service.url}/healthz").status_code == 200
        response, took = read_until_closed(sock)
    assert_408_problem(response)
    assert took < DEADLINE + 3  # cut off by the deadline, not by a client or server timeout


def test_a_trickled_body_is_cut_off_at_the_deadline(service: RunningService) -> None:
    with connect(service) as sock:
        sock.sendall(
            b"POST /v1/balances.list HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        response, took = read_until_closed(sock, trickle=b" " * 1000)
    assert_408_problem(response)
    assert took < DEADLINE + 3


def test_headers_that_stop_arriving_are_408(service: RunningService) -> None:
    with connect(service) as sock:
        sock.sendall(b"POST /v1/balances.list HTTP/1.1\r\nHost: x\r\n")
        response, took = read_until_closed(sock)
    assert_408_problem(response)
    assert took < DEADLINE + 3  # cut off by the deadline, not by a client or server timeout


def test_trickled_headers_are_cut_off_at_the_deadline(service: RunningService) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        response, took = read_until_closed(sock, trickle=b"X-Slow: " + b"a" * 1000)
    assert_408_problem(response)
    assert took < DEADLINE + 3


def test_a_connection_that_sends_nothing_is_closed(service: RunningService) -> None:
    with connect(service) as sock:
        _, took = read_until_closed(sock)
    assert took < DEADLINE + 3  # cut off by the deadline, not by a client or server timeout


def test_a_kept_alive_connection_gets_a_fresh_header_deadline(service: RunningService) -> None:
    with httpx.Client(base_url=service.url) as client:
        for _ in range(3):  # the same connection, reused across more than one deadline
            assert client.get("/healthz").status_code == 200
            time.sleep(DEADLINE * 0.6)
