"""A rendered answer: status, media type, headers and body bytes, ready to send or to store.

The write path renders each command's answer inside its transaction, so the same bytes can be
stored for an Idempotency-Key and replayed byte for byte.
"""

from dataclasses import dataclass, field

from starlette.responses import Response


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def to_response(self) -> Response:
        return Response(self.body, self.status, self.headers or None, self.media_type)
