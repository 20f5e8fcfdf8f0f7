"""Autumn's overage rules through the API: what happens to usage past what remains.

- ``cap`` (the default) stops at zero only the balances without overage: a balance with
  ``overage_allowed`` takes the excess whatever the behaviour.
- ``overflow`` puts the debt on the first balance in deduction order (the resetting,
  shortest-period one), so the next reset clears it.
- An unlimited balance comes first and takes everything (the limited ones beside it are left
  untouched); it reports ``granted`` and ``remaining`` 0, its usage counted.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.core.clock import FrozenClock
from tests.conftest import START
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


# --- overflow: the debt lands on the first balance in deduction order ------------------------


async def test_overflow_debt_lands_on_the_resetting_balance_not_the_one_off(api: Api) -> None:
    one_off = await api.create(included_grant=100)
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    result = await track(api, value=130, overage_behavior="overflow")
    assert by_id(result) == {monthly["id"]: 30, one_off["id"]: 100}
    listed = await api.ok("balances.list", {"customer_id": "cus_1"})
    remaining = {b["id"]: b["remaining"] for b in listed["list"]}
    assert remaining == {monthly["id"]: -20, one_off["id"]: 0}
    assert api.invariant_violations() == []


async def test_overflow_debt_is_cleared_by_the_next_reset(api: Api, clock: FrozenClock) -> None:
    one_off = await api.create(included_grant=5)
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    await track(api, value=14, overage_behavior="overflow")
    clock.set(START + timedelta(days=1, minutes=1))
    listed = await api.ok("balances.list", {"customer_id": "cus_1"})
    remaining = {b["id"]: b["remaining"] for b in listed["list"]}
    # The daily balance carried the debt of 4 and reset to its grant; the one_off one was
    # only used down to zero, never beyond.
    assert remaining == {daily["id"]: 5, one_off["id"]: 0}


async def test_overflow_prefers_the_first_balance_to_one_that_allows_overage(api: Api) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    flexible = await api.create(included_grant=5, overage_allowed=True)
    # Under overflow every balance may go negative (Autumn's second pass), so the first one
    # in order takes the excess; without overflow the balance that allows overage does.
    result = await track(api, value=14, overage_behavior="overflow")
    assert by_id(result) == {daily["id"]: 9, flexible["id"]: 5}
    result = await track(api, value=2)
    assert by_id(result) == {flexible["id"]: 2}


# --- unlimited: first, an infinite sink, remaining 0 ----------------------------------------


async def test_unlimited_balance_is_deducted_first_and_the_limited_ones_stay_untouched(
    api: Api,
) -> None:
    daily = await api.create(included_grant=5, reset={"interval": "day"})
    unlimited = await api.create(unlimited=True)
    for behavior in (None, "cap", "overflow", "reject"):
        fields = {} if behavior is None else {"overage_behavior": behavior}
        result = await track(api, value=3, **fields)
        assert by_id(result) == {unlimited["id"]: 3}
    assert api.ledger_kinds(daily["id"]) == ["create"]
    assert api.ledger_kinds(unlimited["id"]) == ["create"] + ["track"] * 4


async def test_unlimited_balance_reports_remaining_and_granted_zero(api: Api) -> None:
    await api.create(included_grant=5, reset={"interval": "day"})
    unlimited = await api.create(unlimited=True)
    result = await track(api, value=7)
    [shown] = [b for b in result["balance"]["breakdown"] if b["id"] == unlimited["id"]]
    assert (shown["granted"], shown["remaining"], shown["usage"]) == (0, 0, 7)
    listed = await api.ok("balances.list", {"customer_id": "cus_1"})
    [shown] = [b for b in listed["list"] if b["id"] == unlimited["id"]]
    assert (shown["granted"], shown["remaining"], shown["usage"]) == (0, 0, 7)
    assert shown["unlimited"] is True
    # The ledger still records what happened: usage 7 off a balance that grants nothing.
    assert api.ledger(unlimited["id"])[-1]["usage_after"] == 7
    assert api.invariant_violations() == []


async def test_giving_back_goes_to_the_unlimited_balance_first(api: Api) -> None:
    monthly = await api.create(included_grant=10, reset={"interval": "month"})
    await track(api, value=4)  # the monthly balance, alone so far
    unlimited = await api.create(unlimited=True)
    await track(api, value=6)  # all on the unlimited one
    result = await track(api, value=-8)
    assert by_id(result) == {unlimited["id"]: -6, monthly["id"]: -2}
    assert api.invariant_violations() == []
