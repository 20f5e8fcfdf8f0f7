"""Auth-off can never face a network, and the first admin key never reaches a log.

These drive `balances serve` as a real process, as an operator starts it: whatever turns
authentication off (flag, environment, .env file) is checked against the bind address, and the
bootstrap key's secret is looked for in everything the process writes.
"""

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.auth.commands import ensure_bootstrap_key
from app.auth.service import hash_secret
from app.core.config import Settings
from app.core.database import Database
from app.core.migrations import upgrade_to_head
from tests.helpers import RunningService, throwaway_database

ROOT = Path(__file__).resolve().parent.parent
ENV_SECRET = "sk_" + "bootstrap-from-the-environment-0123456789"


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    """An empty, migrated database of its own: no API key exists yet."""
    with throwaway_database(server_url, "balances_sec") as url:
        upgrade_to_head(url)
        yield url


def serve(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`balances serve …` that is expected to refuse, and so to exit on its own."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def list_balances(service: RunningService, secret: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(f"{service.url}/v1/balances.list", json={}, headers=headers)


def key_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    assert row is not None
    return int(row[0])


# --- auth off ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
@pytest.mark.parametrize("source", ["flag", "environment"])
def test_auth_off_is_refused_on_a_public_address(
    fresh_database: str, host: str, source: str
) -> None:
    env = {"DATABASE_URL": fresh_database}
    args = ["--host", host]
    if source == "flag":
        args.append("--insecure-no-auth")
    else:
        env["BALANCES_INSECURE_NO_AUTH"] = "true"
    result = serve(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refusing to start" in lines[0] and host in lines[0]
    assert key_count(fresh_database) == 0  # it stopped before doing anything


def test_auth_off_from_a_dotenv_file_is_refused_on_a_public_address(
    fresh_database: str, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("BALANCES_INSECURE_NO_AUTH=true\n")
    result = serve("--host", "0.0.0.0", env={"DATABASE_URL": fresh_database}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "BALANCES_INSECURE_NO_AUTH" in result.stderr


def test_auth_off_from_the_environment_warns_on_every_start_on_loopback(
    fresh_database: str,
) -> None:
    env = {"DATABASE_URL": fresh_database, "BALANCES_INSECURE_NO_AUTH": "true"}
    for _ in range(2):
        service = RunningService(env).wait_ready()
        try:
            assert list_balances(service, None).status_code == 200  # no key needed
        finally:
            assert service.stop() == 0
        assert "AUTHENTICATION IS OFF" in service.output()
    assert key_count(fresh_database) == 0  # and no bootstrap key was made


# --- the first admin key -------------------------------------------------------------------------


def test_first_start_writes_the_admin_key_to_a_0600_file_and_logs_only_its_path(
    fresh_database: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "not" / "yet" / "there"
    env = {
        "DATABASE_URL": fresh_database,
        "BALANCES_DATA_DIR": str(data_dir),
        "BALANCES_LOG_LEVEL": "debug",  # nothing, at any level, may carry the secret
    }
    service = RunningService(env).wait_ready()
    try:
        key_file = data_dir / "bootstrap-admin-key"
        secret = key_file.read_text().strip()
        assert secret.startswith("sk_") and len(secret) >= 40
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert list_balances(service, secret).status_code == 200
    finally:
        assert service.stop() == 0
    output = service.output()
    assert str(key_file) in output
    assert secret not in output and secret[3:] not in output
    assert [p.name for p in data_dir.iterdir()] == ["bootstrap-admin-key"]  # no temporary left

    # A second start finds a key and neither creates another nor touches the file.
    again = RunningService(env).wait_ready()
    assert again.stop() == 0
    assert key_count(fresh_database) == 1
    assert key_file.read_text().strip() == secret
    assert "bootstrap-admin-key" not in again.output()


def test_the_bootstrap_key_from_the_environment_is_registered_hashed_and_never_logged(
    fresh_database: str, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": fresh_database,
        "BALANCES_DATA_DIR": str(tmp_path / "data"),
        "BALANCES_BOOTSTRAP_ADMIN_KEY": ENV_SECRET,
        "BALANCES_LOG_LEVEL": "debug",
    }
    service = RunningService(env).wait_ready()
    try:
        assert list_balances(service, ENV_SECRET).status_code == 200
        assert list_balances(service, ENV_SECRET + "x").status_code == 401
    finally:
        assert service.stop() == 0
    assert ENV_SECRET not in service.output() and ENV_SECRET[3:] not in service.output()
    assert not (tmp_path / "data" / "bootstrap-admin-key").exists()
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT secret_hash, scopes FROM api_keys").fetchall()
    assert [(bytes(h), s) for h, s in rows] == [(hash_secret(ENV_SECRET), ["admin"])]


def test_balances_config_masks_the_bootstrap_key(fresh_database: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "config"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "BALANCES_BOOTSTRAP_ADMIN_KEY": ENV_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ENV_SECRET not in result.stdout + result.stderr
    assert '"bootstrap_admin_key": "**********"' in result.stdout


@pytest.mark.parametrize(
    "secret",
    ["sk_short", "pk_" + "a" * 40, "sk_" + "a" * 20 + " " + "b" * 20],
    ids=["too_short", "wrong_prefix", "has_a_space"],
)
def test_an_unacceptable_bootstrap_key_refuses_to_start_without_echoing_it(
    fresh_database: str, secret: str
) -> None:
    env = {"DATABASE_URL": fresh_database, "BALANCES_BOOTSTRAP_ADMIN_KEY": secret}
    result = serve(env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BALANCES_BOOTSTRAP_ADMIN_KEY" in lines[0], result.stderr
    assert secret not in result.stderr + result.stdout
    assert key_count(fresh_database) == 0


def test_an_unwritable_key_file_refuses_to_start_and_registers_nothing(
    fresh_database: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # the data directory would have to be inside a regular file
    env = {"DATABASE_URL": fresh_database, "BALANCES_DATA_DIR": str(blocker / "data")}
    result = serve(env=env)
    assert result.returncode == 2, result.stderr
    assert "BALANCES_BOOTSTRAP_ADMIN_KEY" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and "sk_" not in result.stderr
    assert key_count(fresh_database) == 0


async def test_a_bootstrap_key_is_made_once_and_only_while_no_key_exists(
    fresh_database: str, tmp_path: Path
) -> None:
    database = Database(fresh_database, Settings(database_url=fresh_database))
    key_file = tmp_path / "bootstrap-admin-key"
    try:
        created = await ensure_bootstrap_key(database.sessionmaker, key_file, ENV_SECRET)
        assert created is not None and not key_file.exists()
        # Keys exist now: neither a generated key nor another supplied one is added.
        assert await ensure_bootstrap_key(database.sessionmaker, key_file) is None
        other = "sk_" + "another-one-that-is-long-enough-0123"
        assert await ensure_bootstrap_key(database.sessionmaker, key_file, other) is None
    finally:
        await database.dispose()
    assert key_count(fresh_database) == 1 and not key_file.exists()
