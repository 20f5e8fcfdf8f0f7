"""balances.check: allowed, send_event, and the feature balance it returns."""

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from autumn_sdk import Autumn
from autumn_sdk.errors import AutumnError
from autumn_sdk.models import LockTypedDict

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from tests.conftest import START
from tests.helpers import Api, problem


async def check(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
    result: dict[str, Any] = await api.ok("balances.check", body)
    return result


async def test_check_allows_when_the_total_remaining_covers_it(api: Api) -> None:
    await api.create(included_grant=3, reset={"interval": "day"})
    await api.create(included_grant=4)
    result = await check(api, required_balance=7)
    assert result["allowed"] is True
    assert result["balance"]["remaining"] == 7 and len(result["balance"]["breakdown"]) == 2
    assert result["flag"] is None and result["balance"]["max_purchase"] is None


async def test_check_refuses_when_it_does_not_fit(api: Api) -> None:
    await api.create(included_grant=3)
    assert (await check(api, required_balance=4))["allowed"] is False


async def test_check_defaults_to_one(api: Api) -> None:
    await api.create(included_grant=1)
    result = await check(api)
    assert result["allowed"] is True and result["required_balance"] == 1


async def test_check_allows_unlimited_and_overage(api: Api) -> None:
    await api.create(feature_id="seats", unlimited=True)
    await api.create(feature_id="credits", overage_allowed=True)
    assert (await check(api, feature_id="seats", required_balance=10**9))["allowed"] is True
    assert (await check(api, feature_id="credits", required_balance=10))["allowed"] is True


async def test_check_without_balances_is_not_allowed(api: Api) -> None:
    result = await check(api)
    assert result["allowed"] is False and result["balance"] is None


async def test_check_changes_nothing(api: Api) -> None:
    balance = await api.create(included_grant=3)
    await check(api, required_balance=2)
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_check_with_send_event_deducts_when_allowed(api: Api) -> None:
    balance = await api.create(included_grant=3)
    result = await check(api, required_balance=2, send_event=True)
    assert result["allowed"] is True and result["balance"]["remaining"] == 1
    assert api.ledger_kinds(balance["id"]) == ["create", "track"]


async def test_check_with_send_event_changes_nothing_when_refused(api: Api) -> None:
    balance = await api.create(included_grant=3)
    result = await check(api, required_balance=5, send_event=True)
    assert result["allowed"] is False
    assert api.ledger_kinds(balance["id"]) == ["create"]


async def test_check_with_send_event_and_lock_reserves_once(api: Api) -> None:
    balance = await api.create(included_grant=10)
    lock = {"lock_id": "job_1", "enabled": True}
    result = await check(api, required_balance=4, send_event=True, lock=lock)
    assert result["allowed"] is True and result["lock_id"] == "job_1" and result["reserved"] == 4
    assert result["balance"]["remaining"] == 6  # held once: not a deduction plus a hold
    assert api.ledger_kinds(balance["id"]) == ["create", "lock"]
    body = {"customer_id": "cus_1", "lock_id": "job_1", "action": "confirm", "override_value": 3}
    assert await api.ok("balances.finalize", body) == {"success": True}
    assert (await check(api))["balance"]["remaining"] == 7
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "confirm"]


async def test_check_with_send_event_and_lock_reserves_nothing_when_refused(api: Api) -> None:
    balance = await api.create(included_grant=3)
    lock = {"lock_id": "job_1", "enabled": True}
    result = await check(api, required_balance=4, send_event=True, lock=lock)
    assert result["allowed"] is False and result["lock_id"] is None
    assert api.ledger_kinds(balance["id"]) == ["create"] and api.count("balance_locks") == 0


async def test_a_read_check_treats_an_expired_lock_as_released_without_writing(
    api: Api, clock: FrozenClock
) -> None:
    balance = await api.create(included_grant=10)
    lock = {"lock_id": "job_1", "enabled": True, "expires_at": to_epoch_ms(START) + 60_000}
    await check(api, required_balance=4, lock=lock)
    assert (await check(api, required_balance=10))["allowed"] is False
    clock.set(START + timedelta(minutes=1))  # expires_at is reached
    result = await check(api, required_balance=10)
    assert result["allowed"] is True and result["balance"]["remaining"] == 10
    assert result["balance"]["breakdown"][0]["version"] == 2  # nothing was written
    assert api.ledger_kinds(balance["id"]) == ["create", "lock"]
    track = {"customer_id": "cus_1", "feature_id": "api_calls", "value": 10}
    track["overage_behavior"] = "reject"
    assert (await api.ok("balances.track", track))["balance"]["remaining"] == 0
    assert api.ledger_kinds(balance["id"]) == ["create", "lock", "release", "track"]


async def test_a_lock_more_than_a_day_ahead_is_refused(api: Api) -> None:
    balance = await api.create(included_grant=10)
    day = to_epoch_ms(START + timedelta(hours=24))
    for required in (4, 40):  # whether or not it would be allowed
        body = {
            "customer_id": "cus_1",
            "feature_id": "api_calls",
            "required_balance": required,
            "lock": {"lock_id": "job_1", "enabled": True, "expires_at": day + 1},
        }
        problem(await api.post("balances.check", body), 422, "invalid_request")
    assert api.ledger_kinds(balance["id"]) == ["create"] and api.count("balance_locks") == 0
    lock = {"lock_id": "job_1", "enabled": True, "expires_at": day}
    assert (await check(api, required_balance=4, lock=lock))["reserved"] == 4


def test_sdk_check_with_send_event_and_lock_reserves_then_finalizes(
    autumn: Autumn, customer: str
) -> None:
    autumn.balances.create(customer_id=customer, feature_id="tokens", included_grant=100)
    lock_id = f"job_{uuid.uuid4().hex[:8]}"
    check = autumn.check(
        customer_id=customer,
        feature_id="tokens",
        required_balance=40,
        send_event=True,
        lock={"lock_id": lock_id, "enabled": True},
    )
    assert check.allowed is True and check.balance is not None
    assert check.balance.remaining == 60
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 60 and balance.usage == 40
    assert autumn.balances.finalize(lock_id=lock_id, action="release").success
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 100 and balance.usage == 0


def test_sdk_reads_show_an_expired_lock_released(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="tokens", included_grant=100)
    expires_at = int(time.time() * 1000) + 1500
    lock: LockTypedDict = {
        "lock_id": f"job_{uuid.uuid4().hex[:8]}",
        "enabled": True,
        "expires_at": expires_at,
    }
    check = autumn.check(customer_id=customer, feature_id="tokens", required_balance=30, lock=lock)
    assert check.allowed is True
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 70
    time.sleep(max(0.0, expires_at / 1000 - time.time()) + 0.2)
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 100 and balance.usage == 0
    check = autumn.check(customer_id=customer, feature_id="tokens", required_balance=100)
    assert check.allowed is True and check.balance is not None
    assert check.balance.remaining == 100


def test_sdk_lock_more_than_a_day_ahead_is_refused(autumn: Autumn, customer: str) -> None:
    autumn.balances.create(customer_id=customer, feature_id="tokens", included_grant=100)
    expires_at = int(time.time() * 1000) + 25 * 3600 * 1000
    lock: LockTypedDict = {"lock_id": "job_far", "enabled": True, "expires_at": expires_at}
    with pytest.raises(AutumnError) as raised:
        autumn.check(customer_id=customer, feature_id="tokens", required_balance=1, lock=lock)
    assert raised.value.status_code == 422
    assert json.loads(raised.value.body)["code"] == "invalid_request"
    [balance] = autumn.balances.list(customer_id=customer).list
    assert balance.remaining == 100
