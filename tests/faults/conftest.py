"""Fixtures of the fault suite: a PostgreSQL of its own, a throwaway database per scenario, and
services that are always gone when a scenario ends, however it ends."""

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.faults.harness import Postgres, Service
from tests.helpers import throwaway_database


@pytest.fixture(scope="package")
def postgres() -> Iterator[Postgres]:
    """Its own embedded server, even when DATABASE_URL names one: a scenario restarts it."""
    with tempfile.TemporaryDirectory(prefix="balances-faults-") as data_dir:
        server = Postgres(Path(data_dir))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def fault_db(postgres: Postgres) -> Iterator[str]:
    """An empty database for one scenario; `serve` migrates it."""
    with throwaway_database(postgres.admin_url, "balances_faults") as url:
        yield url


StartService = Callable[..., Service]


@pytest.fixture
def services(fault_db: str, tmp_path: Path) -> Iterator[StartService]:
    """Starts services on the scenario's database (``**env`` for settings); all of them are
    stopped (or killed) at the end. A failing scenario shows the last service's log."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        service = Service(fault_db, tmp_path, env)
        started.append(service)
        return service.wait_ready()

    try:
        yield start
    finally:
        for service in started:
            with suppress(subprocess.TimeoutExpired):  # killed anyway; the test judges exits
                service.stop()
        if started:
            print(f"--- last lines of {started[-1].log_path} ---")
            print(started[-1].log()[-3000:])
