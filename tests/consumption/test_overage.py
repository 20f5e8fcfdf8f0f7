"""Autumn's overage rules through the API: what happens to usage past what remains.

- ``cap`` (the default) stops at zero only the balances without overage: a balance with
  ``overage_allowed`` takes the excess whatever the behaviour.
"""

from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import Api

D = Decimal


async def track(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
    result: dict[str, Any] = await api.ok("balances.track", body)
    return result


def by_id(result: dict[str, Any]) -> dict[str, Any]:
    return {d["balance_id"]: d["value"] for d in result["deductions"]}


# --- cap and overage_allowed ----------------------------------------------------------------


@pytest.mark.parametrize("behavior", [None, "cap"])
async def test_cap_records_all_usage_on_a_balance_that_allows_overage(
    api: Api, behavior: str | None
) -> None:
    balance = await api.create(included_grant=5, overage_allowed=True)
    fields = {} if behavior is None else {"overage_behavior": behavior}
    result = await track(api, value=8, **fields)
    assert result["deducted"] == 8 and by_id(result) == {balance["id"]: 8}
    assert result["balance"]["remaining"] == -3 and result["balance"]["usage"] == 8
    assert api.ledger(balance["id"])[-1]["usage_delta"] == 8
    assert api.invariant_violations() == []


async def test_cap_stops_at_zero_the_balances_without_overage(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    flexible = await api.create(included_grant=5, overage_allowed=True)
    result = await track(api, value=14, overage_behavior="cap")
    # The daily balance gives what it has and stops at zero; the rest goes to the balance
    # that allows overage.
    assert by_id(result) == {daily["id"]: 5, flexible["id"]: 9}
    assert result["deducted"] == 14
    listed = await api.ok("balances.list", {"customer_id": "cus_1"})
    remaining = {b["id"]: b["remaining"] for b in listed["list"]}
    assert remaining == {daily["id"]: 0, flexible["id"]: -4}


async def test_cap_without_any_overage_still_drops_the_excess(api: Api) -> None:
    await api.create(included_grant=5)
    result = await track(api, value=8, overage_behavior="cap")
    assert result["deducted"] == 5 and result["balance"]["remaining"] == 0
