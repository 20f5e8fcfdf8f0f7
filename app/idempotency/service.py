"""Idempotent mutations: a retried request returns the first answer instead of applying twice.

The key, the request's fingerprint and the answer are written in the same transaction as the
change. A domain error is an answer too (a retry gets the same 404 or 409), so the change is
rolled back to a savepoint and the error stored; request validation failures never reach here.
"""

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.core.database import COMMITTED_KINDS_KEY
from app.core.errors import DomainError, IdempotencyKeyReused, ServiceUnavailable
from app.core.json import dumps_exact
from app.core.metrics import IDEMPOTENT_REPLAYS
from app.core.problems import problem_response
from app.idempotency.repository import IdempotencyRepository

REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(path: str, body: Any) -> bytes:
    """What makes two requests "the same": the path and the body, keys sorted."""
    canonical = dumps_exact(_sorted(body))
    return hashlib.sha256(path.encode() + b"\n" + canonical).digest()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


class Idempotency:
    """Runs one mutation under an ``Idempotency-Key`` (or plainly, when there is none)."""

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        api_key_id: str | None,
        key: str | None,
        request_fingerprint: bytes,
    ) -> None:
        self.repository = IdempotencyRepository(session)
        self.session = session
        self.clock = clock
        self.api_key_id = api_key_id or "-"  # auth off (development): one shared key space
        self.key = key
        self.fingerprint = request_fingerprint

    async def run(self, mutation: Callable[[], Awaitable[Response]]) -> Response:
        if self.key is None:
            return await mutation()
        claimed = await self.repository.claim(
            self.api_key_id, self.key, self.fingerprint, self.clock.now()
        )
        if not claimed:
            return await self._replay()
        kinds = self.session.info.setdefault(COMMITTED_KINDS_KEY, [])
        written_before = len(kinds)
        savepoint = await self.session.begin_nested()
        try:
            response = await mutation()
        except DomainError as error:
            await savepoint.rollback()
            del kinds[written_before:]  # rolled back: not mutations to count
            response = problem_response(error)
        else:
            await savepoint.commit()
        await self.repository.store_response(
            self.api_key_id,
            self.key,
            response.status_code,
            response.media_type or "application/json",
            bytes(response.body),
        )
        return response

    async def _replay(self) -> Response:
        assert self.key is not None
        # The conflicting row was committed (the claim waited for it) together with its answer.
        record = await self.repository.get(self.api_key_id, self.key)
        if record is None or record.status_code is None or record.response_body is None:
            raise ServiceUnavailable(
                "idempotency_conflict", "This Idempotency-Key is changing hands; retry."
            )
        if record.fingerprint != self.fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different request."
            )
        response = Response(
            content=record.response_body,
            status_code=record.status_code,
            media_type=record.content_type,
        )
        response.headers[REPLAYED_HEADER] = "true"
        IDEMPOTENT_REPLAYS.inc()
        return response
