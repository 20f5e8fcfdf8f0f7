"""Bad input is a 4xx (issue 11): a schema-driven fuzzer over every operation of /openapi.json.

Schemathesis generates requests from the OpenAPI document: its examples, boundary and negative
"coverage" cases, then random ones, valid and invalid. Every answer is checked against the
document: no 5xx (the documented 503s must not happen here either: nothing is contended), and
the status code, content type and body each as documented; invalid input must be refused.

Each operation runs twice: without an ``Idempotency-Key``, and with one (the value schemathesis
generated, valid or not, else a fresh one), so the idempotent write path is fuzzed too.

Deterministic and bounded: a fixed seed, no example database, a few dozen random examples per
operation. Marked ``slow``: ``pytest -m slow`` runs it alone, ``-m "not slow"`` skips it.

The schema is loaded at import, from the document the app builds, rather than through
``schemathesis.pytest.from_fixture``: that loader renames pytest items through
``Node._nodeid``, which pytest 9.2 no longer has. The fixture binds the app under test to it.
"""

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import CheckFunction
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import Receive, Scope, Send

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.types import to_epoch_ms
from app.main import create_app
from tests.conftest import START

pytestmark = pytest.mark.slow

CONFIG = {
    "seed": 11,
    "generation": {"max-examples": 25, "database": "none"},
    # Every check is on, positive_data_acceptance too: a request the document calls valid is
    # accepted (or meets the balances that exist: 404, 409). The document states the rules
    # across fields; what it cannot state is left to POSITIVE and STATE_DEPENDENT below.
}


def _document() -> dict[str, Any]:
    """The OpenAPI document; building it needs no database."""
    return create_app(Settings(database_url="postgresql://unused@/unused")).openapi()


class AppUnderTest:
    """The ASGI app the schema sends to: bound by the fixture, once the test database exists."""

    app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "the fuzz_app fixture binds the app"
        await self.app(scope, receive, send)


APP = AppUnderTest()
DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(CONFIG))
schema.app = APP  # schemathesis runs it (and its lifespan) on one event loop of its own


@pytest.fixture(scope="module")
def fuzz_app(database_url: str) -> Iterator[FastAPI]:
    app = create_app(Settings(database_url=database_url), clock=FrozenClock(START))
    assert app.openapi() == DOCUMENT
    APP.app = app
    yield app
    shutdown_lifespans()  # the batcher stops, the pool closes
    APP.app = None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE balances, balance_ledger, balance_locks, lock_ids, idempotency_keys"
            " RESTART IDENTITY"
        )


# Random IDs would almost never name the same balance twice, and updates, tracks and finalizes
# would stop at 404. Valid IDs are mapped onto a few, so that requests meet existing balances
# and locks and go deeper. The mapping depends only on the generated value: still deterministic.
POOLS = {"customer_id": 2, "feature_id": 2, "entity_id": 2, "balance_id": 3, "lock_id": 3}


def _pooled(field: str, value: str) -> str:
    return f"{field.removesuffix('_id')}_{sum(map(ord, value)) % POOLS[field]}"


def _narrow_ids(case: schemathesis.Case[Any]) -> None:
    body_info = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
    if body_info is None or body_info.mode != GenerationMode.POSITIVE:
        return  # an invalid body stays exactly as generated
    body = case.body
    if not isinstance(body, dict):
        return
    for field in POOLS:
        if isinstance(value := body.get(field), str):
            body[field] = _pooled(field, value)
    lock = body.get("lock")
    if isinstance(lock, dict) and isinstance(lock_id := lock.get("lock_id"), str):
        lock["lock_id"] = _pooled("lock_id", lock_id)


# What JSON Schema cannot say of a valid body, brought into line in the cases meant to be
# valid: times relative to now (the fuzz app's clock is START), and at most 9 decimal places
# (stated in prose: `multipleOf` is tested in binary floating point, see app.core.types).
START_MS = to_epoch_ms(START)
YEAR_MS = 365 * 24 * 3600 * 1000
# In the future; a balance expires after its first reset (else a rollover could never happen).
FUTURE = {"next_reset_at": 1, "expires_at": 20 * YEAR_MS}
LOCK_EXPIRY = 24 * 3600 * 1000  # lock.expires_at: at most 24 hours ahead
PAST = {"timestamp"}  # not in the future


def _positive(value: Any, key: str = "", parent: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _positive(v, k, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_positive(item, parent=key) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if key in (*FUTURE, *PAST):  # an integer, possibly generated as 3.0
        millis = int(value)
        if key == "expires_at" and parent == "lock":
            return START_MS + 1 + millis % LOCK_EXPIRY
        if key in FUTURE:
            return START_MS + FUTURE[key] + millis % (10 * YEAR_MS)
        return millis % (START_MS + 1)
    return round(value, 9) if isinstance(value, float) else value


def _bring_into_line(case: schemathesis.Case[Any]) -> None:
    body_info = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
    if body_info is not None and body_info.mode == GenerationMode.POSITIVE:
        case.body = _positive(case.body)


# 422s a valid body gets from the state it meets, as 404 and 409 are: opaque cursors (a made-up
# cursor is refused), amounts pushed past 10^15 by what is already there, an Idempotency-Key an
# earlier case used for another body, a `next_reset_at` for a balance that turns out to be
# one_off, and a delete that moves usage nobody can take.
STATE_DEPENDENT = {
    ("idempotency_key_reused", None),
    ("invalid_cursor", None),
    ("amount_out_of_range", None),
    ("invalid_request", "/v1/balances.update next_reset_at"),
    ("invalid_request", "/v1/balances.delete recalculate_balances"),
    ("invalid_request", "/v1/balances.delete entity_id"),
}


def _state_dependent(case: schemathesis.Case[Any], response: Any) -> bool:
    if response.status_code != 422:
        return False
    problem = response.json()
    where = [f"{case.path} {'.'.join(map(str, e['loc']))}" for e in problem.get("errors") or []]
    return (problem["code"], None) in STATE_DEPENDENT or any(
        (problem["code"], place) in STATE_DEPENDENT for place in where
    )


_fresh_keys = itertools.count()


@pytest.mark.parametrize("idempotency_key", [False, True], ids=["no key", "idempotency key"])
@schema.parametrize()
def test_fuzz(
    case: schemathesis.Case[Any],
    fuzz_app: FastAPI,
    keys: dict[str, str],
    idempotency_key: bool,
) -> None:
    _narrow_ids(case)
    _bring_into_line(case)
    headers = case.headers  # changed in place: it is case-insensitive, as HTTP headers are
    if not idempotency_key:
        headers.pop("Idempotency-Key", None)
    elif case.method == "POST" and "Idempotency-Key" not in headers:
        headers["Idempotency-Key"] = f"fuzz-{next(_fresh_keys)}"
    authorization = f"Bearer {keys['write']}"
    sent = {"Authorization": authorization}
    response = case.call(headers=sent)
    excluded: list[CheckFunction] = (
        [positive_data_acceptance] if _state_dependent(case, response) else []
    )
    case.validate_response(response, headers=sent, excluded_checks=excluded)
    if response.request.headers.get("Authorization") == authorization:
        # Unless a case drops or mangles the key on purpose, it is valid and has the scope.
        assert response.status_code not in (401, 403), response.text
