"""/metrics and the request log, as an operator sees them."""

import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.balances.commands import UpdateBalance
from app.core.logging import JsonFormatter, TextFormatter
from tests.helpers import Api, problem


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_mutations_replays_and_lock_waits(api: Api) -> None:
    before = await scrape(api)
    await api.create(included_grant=10)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    for _ in range(3):
        await api.post("balances.update", body, idempotency_key="same")
    missing = {**body, "feature_id": "nope"}
    await api.post("balances.update", missing)
    after = await scrape(api)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"operation": "updateBalance", "status": "200"}
    assert moved("balances_http_requests_total", **ok) == 3
    assert moved("balances_http_requests_total", operation="updateBalance", status="404") == 1
    assert moved("balances_mutations_total", kind="create") == 1
    assert moved("balances_mutations_total", kind="add") == 1  # the replays changed nothing
    assert moved("balances_idempotent_replays_total") == 2
    assert moved("balances_row_lock_wait_seconds_count") == 5  # one lock step per write batch
    assert moved("balances_http_request_duration_seconds_count", operation="createBalance") == 1
    assert value(after, "balances_db_pool_size") >= 1


async def test_rolled_back_changes_are_not_counted(api: Api) -> None:
    await api.create(included_grant=1)
    before = await scrape(api)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 10**15 - 1}
    assert (await api.post("balances.update", body)).status_code == 422
    after = await scrape(api)
    assert value(after, "balances_mutations_total", kind="add") == value(
        before, "balances_mutations_total", kind="add"
    )


async def test_changes_rolled_back_under_an_idempotency_key_are_not_counted(api: Api) -> None:
    await api.create(included_grant=1)
    before = await scrape(api)
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "included_grant": 5}
    body["add_to_balance"] = 10**15 - 1  # the grant entry is written, then the add fails
    response = await api.post("balances.update", body, idempotency_key="rolled-back")
    assert response.status_code == 422
    after = await scrape(api)
    assert value(after, "balances_mutations_total", kind="set_included_grant") == value(
        before, "balances_mutations_total", kind="set_included_grant"
    )


async def test_one_json_log_line_per_request_without_the_secret(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await api.create(included_grant=10)
    caplog.clear()
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    with caplog.at_level(logging.INFO, logger="balances.request"):
        await api.post("balances.update", body, x_request_id="req-log-1")
    records = [r for r in caplog.records if r.name == "balances.request"]
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    entry = json.loads(line)
    assert entry["request_id"] == "req-log-1"
    assert entry["operation"] == "updateBalance"
    assert entry["customer_id"] == "cus_1" and entry["feature_id"] == "api_calls"
    assert entry["status"] == 200 and entry["duration_ms"] > 0
    assert entry["api_key_id"].startswith("key_")
    assert api.secret not in line and "sk_" not in line


async def test_text_format_is_readable(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="balances.request"):
        await api.client.get("/healthz")
    record = next(r for r in caplog.records if r.name == "balances.request")
    text = TextFormatter().format(record)
    assert "GET /healthz 200" in text and "operation=healthz" in text


async def test_an_unexpected_failure_carries_its_request_id_in_header_and_log(
    api: Api, app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding:
        async def submit(self, command: object) -> None:
            raise RuntimeError("boom")

    batcher, app.state.batcher = app.state.batcher, Exploding()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"authorization": f"Bearer {api.secret}", "x-request-id": "req-500"}
    body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level(logging.INFO):
                response = await client.post("/v1/balances.update", json=body, headers=headers)
    finally:
        app.state.batcher = batcher
    problem(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "req-500"
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    failure = next(line for line in lines if line["level"] == "error")
    assert failure["request_id"] == "req-500" and "RuntimeError: boom" in failure["exception"]
    logged = next(line for line in lines if line["logger"] == "balances.request")
    assert logged["request_id"] == "req-500" and logged["status"] == 500


class Lines(logging.Handler):
    """Log lines as the JSON formatter writes them, formatted when written (in their task)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(JsonFormatter().format(record)))


async def test_a_failing_write_logs_its_own_request_id_not_an_earlier_ones(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write path's workers outlive the request that started them: a line they write
    about a command names that command's request."""
    await api.post("balances.create", {"customer_id": "cus_1", "feature_id": "api_calls"},
                   **{"x-request-id": "req-first"})  # fmt: skip

    def boom(self: UpdateBalance, states: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(UpdateBalance, "apply", boom)
    handler = Lines()
    logging.getLogger("app.batcher").addHandler(handler)
    try:
        body = {"customer_id": "cus_1", "feature_id": "api_calls", "add_to_balance": 1}
        response = await api.post("balances.update", body, **{"x-request-id": "req-second"})
    finally:
        logging.getLogger("app.batcher").removeHandler(handler)
    problem(response, 500, "internal_error")
    failed = next(line for line in handler.lines if line["message"] == "command failed")
    assert failed["request_id"] == "req-second"
