"""Swagger UI renders for operators: loaded in headless Chromium, with no network beyond
loopback (its assets are served by the service itself). Runs where Chromium is installed;
.ci/run installs it."""

import shutil
import subprocess
import tempfile

import pytest

from tests.helpers import RunningService

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]
OPERATIONS = ["create", "update", "list", "delete", "check", "track", "finalize", "history"]


def test_swagger_ui_renders_every_operation(database_url: str, keys: dict[str, str]) -> None:
    assert CHROMIUM is not None
    service = RunningService({"DATABASE_URL": database_url}).wait_ready()
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [
                    CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                    "--dump-dom", f"{service.url}/docs",
                ],
                capture_output=True, text=True, timeout=120, check=True,
            ).stdout  # fmt: skip
    finally:
        service.stop()
    for operation in OPERATIONS:
        assert f'data-path="/v1/balances.{operation}"' in dom, operation
    assert "Authorize" in dom  # bearer auth is wired into the UI
    assert "reservations" in dom and "ledger" in dom  # tags group the operations
