"""Every operation against every kind of credential."""

from typing import Any

import pytest

from tests.helpers import Api, problem

UPDATE = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
LOCKING_CHECK = {
    "customer_id": "cus_1",
    "feature_id": "api_calls",
    "lock": {"lock_id": "l1", "enabled": True},
}
# operation, body, scope it needs
OPERATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("balances.create", {"customer_id": "cus_1", "feature_id": "other"}, "write"),
    ("balances.update", UPDATE, "write"),
    ("balances.delete", {"customer_id": "cus_1", "feature_id": "api_calls"}, "write"),
    ("balances.list", {"customer_id": "cus_1"}, "read"),
    ("balances.history", {"customer_id": "cus_1", "feature_id": "api_calls"}, "read"),
    ("balances.check", {"customer_id": "cus_1", "feature_id": "api_calls"}, "read"),
    ("balances.check", {**LOCKING_CHECK}, "write"),
    ("balances.check", {"customer_id": "cus_1", "feature_id": "api_calls", "send_event": True},
     "write"),
    ("balances.track", {"customer_id": "cus_1", "feature_id": "api_calls"}, "write"),
    ("balances.finalize", {"customer_id": "cus_1", "lock_id": "none", "action": "release"},
     "write"),
]  # fmt: skip
RANK = {"read": 0, "write": 1, "admin": 2}


def _ids(operation: tuple[str, dict[str, Any], str]) -> str:
    path, body, _ = operation
    extra = "+lock" if "lock" in body else "+send_event" if "send_event" in body else ""
    return path + extra


@pytest.fixture
async def seeded(api: Api) -> None:
    await api.create(included_grant=100)


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
async def test_no_key_is_unauthorized(api: Api, seeded: None, operation: Any) -> None:
    path, body, _ = operation
    response = await api.post(path, body, authorization=None)
    problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
@pytest.mark.parametrize("secret", ["sk_wrong", "not-even-a-key", ""])
async def test_bad_key_is_unauthorized(api: Api, seeded: None, operation: Any, secret: str) -> None:
    path, body, _ = operation
    problem(await api.post(path, body, authorization=f"Bearer {secret}"), 401, "unauthorized")


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
async def test_revoked_key_is_unauthorized(
    api: Api, seeded: None, keys: dict[str, str], operation: Any
) -> None:
    path, body, _ = operation
    header = f"Bearer {keys['revoked']}"
    problem(await api.post(path, body, authorization=header), 401, "unauthorized")


@pytest.mark.parametrize("operation", OPERATIONS, ids=_ids)
@pytest.mark.parametrize("scope", ["read", "write", "admin"])
async def test_scope_decides(
    api: Api, seeded: None, keys: dict[str, str], operation: Any, scope: str
) -> None:
    path, body, needed = operation
    response = await api.post(path, body, authorization=f"Bearer {keys[scope]}")
    if RANK[scope] >= RANK[needed]:
        assert response.status_code not in (401, 403), response.text
    else:
        problem(response, 403, "forbidden")
        assert api.count("balance_ledger") == 1  # only the seeded create


async def test_basic_scheme_is_unauthorized(api: Api, seeded: None) -> None:
    response = await api.post("balances.list", {}, authorization="Basic dXNlcjpwYXNz")
    problem(response, 401, "unauthorized")


async def test_ledger_entries_name_the_key_that_wrote_them(api: Api, seeded: None) -> None:
    row = api.db.execute(
        "SELECT api_key_id FROM balance_ledger ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row is not None and row[0].startswith("key_")


async def test_swagger_ui_can_authorize_with_bearer(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
