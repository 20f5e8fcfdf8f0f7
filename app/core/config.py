"""The one place configuration is read: environment (``BALANCES_`` prefix) and ``.env``."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The URL schemes DATABASE_URL may use; the service always connects with psycopg 3.
POSTGRES_DRIVERS = ("postgres", "postgresql", "postgresql+psycopg")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BALANCES_", env_file=".env", extra="ignore")

    # DATABASE_URL is the conventional name every platform sets, so it is read without the prefix.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "BALANCES_DATABASE_URL")
    )

    @field_validator("database_url")
    @classmethod
    def _a_postgres_url(cls, value: str | None) -> str | None:
        """Checked at start-up, in one line that never repeats the URL (it holds a password).
        Empty means unset (the embedded PostgreSQL), as an empty environment variable does."""
        if not value:
            return None
        try:
            driver = make_url(value).drivername
        except ArgumentError:
            raise ValueError(
                "not a database URL (expected postgresql://user:password@host:port/name; "
                "percent-encode @, / and : in the password)"
            ) from None
        if driver not in POSTGRES_DRIVERS:
            raise ValueError(f"must be a PostgreSQL URL, not {driver!r}")
        return value

    data_dir: Path = Path(".balances-data")
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    # Behind PgBouncer in transaction mode (docs/scaling.md): PgBouncer < 1.21 cannot keep the
    # statements psycopg prepares, and every PgBouncer refuses timeouts as startup options (set
    # them on the role instead; the write path sets its own per transaction either way).
    db_prepared_statements: bool = True
    db_startup_timeouts: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # balances.batch_track takes up to 1000 events in one body.
    max_batch_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    # Development only: every request acts as admin. `serve` refuses it on a public address.
    insecure_no_auth: bool = False
    # The first admin key, registered (hashed) by `serve` only while no key exists at all. Unset:
    # `serve` generates one and writes it to <data_dir>/bootstrap-admin-key (mode 0600).
    bootstrap_admin_key: SecretStr | None = None
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    idempotency_retention_hours: float = Field(default=24.0, ge=24)
    # Each worker tries to purge old idempotency records this often; one at a time does (0: off).
    idempotency_purge_interval_seconds: float = Field(default=600, ge=0)
    # A request stuck behind a row lock fails fast with 503 lock_timeout instead of hanging.
    lock_timeout_ms: int = Field(default=5_000, ge=1)
    # The write path: per process, this many partitions batch writes in parallel (a connection
    # each), up to write_batch_size commands per transaction; commands whose rows another
    # transaction holds wait for them on at most write_waiting_slots connections.
    write_partitions: int = Field(default=4, ge=1, le=64)
    write_batch_size: int = Field(default=64, ge=1, le=1000)
    write_waiting_slots: int = Field(default=4, ge=1, le=64)
    # What one write batch may hold: the commands of one partition (many customers: the most
    # batching on one Postgres), or of one customer (one shard on Citus: no two-phase commit).
    write_batch_scope: Literal["partition", "customer"] = "partition"
    statement_timeout_ms: int = Field(default=15_000, ge=1)
    # 0 turns the background sweeper off; `balances sweep` still works on demand.
    sweep_interval_seconds: float = Field(default=0, ge=0)
    sweep_batch_size: int = Field(default=500, ge=1, le=10_000)
    # A client must send a request's headers, then its whole body, within these: a slow client
    # must not hold a connection or a worker's request slot for ever (408 request_timeout).
    request_header_timeout_seconds: float = Field(default=10.0, gt=0)
    request_body_timeout_seconds: float = Field(default=10.0, gt=0)
    # `serve` restarts an embedded PostgreSQL that died; after this many failed attempts in a
    # row, /healthz answers 503 so that an orchestrator restarts the whole service.
    embedded_restart_attempts: int = Field(default=5, ge=1)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def environment_names() -> dict[str, str]:
    """Each setting's field name -> the environment variable (or ``.env`` line) that sets it."""
    names = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        first = alias.choices[0] if isinstance(alias, AliasChoices) else None
        names[field] = first if isinstance(first, str) else f"BALANCES_{field.upper()}"
    return names


def describe_invalid(error: ValidationError) -> str:
    """One line naming every bad setting as the operator wrote it, and what is wrong with it.

    Values are not repeated: a setting may hold a secret (a password in DATABASE_URL).
    """
    names = environment_names()
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        problems.append(f"{names.get(field, field or 'settings')}: {item['msg']}")
    return "; ".join(problems)


class _LogFormatOnly(BaseSettings):
    model_config = Settings.model_config
    log_format: str = "json"


def log_format_despite_invalid_settings() -> str:
    """The log format asked for, read on its own: so that even the line saying another setting
    is invalid comes in the format the operator's log pipeline expects."""
    return "text" if _LogFormatOnly().log_format == "text" else "json"
