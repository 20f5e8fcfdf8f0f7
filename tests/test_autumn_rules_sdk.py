"""Autumn's balance rules, driven as an Autumn user would: through the official client
(autumn-sdk) against a real `balances serve`.

The client cannot create a balance with `overage_allowed` (its `balances.create` has no such
parameter), so those balances are created over plain HTTP with the same key.
"""

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from autumn_sdk import Autumn
from autumn_sdk.errors import AutumnError

from tests.test_autumn_sdk import autumn, customer, service_url

__all__ = ["autumn", "customer", "service_url"]  # fixtures shared with the client's tests

DAY_MS = 24 * 60 * 60 * 1000


@pytest.fixture
def create_raw(service_url: str, keys: dict[str, str]) -> Any:
    """`balances.create` over plain HTTP, for the fields the client does not send."""

    def create(**body: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{service_url}/v1/balances.create",
            json=body,
            headers={"authorization": f"Bearer {keys['write']}"},
        )
        assert response.status_code == 200, response.text
        balance: dict[str, Any] = response.json()["balance"]
        return balance

    return create


SECONDS_NOT_MILLIS = 1_790_000_000  # epoch seconds (2026), read as milliseconds: January 1970


def refused(call: Any, field: str) -> None:
    with pytest.raises(AutumnError) as raised:
        call()
    assert raised.value.status_code == 422
    body = json.loads(raised.value.body)
    assert body["code"] == "invalid_request"
    assert [field] in [error["loc"] for error in body["errors"]], body


def remaining_by_id(autumn: Autumn, customer: str) -> dict[str, float]:
    balances = autumn.balances.list(customer_id=customer).list
    return {b.id: b.remaining for b in balances if b.id is not None}


# --- 3. cap never drops usage on a balance that allows overage -------------------------------


@pytest.mark.parametrize("behavior", [None, "cap"])
def test_cap_records_all_usage_when_the_balance_allows_overage(
    autumn: Autumn, customer: str, create_raw: Any, behavior: Any
) -> None:
    balance = create_raw(
        customer_id=customer, feature_id="api_calls", included_grant=5, overage_allowed=True
    )
    kwargs = {} if behavior is None else {"overage_behavior": behavior}
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", value=8, **kwargs)
    assert [(d.balance_id, d.value) for d in tracked.deductions or []] == [(balance["id"], 8)]
    assert tracked.balance is not None
    assert (tracked.balance.usage, tracked.balance.remaining) == (8, -3)
    assert remaining_by_id(autumn, customer) == {balance["id"]: -3}


def test_cap_stops_at_zero_only_the_balances_without_overage(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=5)
    tracked = autumn.track(
        customer_id=customer, feature_id="api_calls", value=8, overage_behavior="cap"
    )
    assert tracked.balance is not None and tracked.balance.remaining == 0
    assert [d.value for d in tracked.deductions or []] == [5]


# --- 4. overflow debt lands on the first balance in deduction order -------------------------


def test_overflow_debt_lands_on_the_resetting_balance(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=100)
    autumn.balances.create(
        customer_id=customer, feature_id="api_calls", included_grant=10, reset={"interval": "day"}
    )
    tracked = autumn.track(
        customer_id=customer, feature_id="api_calls", value=130, overage_behavior="overflow"
    )
    assert tracked.balance is not None and tracked.balance.remaining == -20
    by_interval = {
        (b.reset.interval if b.reset else "one_off"): b.remaining
        for b in autumn.balances.list(customer_id=customer).list
    }
    assert by_interval == {"day": -20, "one_off": 0}


# --- 5. unlimited balances: first, an infinite sink, remaining 0 -----------------------------


def test_unlimited_balance_takes_everything_and_reports_remaining_zero(
    autumn: Autumn, customer: str
) -> None:
    create = autumn.balances.create
    create(
        customer_id=customer, feature_id="api_calls", included_grant=5, reset={"interval": "day"}
    )
    create(customer_id=customer, feature_id="api_calls", unlimited=True)
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", value=12)
    listed = {b.unlimited: b for b in autumn.balances.list(customer_id=customer).list}
    unlimited, daily = listed[True], listed[False]
    assert [(d.balance_id, d.value) for d in tracked.deductions or []] == [(unlimited.id, 12)]
    assert (daily.remaining, daily.usage) == (5, 0)  # untouched
    assert (unlimited.remaining, unlimited.usage) == (0, 12)
    assert tracked.balance is not None and tracked.balance.unlimited is True
    [shown] = [b for b in tracked.balance.breakdown or [] if b.id == unlimited.id]
    assert (shown.remaining, shown.usage) == (0, 12)


def test_unlimited_feature_balance_reports_granted_and_remaining_zero(
    autumn: Autumn, customer: str
) -> None:
    create = autumn.balances.create
    create(
        customer_id=customer, feature_id="api_calls", included_grant=5, reset={"interval": "day"}
    )
    create(customer_id=customer, feature_id="api_calls", unlimited=True)
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", value=12)
    assert tracked.balance is not None
    assert (tracked.balance.granted, tracked.balance.remaining) == (0, 0)
    assert tracked.balance.usage == 12
    check = autumn.check(customer_id=customer, feature_id="api_calls", required_balance=10**6)
    assert check.allowed is True and check.balance is not None
    assert (check.balance.granted, check.balance.remaining, check.balance.usage) == (0, 0, 12)


