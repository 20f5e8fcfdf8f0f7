"""Crafted pagination cursors are a 422 invalid_cursor, never a 500, on every paged operation."""

import base64
import json
from collections.abc import Mapping

import httpx
import pytest

from app.core.cursor import decode_cursor, encode_cursor
from app.core.errors import InvalidCursor
from tests.helpers import Api, problem


async def post(api: Api, path: str, body: Mapping[str, object]) -> httpx.Response:
    """JSON with every non-ASCII character escaped, so a lone surrogate reaches the service."""
    return await api.post(path, json.dumps(body))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# What an attacker can put in a cursor, at each layer: the text itself, its base64, its JSON.
CRAFTED = {
    "nul_in_text": "eyJh\x00IjoxfQ",
    "non_ascii_text": "éé",
    "base64_garbage": "!!!!",
    "bad_base64_padding": "a",
    "not_utf8": b64(b"\xff\xfe\xfd"),
    "not_json": b64(b"not json"),
    "nul_in_json_string": b64(json.dumps(["cus_1\x00", "b"]).encode()),
    "lone_surrogate_in_json_string": b64(b'["\\ud800", "b"]'),
    "escaped_nul_in_json_string": b64(b'["\\u0000", "b"]'),
    "huge_integer_digits": b64(b"[" + b"9" * 1400 + b"]"),
    "integer_above_bigint": b64(json.dumps([2**63]).encode()),
    "integer_below_bigint": b64(json.dumps([-(2**63) - 1]).encode()),
    "float_infinity": b64(b"[1e999]"),
    "nan": b64(b"[NaN]"),
    "boolean_for_integer": b64(b"[true]"),
    "object": b64(b'{"a": 1}'),
    "deep": b64(b"[" * 1500),
}


@pytest.mark.parametrize("cursor", CRAFTED.values(), ids=list(CRAFTED))
async def test_a_crafted_list_cursor_is_invalid_cursor(api: Api, cursor: str) -> None:
    await api.create()
    body = {"customer_id": "cus_1", "start_cursor": cursor}
    problem(await post(api, "balances.list", body), 422, "invalid_cursor")


@pytest.mark.parametrize("cursor", CRAFTED.values(), ids=list(CRAFTED))
async def test_a_crafted_history_cursor_is_invalid_cursor(api: Api, cursor: str) -> None:
    balance = await api.create()
    body = {"balance_id": balance["id"], "start_cursor": cursor}
    problem(await post(api, "balances.history", body), 422, "invalid_cursor")


@pytest.mark.parametrize("cursor", CRAFTED.values(), ids=list(CRAFTED))
async def test_a_crafted_feature_history_cursor_is_invalid_cursor(api: Api, cursor: str) -> None:
    await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "start_cursor": cursor}
    problem(await post(api, "balances.history", body), 422, "invalid_cursor")


@pytest.mark.parametrize("operation", ["balances.list", "balances.history"])
async def test_a_lone_surrogate_in_the_cursor_text_is_a_422(api: Api, operation: str) -> None:
    """The request schema refuses it first (a str must be valid Unicode): 422, nothing read."""
    await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "start_cursor": "\ud800abc"}
    problem(await post(api, operation, body), 422, "invalid_request")


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 0])
def test_history_cursors_at_the_bigint_bounds_still_decode(value: int) -> None:
    assert decode_cursor(encode_cursor(value), int) == (value,)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**40])
def test_integers_outside_bigint_are_refused(value: int) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(b64(json.dumps([value]).encode()), int)


def test_unicode_ids_round_trip() -> None:
    assert decode_cursor(encode_cursor("cüs_1", "bål"), str, str) == ("cüs_1", "bål")
