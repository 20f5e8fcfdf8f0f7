"""Opaque pagination cursors: the last row's sort key, base64url-encoded JSON.

A cursor comes back from the client, so it is untrusted input: anything but a cursor this service
could have made is ``422 invalid_cursor`` before it reaches the database. That includes values
Postgres itself would refuse (a NUL byte or a lone surrogate in text, an integer outside
``bigint``), which would otherwise surface as a 500.
"""

import base64
import binascii
import json
from typing import Any

from app.core.errors import InvalidCursor

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_MESSAGE = "start_cursor is not a cursor this service returned."


def encode_cursor(*key: str | int) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _storable(part: object) -> bool:
    """True if Postgres can take ``part`` as a ``text`` or ``bigint`` parameter."""
    if type(part) is int:
        return BIGINT_MIN <= part <= BIGINT_MAX
    if type(part) is str:
        if "\x00" in part:
            return False
        try:
            part.encode("utf-8")  # fails on a lone surrogate ("\ud800")
        except UnicodeEncodeError:
            return False
    return True


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """Decode a cursor made by ``encode_cursor``; 422 ``invalid_cursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as error:
        # ValueError covers non-ASCII text, bytes that are not UTF-8, non-JSON, and integers
        # longer than Python's 4300-digit conversion limit.
        raise InvalidCursor(_MESSAGE) from error
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(type(part) is kind for part, kind in zip(key, types, strict=True))
        or not all(_storable(part) for part in key)
    ):
        raise InvalidCursor(_MESSAGE)
    return tuple(key)
