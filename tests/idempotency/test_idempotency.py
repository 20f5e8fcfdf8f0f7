"""Idempotency-Key: a retry replays the first answer; it never applies twice."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import FrozenClock
from app.sweeper import Sweeper
from tests.conftest import START
from tests.helpers import Api, problem

ADD = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 5}


@pytest.fixture
async def balance(api: Api) -> dict[str, Any]:
    return await api.create(included_grant=10)


async def test_replay_returns_the_same_bytes_and_changes_nothing(
    api: Api, balance: dict[str, Any]
) -> None:
    first = await api.post("balances.update", ADD, idempotency_key="k1")
    again = await api.post("balances.update", ADD, idempotency_key="k1")
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert api.ledger_kinds(balance["id"]) == ["create", "add"]


async def test_same_key_with_another_body_is_refused(api: Api, balance: dict[str, Any]) -> None:
    await api.post("balances.update", ADD, idempotency_key="k1")
    other = {**ADD, "add_to_balance": 6}
    problem(await api.post("balances.update", other, idempotency_key="k1"), 422,
            "idempotency_key_reused")  # fmt: skip
    assert api.ledger_kinds(balance["id"]) == ["create", "add"]


async def test_same_key_on_another_operation_is_refused(api: Api, balance: dict[str, Any]) -> None:
    await api.post("balances.update", ADD, idempotency_key="k1")
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 1}
    response = await api.post("balances.track", body, idempotency_key="k1")
    problem(response, 422, "idempotency_key_reused")


async def test_body_key_order_does_not_matter(api: Api, balance: dict[str, Any]) -> None:
    await api.post("balances.update", ADD, idempotency_key="k1")
    reordered = '{"add_to_balance": 5, "feature_id": "api_calls", "customer_id": "cus_1"}'
    again = await api.post("balances.update", reordered, idempotency_key="k1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"


async def test_twenty_concurrent_duplicates_apply_once(api: Api, balance: dict[str, Any]) -> None:
    responses = await asyncio.gather(
        *(api.post("balances.update", ADD, idempotency_key="burst") for _ in range(20))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert api.ledger_kinds(balance["id"]) == ["create", "add"]


async def test_a_retry_sent_with_a_rotated_api_key_replays_the_first_answer(
    api: Api, balance: dict[str, Any], keys: dict[str, str]
) -> None:
    first = await api.post("balances.update", ADD, idempotency_key="rotated")
    retry = await api.post(
        "balances.update", ADD, idempotency_key="rotated", authorization=f"Bearer {keys['admin']}"
    )
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    assert api.ledger_kinds(balance["id"]) == ["create", "add"]


async def test_domain_errors_are_replayed_too(api: Api) -> None:
    first = await api.post("balances.update", ADD, idempotency_key="k404")
    problem(first, 404, "balance_not_found")
    await api.create(included_grant=10)
    again = await api.post("balances.update", ADD, idempotency_key="k404")
    assert again.status_code == 404 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


async def test_validation_failures_are_not_stored(api: Api, balance: dict[str, Any]) -> None:
    bad = {**ADD, "add_to_balance": "five"}
    problem(await api.post("balances.update", bad, idempotency_key="k1"), 422, "invalid_request")
    good = await api.post("balances.update", ADD, idempotency_key="k1")
    assert good.status_code == 200 and "idempotent-replayed" not in good.headers


async def test_ledger_records_the_idempotency_key(api: Api, balance: dict[str, Any]) -> None:
    await api.post("balances.update", ADD, idempotency_key="k-ledger")
    row = api.db.execute("SELECT idempotency_key FROM balance_ledger WHERE kind = 'add'").fetchone()
    assert row == ("k-ledger",)


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9".encode(), "tab\tkey"])
async def test_malformed_idempotency_key_is_refused(
    api: Api, balance: dict[str, Any], key: str | bytes
) -> None:
    raw = key if isinstance(key, bytes) else key.encode()
    response = await api.client.post(
        "/v1/balances.update",
        json=ADD,
        headers={b"idempotency-key": raw, b"authorization": f"Bearer {api.secret}".encode()},
    )
    problem(response, 422, "invalid_request")
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_records_are_purged_after_retention(
    api: Api, balance: dict[str, Any], clock: FrozenClock, sweeper: Sweeper
) -> None:
    for n in range(3):
        await api.post("balances.update", ADD, idempotency_key=f"old-{n}")
    clock.set(START + timedelta(hours=23))
    assert await sweeper.purge_idempotency_keys() == 0
    clock.set(START + timedelta(hours=25))
    assert await sweeper.purge_idempotency_keys() == 3
    again = await api.post("balances.update", ADD, idempotency_key="old-0")
    assert "idempotent-replayed" not in again.headers
