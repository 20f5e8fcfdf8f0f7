"""A Python client generated from the OpenAPI document (openapi-python-client), as a client team
would generate it, driven against the running service: every answer parses to a typed object,
errors included (a `Problem` whose `code` is a `ProblemCode` member).

The client is generated once per module from the document the service serves, into a temporary
directory (about a second). Its amounts are floats: openapi-python-client maps every `number` to
`float`, `format: decimal` notwithstanding; generators that know the format keep them exact.
A TypeScript client is not generated: its toolchain (npm install, tsc) would cost CI far more
than this test, and the document is the same one this client proves.
"""

import importlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI

from app.core.docs import document_text
from tests.helpers import RunningService

PACKAGE = "balances_generated_client"
CONFIG = "post_hooks: []\n"  # no ruff run on the generated code: not needed to import it


class Generated:
    """The generated package's modules, by the names a user would import."""

    def __init__(self) -> None:
        self.client: Any = importlib.import_module(f"{PACKAGE}.client")
        self.models: Any = importlib.import_module(f"{PACKAGE}.models")
        self.types: Any = importlib.import_module(f"{PACKAGE}.types")

    def operation(self, tag: str, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


@pytest.fixture(scope="module")
def generated(app: FastAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    directory = tmp_path_factory.mktemp("generated-client")
    (directory / "openapi.json").write_text(document_text(app.openapi()), encoding="utf-8")
    (directory / "config.yaml").write_text(CONFIG)
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none",
               "--path", "openapi.json", "--config", "config.yaml",
               "--output-path", PACKAGE]  # fmt: skip
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "Warning" not in result.stdout, result.stdout + result.stderr
    sys.path.insert(0, str(directory))
    try:
        yield Generated()
    finally:
        sys.path.remove(str(directory))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def service_url(database_url: str, keys: dict[str, str]) -> Iterator[str]:
    """`balances serve` on the test database (`keys` first: no bootstrap key is created)."""
    service = RunningService({"DATABASE_URL": database_url}, "--host", "127.0.0.1")
    try:
        yield service.wait_ready().url
    finally:
        service.stop()


@pytest.fixture
def client(
    generated: Generated, service_url: str, keys: dict[str, str], db: psycopg.Connection
) -> Iterator[Any]:
    """An authenticated client with a write key (`db` empties the tables afterwards)."""
    with generated.client.AuthenticatedClient(base_url=service_url, token=keys["write"]) as made:
        yield made


@pytest.fixture
def customer() -> str:
    return f"cus_{uuid.uuid4().hex[:12]}"


def call(generated: Generated, tag: str, name: str, client: Any, **arguments: Any) -> Any:
    """The operation's parsed answer (`sync`), after checking it is the one parsed for its
    status: the generated code returns None for a status the document does not declare."""
    answer = generated.operation(tag, name).sync_detailed(client=client, **arguments)
    assert answer.parsed is not None, (answer.status_code, answer.content)
    return answer.parsed


def create(generated: Generated, client: Any, customer: str, **fields: Any) -> Any:
    models = generated.models
    body = models.CreateBalanceParams(customer_id=customer, feature_id="api_calls", **fields)
    return call(generated, "balances", "create_balance", client, body=body)


def test_create_and_update_return_typed_balances(
    generated: Generated, client: Any, customer: str
) -> None:
    models = generated.models
    reset = models.ResetParams(interval=models.Interval.MONTH)
    created = create(generated, client, customer, included_grant=100, reset=reset)
    assert isinstance(created, models.BalanceResponse)
    assert created.balance.status is models.BalanceStatus.ACTIVE
    assert created.balance.source is models.BalanceSource.CUSTOMER
    assert created.balance.interval is models.Interval.MONTH
    assert (created.balance.granted, created.balance.remaining) == (100, 100)

    body = models.UpdateBalanceParams(customer_id=customer, feature_id="api_calls", usage=2.5)
    updated = call(generated, "balances", "update_balance", client, body=body)
    assert isinstance(updated, models.BalanceResponse)
    assert (updated.balance.usage, updated.balance.remaining) == (2.5, 97.5)


def test_check_lock_and_finalize_are_typed(
    generated: Generated, client: Any, customer: str
) -> None:
    models = generated.models
    create(generated, client, customer, included_grant=10)
    lock = models.LockParams(lock_id=f"lock_{customer}")
    body = models.CheckParams(
        customer_id=customer, feature_id="api_calls", required_balance=4, lock=lock
    )
    checked = call(generated, "balances", "check", client, body=body)
    assert isinstance(checked, models.CheckResponse)
    assert checked.allowed is True and checked.reserved == 4
    assert isinstance(checked.balance, models.FeatureBalance) and checked.balance.remaining == 6

    body = models.FinalizeLockParams(
        lock_id=f"lock_{customer}", action=models.FinalizeAction.CONFIRM, override_value=3
    )
    finalized = call(generated, "reservations", "finalize_lock", client, body=body)
    assert isinstance(finalized, models.SuccessResponse) and finalized.success is True


def test_track_batch_track_list_and_history_are_typed(
    generated: Generated, client: Any, customer: str
) -> None:
    models = generated.models
    create(generated, client, customer, included_grant=10)
    body = models.TrackParams(customer_id=customer, feature_id="api_calls", value=1.5)
    tracked = call(generated, "balances", "track", client, body=body)
    assert isinstance(tracked, models.TrackResponse) and tracked.deducted == 1.5
    assert all(isinstance(d, models.Deduction) for d in tracked.deductions)

    items = [models.BatchTrackItem(customer_id=customer, feature_id=f) for f in ("api_calls", "x")]
    batch = call(generated, "balances", "batch_track", client, body=items)
    assert isinstance(batch, models.BatchTrackResponse) and (batch.applied, batch.failed) == (1, 1)
    assert isinstance(batch.results[1].error, models.Problem)
    assert batch.results[1].error.code is models.ProblemCode.BALANCE_NOT_FOUND

    body = models.ListBalancesParams(customer_id=customer)
    listed = call(generated, "balances", "list_balances", client, body=body)
    assert isinstance(listed, models.ListBalancesResponse) and listed.list_[0].remaining == 7.5

    body = models.HistoryParams(customer_id=customer, feature_id="api_calls")
    history = call(generated, "ledger", "balance_history", client, body=body)
    assert isinstance(history, models.HistoryResponse)
    assert [entry.kind for entry in history.list_] == [
        models.EntryKind.TRACK, models.EntryKind.TRACK, models.EntryKind.CREATE,
    ]  # fmt: skip


def test_delete_is_typed(generated: Generated, client: Any, customer: str) -> None:
    models = generated.models
    create(generated, client, customer)
    body = models.DeleteBalanceParams(customer_id=customer, feature_id="api_calls")
    deleted = call(generated, "balances", "delete_balance", client, body=body)
    assert isinstance(deleted, models.SuccessResponse) and deleted.success is True


def assert_problem(generated: Generated, answer: Any, status: int, code: str) -> Any:
    models = generated.models
    assert answer.status_code == status, answer.content
    assert isinstance(answer.parsed, models.Problem), answer.content
    assert answer.parsed.code is models.ProblemCode(code) and answer.parsed.status == status
    return answer.parsed


def test_invalid_input_is_a_typed_problem_naming_the_field(
    generated: Generated, client: Any, customer: str
) -> None:
    models = generated.models
    body = models.CreateBalanceParams(customer_id=customer, feature_id="f", included_grant=-1)
    answer = generated.operation("balances", "create_balance").sync_detailed(
        client=client, body=body
    )
    problem = assert_problem(generated, answer, 422, "invalid_request")
    assert [item.loc for item in problem.errors] == [["included_grant"]]


def test_unknown_key_and_missing_scope_are_typed_problems(
    generated: Generated, service_url: str, keys: dict[str, str], customer: str
) -> None:
    models = generated.models
    body = models.CreateBalanceParams(customer_id=customer, feature_id="api_calls")
    operation = generated.operation("balances", "create_balance")
    for token, status, code in (("sk_unknown", 401, "unauthorized"),
                                (keys["read"], 403, "forbidden")):  # fmt: skip
        with generated.client.AuthenticatedClient(base_url=service_url, token=token) as made:
            assert_problem(generated, operation.sync_detailed(client=made, body=body), status, code)


def test_missing_and_conflicting_balances_are_typed_problems(
    generated: Generated, client: Any, customer: str
) -> None:
    models = generated.models
    update = models.UpdateBalanceParams(customer_id=customer, feature_id="api_calls", usage=1)
    answer = generated.operation("balances", "update_balance").sync_detailed(
        client=client, body=update
    )
    assert_problem(generated, answer, 404, "balance_not_found")
    create(generated, client, customer)
    body = models.CreateBalanceParams(customer_id=customer, feature_id="api_calls")
    answer = generated.operation("balances", "create_balance").sync_detailed(
        client=client, body=body
    )
    assert_problem(generated, answer, 409, "balance_exists")


def test_a_replayed_write_says_so_in_a_documented_header(
    generated: Generated, client: Any, customer: str
) -> None:
    models = generated.models
    body = models.TrackParams(customer_id=customer, feature_id="api_calls")
    create(generated, client, customer, included_grant=5)
    operation = generated.operation("balances", "track")
    first = operation.sync_detailed(client=client, body=body, idempotency_key=customer)
    again = operation.sync_detailed(client=client, body=body, idempotency_key=customer)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true" and again.parsed == first.parsed
    assert again.headers["x-request-id"]


def test_the_generated_package_has_no_machine_made_names(generated: Generated) -> None:
    names = [name for name in dir(generated.models) if name[:1].isupper()]
    assert not [name for name in names if re.search(r"Type\d", name)], names
    assert {"Problem", "ProblemCode", "BalanceStatus", "BalanceSource", "EventProperties"} <= set(
        names
    )
