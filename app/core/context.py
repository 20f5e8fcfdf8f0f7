"""Who is asking and under which request: recorded on every ledger entry."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str | None = None
    api_key_id: str | None = None
    idempotency_key: str | None = None