# --- 6. balances.delete with recalculate_balances moves the usage onto the survivors ----------


def test_delete_with_recalculate_balances_keeps_the_usage(autumn: Autumn, customer: str) -> None:
    create = autumn.balances.create
    create(
        customer_id=customer, feature_id="api_calls", included_grant=10, reset={"interval": "day"}
    )
    create(
        customer_id=customer, feature_id="api_calls", included_grant=10, reset={"interval": "month"}
    )
    create(customer_id=customer, feature_id="api_calls", included_grant=5)
    autumn.track(customer_id=customer, feature_id="api_calls", value=8)  # all on the daily one
    deleted = autumn.balances.delete(
        customer_id=customer, feature_id="api_calls", interval="day", recalculate_balances=True
    )
    assert deleted.success is True
    left = {
        (b.reset.interval if b.reset else "one_off"): (b.usage, b.remaining)
        for b in autumn.balances.list(customer_id=customer).list
    }
    assert left == {"month": (8, 2), "one_off": (0, 5)}
    check = autumn.check(customer_id=customer, feature_id="api_calls", required_balance=7)
    assert check.balance is not None and check.balance.usage == 8
    assert check.balance.remaining == 7 and check.allowed is True


def test_delete_with_recalculate_balances_and_nowhere_to_go_is_refused(
    autumn: Autumn, customer: str
) -> None:
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=10)
    autumn.track(customer_id=customer, feature_id="api_calls", value=4)
    refused(
        lambda: autumn.balances.delete(
            customer_id=customer, feature_id="api_calls", recalculate_balances=True
        ),
        "recalculate_balances",
    )
    [kept] = autumn.balances.list(customer_id=customer).list
    assert (kept.usage, kept.remaining) == (4, 6)


# --- 8. impossible values: 422, nothing changed (stricter than Autumn on purpose) -------------


def test_impossible_updates_are_refused_and_change_nothing(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="api_calls", included_grant=10)
    autumn.balances.update(customer_id=customer, feature_id="api_calls", usage=4)
    before = autumn.balances.list(customer_id=customer).list
    update = autumn.balances.update
    refused(lambda: update(customer_id=customer, feature_id="api_calls", usage=-1), "usage")
    refused(
        lambda: update(customer_id=customer, feature_id="api_calls", included_grant=-5),
        "included_grant",
    )
    refused(
        lambda: update(customer_id=customer, feature_id="api_calls", expires_at=SECONDS_NOT_MILLIS),
        "expires_at",
    )
    assert autumn.balances.list(customer_id=customer).list == before


def test_create_with_seconds_for_expires_at_is_refused(autumn: Autumn, customer: str) -> None:
    refused(
        lambda: autumn.balances.create(
            customer_id=customer,
            feature_id="api_calls",
            included_grant=10,
            expires_at=SECONDS_NOT_MILLIS,
        ),
        "expires_at",
    )
    assert autumn.balances.list(customer_id=customer).list == []
    in_a_day = int(time.time() * 1000) + DAY_MS
    created = autumn.balances.create(
        customer_id=customer, feature_id="api_calls", included_grant=10, expires_at=in_a_day
    )
    assert created.success is True


def test_a_lock_id_is_unique_across_customers_and_finalize_needs_only_the_id(
    autumn: Autumn, customer: str
) -> None:
    other = f"{customer}_b"
    for who in (customer, other):
        autumn.balances.create(customer_id=who, feature_id="tokens", included_grant=100)
    lock_id = f"job_{uuid.uuid4().hex[:8]}"

    def check(who: str, amount: int) -> Any:
        return autumn.check(
            customer_id=who,
            feature_id="tokens",
            required_balance=amount,
            lock={"lock_id": lock_id, "enabled": True},
        )

    assert check(customer, 40).allowed is True
    with pytest.raises(AutumnError) as raised:
        check(other, 10)
    assert raised.value.status_code == 409
    assert json.loads(raised.value.body)["code"] == "lock_exists"
    settled = autumn.balances.finalize(lock_id=lock_id, action="confirm", override_value=30)
    assert settled.success is True
    assert [b.remaining for b in autumn.balances.list(customer_id=customer).list] == [70]
    assert [b.remaining for b in autumn.balances.list(customer_id=other).list] == [100]


def test_a_rollover_carries_over_at_the_reset_and_is_spent_first(
    autumn: Autumn, customer: str
) -> None:
    first_reset = int(time.time() * 1000) + 1500
    autumn.balances.create(
        customer_id=customer,
        feature_id="api_calls",
        included_grant=10,
        reset={"interval": "minute"},
        next_reset_at=first_reset,
        rollover={"length": 1, "duration": "forever", "max": 100},
    )
    autumn.track(customer_id=customer, feature_id="api_calls", value=3)
    time.sleep(max(first_reset / 1000 - time.time(), 0) + 0.2)  # past the first reset
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 10
    [carried] = balance.rollovers
    assert (carried.granted, carried.balance) == (7, 7)
    assert carried.expires_at == 0  # never, as Autumn shows it
    checked = autumn.check(customer_id=customer, feature_id="api_calls", required_balance=17)
    assert checked.allowed is True
    tracked = autumn.track(customer_id=customer, feature_id="api_calls", value=8)
    assert tracked.balance is not None and tracked.balance.remaining == 9
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 9 and balance.rollovers[0].balance == 0
