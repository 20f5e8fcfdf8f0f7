"""`balances serve` supervises the embedded PostgreSQL it started.

The postmaster is killed with SIGKILL, as the OOM killer would: the service must restart it and
answer again within seconds, with every committed balance intact. When it cannot restart it,
``/healthz`` must fail so that an orchestrator restarts the service, and SIGTERM must still
exit cleanly (0, no traceback).
"""

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.helpers import RunningService


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])


def kill_postmaster(data_dir: Path) -> int:
    pid = postmaster_pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Poll ``condition`` until it holds; how long that took. Fails after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if condition():
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s")


def start(tmp_path: Path, **env: str) -> tuple[RunningService, Path, dict[str, str]]:
    data_dir = tmp_path / "data"
    service = RunningService(
        {"DATABASE_URL": "", "BALANCES_DATA_DIR": str(data_dir), **env}
    ).wait_ready(60)
    secret = (data_dir / "bootstrap-admin-key").read_text().strip()
    return service, data_dir, {"authorization": f"Bearer {secret}"}


def test_a_killed_postmaster_is_restarted_and_nothing_committed_is_lost(tmp_path: Path) -> None:
    service, data_dir, headers = start(tmp_path)
    try:
        body = {"customer_id": "cus_crash", "feature_id": "f", "included_grant": 5}
        created = httpx.post(f"{service.url}/v1/balances.create", json=body, headers=headers)
        assert created.status_code == 200, created.text
        killed = kill_postmaster(data_dir)

        def answers() -> bool:
            listed = httpx.post(
                f"{service.url}/v1/balances.list", json={"customer_id": "cus_crash"},
                headers=headers, timeout=5,
            )  # fmt: skip
            return listed.status_code == 200 and listed.json()["list"][0]["remaining"] == 5

        assert wait_for(answers, 20) < 20
        assert postmaster_pid(data_dir) != killed
        assert httpx.get(f"{service.url}/healthz").status_code == 200
        assert httpx.get(f"{service.url}/readyz").status_code == 200
    finally:
        assert service.stop() == 0
    output = service.output()
    assert "Traceback" not in output
    assert "embedded PostgreSQL restarted" in output


def test_a_postmaster_that_cannot_come_back_fails_liveness_until_it_does(tmp_path: Path) -> None:
    service, data_dir, headers = start(tmp_path, BALANCES_EMBEDDED_RESTART_ATTEMPTS="2")
    config = data_dir / "pgdata" / "postgresql.conf"
    original = config.read_text()
    try:
        config.write_text(original + "\nshared_buffers = 'not a size'\n")  # read only on start
        kill_postmaster(data_dir)
        wait_for(lambda: httpx.get(f"{service.url}/healthz").status_code == 503, 30)
        assert httpx.get(f"{service.url}/readyz").status_code == 503
        listed = httpx.post(f"{service.url}/v1/balances.list", json={}, headers=headers)
        assert listed.status_code == 503  # never a 500
        assert listed.json()["code"] == "database_unavailable"

        config.write_text(original)  # the operator fixes it: the next attempt succeeds
        wait_for(lambda: httpx.get(f"{service.url}/healthz").status_code == 200, 30)
        wait_for(
            lambda: (
                httpx.post(f"{service.url}/v1/balances.list", json={}, headers=headers).status_code
                == 200
            ),
            10,
        )
    finally:
        config.write_text(original)
        assert service.stop() == 0
    output = service.output()
    assert "could not be restarted after 2 attempts" in output
    assert "Traceback" not in output


def test_sigterm_after_the_postmaster_died_for_good_exits_cleanly(tmp_path: Path) -> None:
    service, data_dir, _ = start(tmp_path, BALANCES_EMBEDDED_RESTART_ATTEMPTS="1")
    config = data_dir / "pgdata" / "postgresql.conf"
    config.write_text(config.read_text() + "\nshared_buffers = 'not a size'\n")
    kill_postmaster(data_dir)
    wait_for(lambda: httpx.get(f"{service.url}/healthz").status_code == 503, 30)
    assert service.stop() == 0
    output = service.output()
    assert "Traceback" not in output
    assert "not running at shutdown" in output
