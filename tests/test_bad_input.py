"""Bodies that are not text: a lone surrogate is refused as invalid JSON, and nothing is written.

JSON allows ``"\\ud800"``, an escape for half of a UTF-16 pair with no other half; so does
Python's parser, which also turns the raw bytes ``ED A0 80`` (a surrogate encoded as UTF-8,
which UTF-8 forbids) into the same lone surrogate. Such a string is no Unicode text: it cannot
be encoded, stored in Postgres or logged as UTF-8. The service refuses the body as a whole
(RFC 7493, I-JSON) with 422 invalid_request, wherever the string is and whatever the operation.
"""

import uuid
from typing import Any

import pytest

from app.core.json import dumps_exact
from tests.helpers import Api, problem

HOLE = "@@surrogate@@"
SURROGATES = {
    "high escape": rb"\ud800",
    "low escape": rb"\uDC00",
    "reversed pair": rb"\udc00\ud800",
    "utf-8 bytes": b"\xed\xa0\x80",
}
NOT_TEXT = "the body is not valid JSON (NaN, Infinity and lone surrogates included)"
TABLES = ("balances", "balance_ledger", "balance_locks", "lock_ids", "idempotency_keys")

# One valid body per POST operation; each would change or read the balance set up below.
BODIES: dict[str, dict[str, Any]] = {
    "balances.create": {"customer_id": "cus_1", "feature_id": "seats", "included_grant": 1},
    "balances.update": {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1},
    "balances.list": {"customer_id": "cus_1"},
    "balances.delete": {"customer_id": "cus_1", "feature_id": "api_calls"},
    "balances.check": {"customer_id": "cus_1", "feature_id": "api_calls", "send_event": True},
    "balances.track": {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1},
    "balances.batch_track": {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1},
    "balances.finalize": {"customer_id": "cus_1", "lock_id": "job_1", "action": "release"},
    "balances.history": {"customer_id": "cus_1", "feature_id": "api_calls"},
}
# Fields that take any string (or any JSON), where no schema rule looks at the characters.
FREE_FORM: dict[str, list[dict[str, Any]]] = {
    "balances.list": [{"plan_id": HOLE}, {"start_cursor": HOLE}],
    "balances.history": [{"start_cursor": HOLE}],
    "balances.check": [{"properties": {"note": HOLE}}, {"properties": {HOLE: 1}}],
    "balances.track": [{"properties": {"note": [HOLE]}}, {"properties": {HOLE: 1}}],
    "balances.batch_track": [{"properties": {"note": HOLE}}, {"properties": {HOLE: 1}}],
    "balances.finalize": [{"properties": {"note": HOLE}}, {"properties": {HOLE: 1}}],
}


BATCHES = {"balances.batch_track"}  # the body is an array of such items


def placements(path: str) -> list[Any]:
    """The operation's body with HOLE in customer_id, then in each free-form field."""
    body = BODIES[path]
    bodies = [
        {**body, "customer_id": HOLE},
        *({**body, **extra} for extra in FREE_FORM.get(path, [])),
    ]
    return [[body] for body in bodies] if path in BATCHES else bodies


def counts(api: Api) -> dict[str, int]:
    return {table: api.count(table) for table in TABLES}


@pytest.fixture
async def balance(api: Api) -> None:
    """A balance of cus_1 with a lock on it: every body above would otherwise find something."""
    await api.create(included_grant=10)
    lock = {"lock_id": "job_1", "enabled": True}
    await api.ok("balances.check", {**BODIES["balances.check"], "send_event": None, "lock": lock})


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "idempotency key"])
@pytest.mark.parametrize("path", list(BODIES))
async def test_a_lone_surrogate_is_invalid_json_and_writes_nothing(
    api: Api, balance: None, path: str, with_key: bool
) -> None:
    before = counts(api)
    for body in placements(path):
        template = dumps_exact(body)
        assert HOLE.encode() in template
        for name, surrogate in SURROGATES.items():
            raw = template.replace(HOLE.encode(), surrogate)
            key = f"surrogate-{uuid.uuid4()}" if with_key else None
            response = await api.post(path, raw, idempotency_key=key)
            where = (path, raw, name)
            details = problem(response, 422, "invalid_request")
            assert details["errors"] == [{"loc": ["body"], "msg": NOT_TEXT}], where
    assert counts(api) == before


async def test_a_surrogate_pair_is_one_character_and_is_accepted(api: Api) -> None:
    """The escape of an astral character (U+1F600) is two surrogates: together, valid text."""
    raw = rb'{"customer_id": "cus_1", "feature_id": "emoji_\ud83d\ude00", "included_grant": 1}'
    response = await api.post("balances.create", raw)
    assert response.status_code == 200, response.text
    assert response.json()["balance"]["feature_id"] == "emoji_\N{GRINNING FACE}"
