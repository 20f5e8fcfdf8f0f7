"""The `balances` command as operators run it: keys, first run, the no-auth guard, its version
and its settings."""

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI

from app.core.migrations import upgrade_to_head
from tests.helpers import Api, throwaway_database

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    """An empty, migrated database of its own: these tests count keys from zero."""
    with throwaway_database(server_url, "balances_cli") as url:
        upgrade_to_head(url)
        yield url


def balances(
    database_url: str, *args: str, timeout: float = 60, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, **(settings or {})}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_keys_create_list_and_revoke(fresh_database: str) -> None:
    created = balances(fresh_database, "keys", "create", "--name", "billing", "--scope", "write")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["secret"].startswith("sk_") and len(key["secret"]) >= 40
    assert key["scopes"] == ["write"]

    listed = json.loads(balances(fresh_database, "keys", "list").stdout)
    assert [k["id"] for k in listed] == [key["id"]]
    assert key["secret"] not in json.dumps(listed)
    with psycopg.connect(fresh_database) as conn:
        stored = conn.execute("SELECT secret_hash FROM api_keys").fetchone()
    assert stored is not None and key["secret"].encode() not in bytes(stored[0])

    revoked = balances(fresh_database, "keys", "revoke", key["id"])
    assert revoked.returncode == 0
    assert json.loads(balances(fresh_database, "keys", "list").stdout)[0]["revoked_at"]


def test_revoking_an_unknown_key_fails_clearly(fresh_database: str) -> None:
    result = balances(fresh_database, "keys", "revoke", "key_nope")
    assert result.returncode == 1
    assert "There is no API key 'key_nope'" in result.stderr and "Traceback" not in result.stderr


def test_insecure_no_auth_refuses_a_public_address(fresh_database: str) -> None:
    result = balances(fresh_database, "serve", "--insecure-no-auth", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "refusing" in result.stderr


def test_first_start_creates_one_admin_key_in_a_file(fresh_database: str, tmp_path: Path) -> None:
    key_file = tmp_path / "bootstrap-admin-key"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.cli import _run\n"
        "from app.auth.commands import ensure_bootstrap_key\n"
        "key_file = Path(sys.argv[2])\n"
        "for _ in range(2): _run(sys.argv[1], lambda s: ensure_bootstrap_key(s, key_file))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, fresh_database, str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert key_file.read_text().startswith("sk_")
    assert "sk_" not in result.stdout + result.stderr
    listed = json.loads(balances(fresh_database, "keys", "list").stdout)
    assert [k["scopes"] for k in listed] == [["admin"]]


async def test_version_agrees_in_command_openapi_and_metric(api: Api, app: FastAPI) -> None:
    released = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    command = balances("", "--version")
    assert command.returncode == 0 and command.stdout.split() == ["balances", released]
    assert app.openapi()["info"]["version"] == released
    scrape = (await api.client.get("/metrics")).text
    assert f'balances_build_info{{version="{released}"}} 1.0' in scrape.splitlines()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("BALANCES_WRITE_BATCH_SIZE", "abc"),
        ("BALANCES_LOG_FORMAT", "xml"),
        ("DATABASE_URL", "notaurl"),
        ("DATABASE_URL", "mysql://app:s3cret@db/balances"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(setting: str, value: str) -> None:
    result = balances("", "serve", settings={setting: value})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert json.loads(line)["level"] == "error" and setting in line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "s3cret" not in result.stderr  # a database URL's password is never repeated


def test_a_bad_setting_is_reported_in_the_log_format_asked_for() -> None:
    settings = {"BALANCES_LOG_FORMAT": "text", "BALANCES_DB_POOL_SIZE": "0"}
    result = balances("", "config", settings={**settings, "BALANCES_LOG_LEVEL": ""})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "BALANCES_DB_POOL_SIZE: Input should be greater than or equal to 1" in line
    assert "BALANCES_LOG_LEVEL" in line and not line.startswith("{")
