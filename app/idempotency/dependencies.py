"""The ``Idempotency-Key`` header, and the envelope every write command travels in."""

import hashlib
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from pydantic import WithJsonSchema

from app.auth.dependencies import PrincipalDep
from app.auth.service import Principal
from app.batcher.protocols import Envelope, IdempotencyClaim
from app.core.context import RequestContext
from app.core.errors import InvalidRequest
from app.core.json import dumps_exact
from app.core.types import IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_SCHEMA
from app.idempotency.models import DEPLOYMENT


async def idempotency_key(
    key: Annotated[
        str | None,
        WithJsonSchema(IDEMPOTENCY_KEY_SCHEMA),
        Header(
            alias="Idempotency-Key",
            description="1-255 printable ASCII characters, no space at either end. A retry "
            "with the same key and body gets the first answer again (header "
            "`Idempotent-Replayed: true`), never a second change.",
        ),
    ] = None,
) -> str | None:
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters, no space at either end.",
            "Idempotency-Key",
        )
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


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


async def get_envelope(
    request: Request, principal: PrincipalDep, key: IdempotencyKeyDep
) -> Envelope:
    body = await request.json() if key is not None else None
    return envelope_for(request, principal, key, body)


def envelope_for(request: Request, principal: Principal, key: str | None, body: Any) -> Envelope:
    """One ``now`` for the request, who asks, and the claim on its Idempotency-Key."""
    claim = None
    if key is not None:
        claim = IdempotencyClaim(DEPLOYMENT, key, fingerprint(request.url.path, body))
    context = RequestContext(
        request_id=getattr(request.state, "request_id", None),
        api_key_id=principal.key_id,
        idempotency_key=key,
    )
    return Envelope(request.app.state.clock.now(), context, claim)


EnvelopeDep = Annotated[Envelope, Depends(get_envelope)]
