"""Opaque pagination cursors: the last row's sort key, base64url-encoded JSON."""

import base64
import binascii
import json
from typing import Any

from app.core.errors import InvalidCursor


def encode_cursor(*key: str | int) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """Decode a cursor made by ``encode_cursor``; 422 ``invalid_cursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as error:
        raise InvalidCursor("start_cursor is not a cursor this service returned.") from error
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(type(part) is kind for part, kind in zip(key, types, strict=True))
    ):
        raise InvalidCursor("start_cursor is not a cursor this service returned.")
    return tuple(key)
