"""Process lifecycle: graceful shutdown, and the embedded server's data surviving restarts."""

import json
import threading
from pathlib import Path

import httpx
import psutil
import psycopg

from tests.helpers import RunningService


def test_request_in_flight_at_sigterm_completes(database_url: str, keys: dict[str, str]) -> None:
    service = RunningService({"DATABASE_URL": database_url}).wait_ready()
    headers = {"authorization": f"Bearer {keys['write']}"}
    body = {"customer_id": "cus_sigterm", "feature_id": "f", "included_grant": 1}
    created = httpx.post(f"{service.url}/v1/balances.create", json=body, headers=headers)
    assert created.status_code == 200, created.text
    results: list[httpx.Response] = []
    with psycopg.connect(database_url) as locker:
        locker.execute("SELECT 1 FROM balances WHERE customer_id = 'cus_sigterm' FOR UPDATE")
        update = {"customer_id": "cus_sigterm", "feature_id": "f", "add_to_balance": 1}
        in_flight = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    f"{service.url}/v1/balances.update", json=update, headers=headers, timeout=30
                )
            )
        )
        in_flight.start()
        threading.Event().wait(0.5)  # the update is now queued behind our row lock
        service.process.send_signal(15)
        threading.Event().wait(0.5)
        locker.rollback()  # let it finish while the server is shutting down
    in_flight.join(timeout=30)
    assert service.stop() == 0
    assert [r.status_code for r in results] == [200]
    assert results[0].json()["balance"]["remaining"] == 2


def _postgres_running_on(data_dir: Path) -> bool:
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(data_dir) in " ".join(
            process.info["cmdline"] or []
        ):
            return True
    return False


def test_embedded_postgres_stops_on_exit_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"DATABASE_URL": "", "BALANCES_DATA_DIR": str(data_dir)}
    first = RunningService(env).wait_ready()
    assert first.stop() == 0
    secret = (data_dir / "bootstrap-admin-key").read_text().strip()  # the first-run admin key
    assert secret.startswith("sk_") and secret not in first.output()
    assert not _postgres_running_on(data_dir)

    second = RunningService(env).wait_ready()
    headers = {"authorization": f"Bearer {secret}"}
    body = {"customer_id": "cus_restart", "feature_id": "f", "included_grant": 7}
    assert httpx.post(f"{second.url}/v1/balances.create", json=body, headers=headers).is_success
    assert second.stop() == 0
    assert not _postgres_running_on(data_dir)

    third = RunningService(env).wait_ready()
    listed = httpx.post(
        f"{third.url}/v1/balances.list", json={"customer_id": "cus_restart"}, headers=headers
    ).json()
    assert third.stop() == 0
    assert [b["remaining"] for b in listed["list"]] == [7]


def test_two_workers_report_their_metrics_together(database_url: str, keys: dict[str, str]) -> None:
    service = RunningService({"DATABASE_URL": database_url}, "--workers", "2").wait_ready()
    try:
        headers = {"authorization": f"Bearer {keys['read']}"}
        for _ in range(6):  # a connection each: the kernel spreads them over both workers
            listed = httpx.post(f"{service.url}/v1/balances.list", json={}, headers=headers)
            assert listed.status_code == 200
        scrape = httpx.get(f"{service.url}/metrics").text
    finally:
        assert service.stop() == 0
    line = next(
        line
        for line in scrape.splitlines()
        if line.startswith('balances_http_requests_total{operation="listBalances",status="200"}')
    )
    assert float(line.split()[-1]) == 6


def test_with_json_logs_every_line_of_a_first_start_is_json(tmp_path: Path) -> None:
    """Embedded Postgres, migrations, the first-run admin key, requests and shutdown: all of
    it a log pipeline can parse, line by line, with the request id on what a request wrote."""
    env = {"DATABASE_URL": "", "BALANCES_DATA_DIR": str(tmp_path), "BALANCES_LOG_FORMAT": "json"}
    service = RunningService(env).wait_ready()
    answered = httpx.get(f"{service.url}/nowhere", headers={"x-request-id": "req-json-1"})
    assert service.stop() == 0
    assert answered.headers["x-request-id"] == "req-json-1"
    lines = [json.loads(line) for line in service.output().splitlines()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(
        line["logger"] == "balances.auth" and "admin key" in line["message"] for line in lines
    )
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    request = next(line for line in lines if line["message"] == "GET /nowhere 404")
    assert request["request_id"] == "req-json-1" and request["status"] == 404
