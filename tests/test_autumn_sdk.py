"""The official Autumn Python client (autumn-sdk) against the running service, unchanged.

The service runs as a real subprocess (`python -m app.cli serve`) on a loopback port, on the
test database; the client validates every response it parses, so a missing or mistyped field
fails here the way it would fail for our users.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from autumn_sdk import Autumn
from autumn_sdk.errors import AutumnError

from tests.helpers import RunningService


@pytest.fixture(scope="module")
def service_url(database_url: str, keys: dict[str, str]) -> Iterator[str]:
    service = RunningService({"DATABASE_URL": database_url}, "--host", "127.0.0.1")
    try:
        yield service.wait_ready().url
    finally:
        service.stop()


@pytest.fixture
def autumn(service_url: str, db: psycopg.Connection, keys: dict[str, str]) -> Autumn:
    return Autumn(secret_key=keys["write"], server_url=service_url)


def test_sdk_with_a_wrong_key_is_unauthorized(service_url: str) -> None:
    client = Autumn(secret_key="sk_not_a_key", server_url=service_url)
    with pytest.raises(AutumnError) as raised:
        client.balances.list(customer_id="anyone")
    assert raised.value.status_code == 401 and "unauthorized" in raised.value.body


@pytest.fixture
def customer() -> str:
    return f"cus_{uuid.uuid4().hex[:10]}"


def test_sdk_creates_and_updates_a_balance(autumn: Autumn, customer: str) -> None:
    created = autumn.balances.create(
        customer_id=customer,
        feature_id="api_calls",
        included_grant=100,
        reset={"interval": "month"},
    )
    assert created.success is True
    assert autumn.balances.update(customer_id=customer, feature_id="api_calls", add_to_balance=0.1)
    autumn.balances.update(customer_id=customer, feature_id="api_calls", usage=30)
    page = autumn.balances.list(customer_id=customer)
    [balance] = page.list
    assert balance.remaining == pytest.approx(70.1) and balance.usage == 30
    assert balance.reset is not None and balance.reset.interval == "month"
    assert page.has_more is False and page.next_cursor is None


def test_sdk_sets_remaining_exactly(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="credits", included_grant=5)
    autumn.balances.update(customer_id=customer, feature_id="credits", remaining=42)
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 42


def test_sdk_targets_entity_and_interval(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="seats", entity_id="seat_1")
    autumn.balances.create(
        customer_id=customer, feature_id="seats", reset={"interval": "day"}, included_grant=3
    )
    autumn.balances.create(
        customer_id=customer, feature_id="seats", reset={"interval": "month"}, included_grant=9
    )
    autumn.balances.update(
        customer_id=customer, feature_id="seats", entity_id="seat_1", add_to_balance=2
    )
    autumn.balances.update(
        customer_id=customer, feature_id="seats", interval="month", add_to_balance=1
    )
    rows = {(b.entity_id, b.reset.interval if b.reset else None): b.remaining
            for b in autumn.balances.list(customer_id=customer).list}  # fmt: skip
    assert rows == {("seat_1", None): 2, (None, "day"): 3, (None, "month"): 10}


def test_sdk_pages_with_cursor(autumn: Autumn, customer: str) -> None:
    for n in range(5):
        autumn.balances.create(customer_id=customer, feature_id=f"f{n}")
    seen: list[str] = []
    cursor: Any = None
    while True:
        kwargs: dict[str, Any] = {"customer_id": customer, "limit": 2}
        if cursor:
            kwargs["start_cursor"] = cursor
        page = autumn.balances.list(**kwargs)
        seen += [b.feature_id for b in page.list]
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert sorted(seen) == [f"f{n}" for n in range(5)]


def test_sdk_deletes_a_balance(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="api_calls")
    assert autumn.balances.delete(customer_id=customer, feature_id="api_calls").success is True
    assert autumn.balances.list(customer_id=customer).list == []


def test_sdk_sees_our_error_code(autumn: Autumn, customer: str) -> None:
    with pytest.raises(AutumnError) as raised:
        autumn.balances.update(customer_id=customer, feature_id="missing", add_to_balance=1)
    assert raised.value.status_code == 404
    assert "balance_not_found" in raised.value.body


def test_sdk_checks_and_tracks(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(
        customer_id=customer, feature_id="api_calls", included_grant=10, reset={"interval": "day"}
    )
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=5)
    check = autumn.check(customer_id=customer, feature_id="api_calls", required_balance=12)
    assert check.allowed is True
    assert check.balance is not None and check.balance.remaining == 15
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", value=12)
    assert tracked.value == 12 and tracked.balance is not None
    assert tracked.balance.remaining == 3
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
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 75
