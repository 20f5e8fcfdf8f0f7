"""balances.history: the ledger, newest first, paginated, surviving deletion."""

from tests.helpers import Api, problem


async def test_history_of_a_balance_is_newest_first(api: Api) -> None:
    balance = await api.create(included_grant=10)
    await api.update(add_to_balance=5)
    await api.update(usage=2)
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert [e["kind"] for e in page["list"]] == ["set_usage", "add", "create"]
    assert [e["remaining_delta"] for e in page["list"]] == [-2, 5, 10]
    assert page["list"][0]["remaining_after"] == 13 and page["list"][0]["usage_after"] == 2
    assert [e["balance_version"] for e in page["list"]] == [3, 2, 1]


async def test_history_by_customer_and_feature_spans_its_balances(api: Api) -> None:
    await api.create(reset={"interval": "day"})
    await api.create(reset={"interval": "month"})
    await api.create(feature_id="other")
    body = {"customer_id": "cus_1", "feature_id": "api_calls"}
    assert len((await api.ok("balances.history", body))["list"]) == 2
    page = await api.ok("balances.history", {**body, "interval": "day"})
    assert [e["interval"] for e in page["list"]] == ["day"]


async def test_history_pages_with_a_cursor(api: Api) -> None:
    balance = await api.create()
    for _ in range(4):
        await api.update(add_to_balance=1)
    first = await api.ok("balances.history", {"balance_id": balance["id"], "limit": 3})
    assert first["has_more"] is True
    rest = await api.ok(
        "balances.history",
        {"balance_id": balance["id"], "limit": 3, "start_cursor": first["next_cursor"]},
    )
    ids = [e["id"] for e in first["list"] + rest["list"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5 and rest["has_more"] is False


async def test_history_of_a_deleted_balance_stays_readable(api: Api) -> None:
    balance = await api.create(included_grant=3)
    await api.ok("balances.delete", {"customer_id": "cus_1", "balance_id": balance["id"]})
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert [e["kind"] for e in page["list"]] == ["delete", "create"]


async def test_history_needs_a_balance_or_a_feature(api: Api) -> None:
    problem(await api.post("balances.history", {"customer_id": "c"}), 422, "invalid_request")


async def test_history_records_the_request_id(api: Api) -> None:
    balance = await api.create()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    response = await api.post("balances.update", body, **{"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    page = await api.ok("balances.history", {"balance_id": balance["id"]})
    assert page["list"][0]["request_id"] == "req-42"
