"""The ``Idempotency-Key`` header and the per-request ``Idempotency`` runner."""

from typing import Annotated

from fastapi import Depends, Header, Request

from app.auth.dependencies import PrincipalDep
from app.core.database import SessionDep
from app.core.dependencies import ClockDep
from app.core.errors import InvalidRequest
from app.idempotency.service import Idempotency, fingerprint


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1-255 printable characters. A retry with the same key and body gets "
            "the first answer again (header `Idempotent-Replayed: true`), never a second change.",
        ),
    ] = None,
) -> str | None:
    if key is not None and not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters.", "Idempotency-Key"
        )
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


async def get_idempotency(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    principal: PrincipalDep,
    key: IdempotencyKeyDep,
) -> Idempotency:
    body = await request.json() if key is not None else None
    return Idempotency(session, clock, principal.key_id, key, fingerprint(request.url.path, body))


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
