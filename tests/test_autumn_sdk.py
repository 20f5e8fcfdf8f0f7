"""The official Autumn Python client (autumn-sdk) against the running service, unchanged.

The service runs as a real subprocess (`python -m app.cli serve`) on a loopback port, on the
test database; the client validates every response it parses, so a missing or mistyped field
fails here the way it would fail for our users (API.md §5).
"""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from autumn_sdk import Autumn
from autumn_sdk.errors import AutumnDefaultError, AutumnError

from tests.helpers import RunningService

START_TIMEOUT = 20.0
DAY_MS = 24 * 60 * 60 * 1000


@pytest.fixture(scope="module")
def service_url(database_url: str, keys: dict[str, str]) -> Iterator[str]:
    """`balances serve` as a subprocess on the (migrated) test database; yields its base URL.

    `keys` is requested first so the service finds API keys and creates no bootstrap key.
    """
    service = RunningService({"DATABASE_URL": database_url}, "--host", "127.0.0.1")
    try:
        yield service.wait_ready(START_TIMEOUT).url
    finally:
        service.stop()


@pytest.fixture
def autumn(service_url: str, db: psycopg.Connection, keys: dict[str, str]) -> Iterator[Autumn]:
    """The client as a user would build it (`db` empties the tables after the test)."""
    with Autumn(secret_key=keys["write"], server_url=service_url) as client:
        yield client


@pytest.fixture
def customer() -> str:
    return f"cus_{uuid.uuid4().hex[:12]}"


def the_balance(autumn: Autumn, customer: str, **filters: Any) -> Any:
    """The one balance the client lists for this customer (and filters)."""
    [balance] = autumn.balances.list(customer_id=customer, **filters).list
    return balance


def test_sdk_creates_and_updates_a_balance(autumn: Autumn, customer: str) -> None:
    created = autumn.balances.create(
        customer_id=customer,
        feature_id="api_calls",
        included_grant=100,
        reset={"interval": "month"},
    )
    assert created.success is True

    balance = the_balance(autumn, customer)
    assert balance.id.startswith("bal_")
    assert (balance.customer_id, balance.feature_id, balance.entity_id) == (
        customer,
        "api_calls",
        None,
    )
    assert (balance.included_grant, balance.prepaid_grant) == (100, 0)
    assert (balance.remaining, balance.usage) == (100, 0)
    assert balance.unlimited is False and balance.status == "active"
    assert balance.plan_id is None and balance.price is None and balance.rollovers == []
    assert balance.source == "customer" and balance.expires_at is None
    assert balance.reset is not None
    assert balance.reset.interval == "month" and balance.reset.interval_count == 1
    assert balance.reset.resets_at is not None
    assert 28 * DAY_MS <= balance.reset.resets_at - balance.created_at <= 31 * DAY_MS

    update = autumn.balances.update
    assert update(customer_id=customer, feature_id="api_calls", add_to_balance=25).success
    assert update(customer_id=customer, feature_id="api_calls", add_to_balance=0.1).success
    assert update(customer_id=customer, feature_id="api_calls", add_to_balance=0.2).success
    balance = the_balance(autumn, customer)
    assert (balance.remaining, balance.usage, balance.included_grant) == (125.3, 0, 100)

    assert update(customer_id=customer, feature_id="api_calls", usage=30).success
    balance = the_balance(autumn, customer)
    assert (balance.remaining, balance.usage, balance.included_grant) == (95.3, 30, 100)

    assert update(customer_id=customer, feature_id="api_calls", remaining=80).success
    balance = the_balance(autumn, customer)
    assert (balance.remaining, balance.usage, balance.included_grant) == (80, 30, 100)

    assert update(customer_id=customer, feature_id="api_calls", included_grant=200).success
    balance = the_balance(autumn, customer)
    assert (balance.remaining, balance.usage, balance.included_grant) == (180, 30, 200)


def test_sdk_pages_through_balances_with_limit_and_cursor(autumn: Autumn, customer: str) -> None:
    for n in range(5):
        autumn.balances.create(customer_id=customer, feature_id=f"feature_{n}", included_grant=n)

    first = autumn.balances.list(customer_id=customer, limit=2)
    assert len(first.list) == 2 and first.has_more is True
    assert isinstance(first.next_cursor, str) and first.next_cursor

    pages = [first]
    while pages[-1].has_more:
        cursor = pages[-1].next_cursor
        assert cursor
        pages.append(autumn.balances.list(customer_id=customer, limit=2, start_cursor=cursor))
        assert len(pages) <= 5, "pagination does not end"

    assert [len(page.list) for page in pages] == [2, 2, 1]
    assert pages[-1].next_cursor is None
    ids = [balance.id for page in pages for balance in page.list]
    assert len(set(ids)) == 5
    features = sorted(balance.feature_id for page in pages for balance in page.list)
    assert features == [f"feature_{n}" for n in range(5)]


def test_sdk_lists_with_its_default_empty_cursor(
    service_url: str, db: psycopg.Connection, keys: dict[str, str], customer: str
) -> None:
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        if request.url.path == "/v1/balances.list":
            sent.append(json.loads(request.read()))

    http = httpx.Client(event_hooks={"request": [record]})
    with Autumn(secret_key=keys["write"], server_url=service_url, client=http) as autumn:
        autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=7)
        page = autumn.balances.list(customer_id=customer)
        explicit = autumn.balances.list(customer_id=customer, start_cursor="")

    assert [body.get("start_cursor") for body in sent] == ["", ""]
    for result in (page, explicit):
        [balance] = result.list
        assert balance.feature_id == "api_calls" and balance.remaining == 7
        assert result.has_more is False and result.next_cursor is None


