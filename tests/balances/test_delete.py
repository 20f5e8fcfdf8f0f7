"""balances.delete: same targeting as update; the ledger stays, closed by a delete entry."""

from tests.helpers import Api, problem


async def test_delete_by_key_keeps_the_ledger_closed_at_zero(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await api.update(usage=3)
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    assert (await api.ok("balances.delete", body)) == {"success": True}
    assert api.count("balances") == 0
    entries = api.ledger(balance["id"])
    assert [e["kind"] for e in entries] == ["create", "set_usage", "delete"]
    assert entries[-1]["remaining_delta"] == -7 and entries[-1]["usage_delta"] == -3
    assert entries[-1]["remaining_after"] == 0
    assert api.invariant_violations() == []


async def test_delete_by_balance_id(api: Api) -> None:
    await api.create(reset={"interval": "day"})
    monthly = await api.create(reset={"interval": "month"})
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": monthly["id"]})
    assert api.count("balances") == 1


async def test_delete_of_a_missing_balance_is_not_found(api: Api) -> None:
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    problem(await api.post("balances.delete", body), 404, "balance_not_found")


async def test_ambiguous_delete_deletes_nothing(api: Api) -> None:
    await api.create(reset={"interval": "day"})
    await api.create(reset={"interval": "month"})
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    problem(await api.post("balances.delete", body), 409, "ambiguous_balance")
    assert api.count("balances") == 2


async def test_delete_needs_a_feature_or_a_balance_id(api: Api) -> None:
    problem(await api.post("balances.delete", {"customer_id": "cus_1"}), 422, "invalid_request")


async def test_key_can_be_created_again_after_delete(api: Api) -> None:
    first = await api.create(included_grant=1)
    await api.ok("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"})
    second = await api.create(included_grant=2)
    assert second["id"] != first["id"] and second["remaining"] == 2
    assert api.invariant_violations() == []
