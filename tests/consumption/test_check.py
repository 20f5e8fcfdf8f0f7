"""balances.check: allowed, send_event, and the feature balance it returns."""

from typing import Any

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


async def test_check_with_both_send_event_and_lock_is_refused(api: Api) -> None:
    await api.create(included_grant=3)
    body = {
        "customer_id": "cus_1",
        "feature_id": "api_calls",
        "send_event": True,
        "lock": {"lock_id": "l1", "enabled": True},
    }
    problem(await api.post("balances.check", body), 422, "invalid_request")
