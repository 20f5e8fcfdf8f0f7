"""balances.batch_track: up to 1000 tracks in one call, applied in order in one transaction,
each item answered on its own, the whole call exactly-once under one Idempotency-Key."""

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from autumn_sdk import Autumn
from autumn_sdk.models import RequestBodyTypedDict

from app.core.json import dumps_exact, loads_exact
from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem


def item(customer_id: str = "cus_1", feature_id: str = "api_calls", **fields: Any) -> Any:
    return {"customer_id": customer_id, "feature_id": feature_id, **fields}


async def batch(api: Api, items: list[Any], **headers: str) -> dict[str, Any]:
    response = await api.post("balances.batch_track", items, **headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = loads_exact(response.content)
    return result


async def remaining(api: Api, customer_id: str, feature_id: str) -> Any:
    page = await api.ok("balances.list", {"customer_id": customer_id, "feature_id": feature_id})
    return sum(b["remaining"] for b in page["list"])


def tracks(api: Api) -> int:
    row = api.db.execute("SELECT count(*) FROM balance_ledger WHERE kind = 'track'").fetchone()
    assert row is not None
    return int(row[0])


async def test_every_item_is_applied_in_order_and_answered_on_its_own(api: Api) -> None:
    await api.create(included_grant=10)
    await api.create(customer_id="cus_2", feature_id="tokens", included_grant=5)
    future = to_epoch_ms(START) + 60_000
    result = await batch(
        api,
        [
            item(value=3),
            item("cus_2", "tokens", value=2),
            item(entity_id="e1"),  # the entity has no balance: its customer's pool
            item(feature_id="missing"),
            item("cus_2", "tokens", value=10, overage_behavior="reject"),
            item(value=1, timestamp=future),
            item(value=4),
        ],
    )
    statuses = [r["status"] for r in result["results"]]
    assert statuses == [200, 200, 200, 404, 409, 422, 200]
    assert (result["success"], result["applied"], result["failed"]) == (True, 4, 3)
    assert [r["success"] for r in result["results"]] == [s == 200 for s in statuses]
    applied = [r["result"] for r in result["results"] if r["success"]]
    assert [(r["customer_id"], r["deducted"]) for r in applied] == [
        ("cus_1", 3),
        ("cus_2", 2),
        ("cus_1", 1),
        ("cus_1", 4),
    ]
    assert [r["balance"]["remaining"] for r in applied] == [7, 3, 6, 2]  # each sees the last
    errors = [r["error"] for r in result["results"] if not r["success"]]
    assert [e["code"] for e in errors] == [
        "balance_not_found",
        "insufficient_balance",
        "invalid_request",
    ]
    assert all(r["result"] is None for r in result["results"] if not r["success"])
    assert all(e["message"] and e["status"] != 200 for e in errors)
    assert await remaining(api, "cus_1", "api_calls") == 2
    assert await remaining(api, "cus_2", "tokens") == 3
    assert tracks(api) == 4
    assert api.invariant_violations() == []


async def test_a_failed_item_changes_nothing_and_later_items_see_that(api: Api) -> None:
    await api.create(included_grant=5)
    result = await batch(
        api,
        [item(value=4), item(value=2, overage_behavior="reject"), item(value=1)],
    )
    assert [r["status"] for r in result["results"]] == [200, 409, 200]
    assert result["results"][2]["result"]["balance"]["remaining"] == 0
    assert tracks(api) == 2


async def test_a_retry_with_the_same_idempotency_key_applies_nothing_again(api: Api) -> None:
    await api.create(included_grant=10)
    await api.create(customer_id="cus_2", included_grant=10)
    items = [item(value=3), item("cus_2", value=4), item(feature_id="missing")]
    first = await api.post("balances.batch_track", items, idempotency_key="batch-1")
    again = await api.post("balances.batch_track", items, idempotency_key="batch-1")
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert tracks(api) == 2
    assert await remaining(api, "cus_1", "api_calls") == 7
    assert await remaining(api, "cus_2", "api_calls") == 6
    other = await api.post("balances.batch_track", items[:1], idempotency_key="batch-1")
    problem(other, 422, "idempotency_key_reused")
    assert tracks(api) == 2


@pytest.mark.parametrize(
    "body",
    [
        [],
        [item()] * 1001,
        [item(), {"customer_id": "cus_1"}],
        [item(), item(value="3")],
        [item(event_name="call")],
        [item(idempotency_key="once")],
        item(),
    ],
    ids=["empty", "1001", "no-feature", "string-value", "event-name", "item-key", "object"],
)
async def test_a_malformed_batch_is_refused_whole(api: Api, body: Any) -> None:
    await api.create(included_grant=10)
    problem(await api.post("balances.batch_track", body), 422, "invalid_request")
    assert tracks(api) == 0


async def test_a_read_key_cannot_batch_track(api: Api, keys: dict[str, str]) -> None:
    await api.create(included_grant=10)
    response = await api.post(
        "balances.batch_track", [item()], authorization=f"Bearer {keys['read']}"
    )
    problem(response, 403, "forbidden")


async def test_a_thousand_items_fit_in_one_call(api: Api) -> None:
    customers = [f"cus_{n:012d}" for n in range(10)]
    for customer in customers:
        await api.create(customer_id=customer, included_grant=1000)
    items = [
        item(customers[n % 10], value=Decimal("0.5"), properties={"request": f"req_{n:06d}"})
        for n in range(1000)
    ]
    assert len(dumps_exact(items)) > 64 * 1024  # more than any other request may send
    result = await batch(api, items)
    assert result["applied"] == 1000
    for customer in customers:
        assert await remaining(api, customer, "api_calls") == 950
    too_big = [item(properties={"padding": "x" * 2000})] * 600
    problem(await api.post("balances.batch_track", too_big), 413, "payload_too_large")


async def test_batches_across_customers_and_single_tracks_never_overshoot(api: Api) -> None:
    customers = [f"cus_{n}" for n in range(6)]
    for customer in customers:
        await api.create(customer_id=customer, included_grant=30)
    batches = [[item(c, value=1) for c in customers] * 5 for _ in range(8)]  # 40 each
    singles = [item(c, value=1) for c in customers for _ in range(10)]  # 10 each
    responses = await asyncio.gather(
        *(api.post("balances.batch_track", b) for b in batches),
        *(api.post("balances.track", s) for s in singles),
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    for customer in customers:
        assert await remaining(api, customer, "api_calls") == 0  # capped at 30 of 50
    deducted = sum(
        Decimal(str(x["result"]["deducted"]))
        for r in responses[: len(batches)]
        for x in r.json()["results"]
    ) + sum(Decimal(str(r.json()["deducted"])) for r in responses[len(batches) :])
    assert deducted == 30 * len(customers)
    assert api.invariant_violations() == []


# --- through the official client -------------------------------------------------------------


@pytest.fixture
def answers(
    service_url: str, db: psycopg.Connection, keys: dict[str, str]
) -> Iterator[tuple[Autumn, list[Any]]]:
    """The client, and the JSON bodies of the batch_track answers it received."""
    seen: list[Any] = []

    def record(response: httpx.Response) -> None:
        if response.request.url.path == "/v1/balances.batch_track":
            response.read()
            seen.append(json.loads(response.content))

    http = httpx.Client(event_hooks={"response": [record]})
    with Autumn(secret_key=keys["write"], server_url=service_url, client=http) as autumn:
        yield autumn, seen


def test_sdk_batch_tracks_across_customers_and_entities(
    answers: tuple[Autumn, list[Any]], customer: str
) -> None:
    autumn, seen = answers
    other = f"{customer}_b"
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=10)
    autumn.balances.create(customer_id=other, feature_id="api_calls", included_grant=10)
    request: list[RequestBodyTypedDict] = [
        {"customer_id": customer, "feature_id": "api_calls", "value": 3},
        {"customer_id": other, "feature_id": "api_calls", "value": 2, "properties": {"a": 1}},
        {"customer_id": customer, "feature_id": "api_calls", "entity_id": "e1"},
        {"customer_id": customer, "feature_id": "missing"},
        {"customer_id": other, "feature_id": "api_calls", "value": 20, "overage_behavior": "cap"},
    ]
    done = autumn.batch_track(request=request)
    assert done.success is True
    [body] = seen
    assert [r["status"] for r in body["results"]] == [200, 200, 200, 404, 200]
    assert [r["result"]["deducted"] for r in body["results"] if r["success"]] == [3, 2, 1, 8]
    [mine] = autumn.balances.list(customer_id=customer).list
    [theirs] = autumn.balances.list(customer_id=other).list
    assert (mine.remaining, theirs.remaining) == (6, 0)


def test_sdk_batch_track_retried_with_one_idempotency_key_applies_once(
    answers: tuple[Autumn, list[Any]], customer: str
) -> None:
    autumn, seen = answers
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=10)
    request: list[RequestBodyTypedDict] = [
        {"customer_id": customer, "feature_id": "api_calls", "value": 4}
    ] * 2
    headers = {"Idempotency-Key": f"batch-{customer}"}
    for _ in range(2):
        assert autumn.batch_track(request=request, http_headers=headers).success is True
    assert seen[0] == seen[1]
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 2 and balance.usage == 8