def test_sdk_updates_the_balance_of_an_entity_and_of_an_interval(
    autumn: Autumn, customer: str
) -> None:
    create = autumn.balances.create
    create(customer_id=customer, feature_id="seats", entity_id="seat_1", included_grant=1)
    create(customer_id=customer, feature_id="seats", reset={"interval": "day"}, included_grant=3)
    create(customer_id=customer, feature_id="seats", reset={"interval": "month"}, included_grant=9)

    update = autumn.balances.update
    update(customer_id=customer, feature_id="seats", entity_id="seat_1", add_to_balance=2)
    update(customer_id=customer, feature_id="seats", interval="month", add_to_balance=1)
    update(customer_id=customer, feature_id="seats", interval="day", usage=1)

    rows = {
        (b.entity_id, b.source, b.reset.interval if b.reset else None): (b.remaining, b.usage)
        for b in autumn.balances.list(customer_id=customer).list
    }
    assert rows == {
        ("seat_1", "entity", None): (3, 0),
        (None, "customer", "day"): (2, 1),
        (None, "customer", "month"): (10, 0),
    }
    seat = the_balance(autumn, customer, entity_id="seat_1")
    assert seat.remaining == 3 and seat.reset is None


def test_sdk_sees_an_ambiguous_update_refused(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="seats", reset={"interval": "day"})
    autumn.balances.create(customer_id=customer, feature_id="seats", reset={"interval": "month"})
    with pytest.raises(AutumnError) as raised:
        autumn.balances.update(customer_id=customer, feature_id="seats", add_to_balance=1)
    assert raised.value.status_code == 409
    assert json.loads(raised.value.body)["code"] == "ambiguous_balance"
    assert [b.remaining for b in autumn.balances.list(customer_id=customer).list] == [0, 0]


def test_sdk_deletes_a_balance(autumn: Autumn, customer: str) -> None:
    create = autumn.balances.create
    create(customer_id=customer, feature_id="api_calls", reset={"interval": "day"})
    create(customer_id=customer, feature_id="api_calls", reset={"interval": "month"})

    deleted = autumn.balances.delete(customer_id=customer, feature_id="api_calls", interval="day")
    assert deleted.success is True
    remaining = the_balance(autumn, customer)
    assert remaining.reset is not None and remaining.reset.interval == "month"

    deleted = autumn.balances.delete(customer_id=customer, balance_id=remaining.id)
    assert deleted.success is True
    assert autumn.balances.list(customer_id=customer).list == []


def test_sdk_raises_balance_not_found_for_an_update_of_a_missing_balance(
    autumn: Autumn, customer: str
) -> None:
    with pytest.raises(AutumnError) as raised:
        autumn.balances.update(customer_id=customer, feature_id="missing", add_to_balance=1)
    error = raised.value
    assert isinstance(error, AutumnDefaultError)
    assert error.status_code == 404
    assert "balance_not_found" in str(error)  # what a user sees in a traceback or a log
    body = json.loads(error.body)
    assert body["code"] == "balance_not_found" and body["status"] == 404
    assert body["message"] == body["detail"] and body["message"]


def test_sdk_with_an_unknown_key_is_unauthorized(service_url: str) -> None:
    client = Autumn(secret_key="sk_test_unused", server_url=service_url)
    with client, pytest.raises(AutumnError) as raised:
        client.balances.list(customer_id="anyone")
    assert raised.value.status_code == 401
    assert json.loads(raised.value.body)["code"] == "unauthorized"


def test_sdk_replays_a_create_retried_with_the_same_idempotency_key(
    autumn: Autumn, customer: str
) -> None:
    headers = {"Idempotency-Key": f"create-{customer}"}
    for _ in range(2):
        created = autumn.balances.create(
            customer_id=customer, feature_id="api_calls", included_grant=5, http_headers=headers
        )
        assert created.success is True
    assert the_balance(autumn, customer).remaining == 5


def test_sdk_checks_and_tracks(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(
        customer_id=customer, feature_id="api_calls", included_grant=10, reset={"interval": "day"}
    )
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=5)
    check = autumn.check(customer_id=customer, feature_id="api_calls", required_balance=12)
    assert check.allowed is True and check.customer_id == customer
    assert check.balance is not None and check.balance.remaining == 15
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", value=12)
    assert tracked.customer_id == customer and tracked.value == 12
    assert tracked.balance is not None and tracked.balance.remaining == 3
    assert [d.value for d in tracked.deductions or []] == [10, 2]


def test_sdk_reserves_and_finalizes(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="tokens", included_grant=100)
    lock_id = f"job_{uuid.uuid4().hex[:8]}"
    check = autumn.check(
        customer_id=customer,
        feature_id="tokens",
        required_balance=40,
        lock={"lock_id": lock_id, "enabled": True},
    )
    assert check.allowed is True
    assert autumn.balances.finalize(lock_id=lock_id, action="confirm", override_value=25).success
    assert the_balance(autumn, customer).remaining == 75
