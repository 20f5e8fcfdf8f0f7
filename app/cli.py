"""The ``balances`` command: ``serve``, ``migrate``, ``sweep``, ``verify``, ``keys``, ``config``,
``openapi``.

Each uses DATABASE_URL when it is set; otherwise it starts the embedded PostgreSQL whose data
lives in ``--data-dir`` (default ``./.balances-data``), so a laptop needs nothing installed.
"""

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import describe_invalid, get_settings, log_format_despite_invalid_settings
from app.core.errors import DomainError
from app.core.logging import configure_logging, logging_config
from app.core.version import service_version

logger = logging.getLogger("balances")
T = TypeVar("T")

# On SIGTERM, requests in flight get this long to finish (an orchestrator's grace period must
# be longer: docker-compose.yml's stop_grace_period).
DRAIN_SECONDS = 30


@contextmanager
def _database(data_dir: Path | None, supervise: bool = False) -> Iterator[str]:
    """DATABASE_URL if set; else an embedded server for the duration of the command.

    The embedded database is ours alone, so it is always brought to the latest schema first
    (`balances keys create` may well be the first command a newcomer runs). With ``supervise``
    (``serve``), a server this process started is restarted whenever it dies.
    """
    settings = get_settings()
    if settings.database_url:
        yield settings.database_url
        return
    from app.core.embedded_postgres import FAILURE_FILE_ENV, EmbeddedPostgres
    from app.core.migrations import upgrade_to_head

    server = EmbeddedPostgres(data_dir or settings.data_dir).start()
    try:
        url = server.url()
        upgrade_to_head(url)
        # uvicorn workers are child processes: they find the server through the environment.
        os.environ["DATABASE_URL"] = url
        if supervise and server.owned:
            server.supervise(settings.embedded_restart_attempts)
            os.environ[FAILURE_FILE_ENV] = str(server.failure_file)  # read by /healthz
        get_settings.cache_clear()
        yield url
    finally:
        server.stop()


def _run(url: str, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run one async task against the database, with a pool that lives only for it."""
    from app.core.database import Database

    async def main() -> T:
        database = Database(url, get_settings())
        try:
            return await work(database.sessionmaker)
        finally:
            await database.dispose()

    return asyncio.run(main())


def _migrate(args: argparse.Namespace) -> int:
    from app.core.migrations import upgrade_to_head

    with _database(args.data_dir) as url:
        upgrade_to_head(url)
    logger.info("database schema is at the latest migration")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from app.core.clock import SystemClock
    from app.sweeper import Sweeper

    with _database(args.data_dir) as url:
        persisted = _run(
            url,
            lambda sessions: Sweeper.from_settings(
                sessions, SystemClock(), get_settings()
            ).sweep_once(),
        )
    print(json.dumps({"persisted": persisted}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Check the conservation invariant and version sequence; exit 1 if any balance fails."""
    import simplejson

    from app.ledger.verify import verify_ledger

    with _database(args.data_dir) as url:
        report = _run(url, lambda s: verify_ledger(s, args.customer_id, args.limit))
    print(simplejson.dumps(report.as_dict(), use_decimal=True, indent=2))
    if not report.ok:
        logger.error("%d balance(s) break the ledger invariant", report.violation_count)
        return 1
    return 0


def _keys(args: argparse.Namespace) -> int:
    from app.auth import commands
    from app.auth.models import Scope

    with _database(args.data_dir) as url:
        if args.keys_command == "create":
            scopes = [Scope(s) for s in args.scope]
            key_id, secret = _run(url, lambda s: commands.create_key(s, args.name, scopes))
            print(json.dumps({"id": key_id, "secret": secret, "scopes": sorted(scopes)}))
            logger.warning("Store the secret now: it is not shown again.")
        elif args.keys_command == "list":
            print(json.dumps(_run(url, commands.list_keys), indent=2))
        else:
            _run(url, lambda s: commands.revoke_key(s, args.id))
            print(json.dumps({"id": args.id, "revoked": True}))
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _refuse(message: str) -> int:
    """Refuse to start: one log line, exit status 2 (a configuration error)."""
    logger.error("refusing to start: %s", message)
    return 2


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.auth.commands import BOOTSTRAP_KEY_FILE, ensure_bootstrap_key
    from app.auth.service import secret_problem

    settings = get_settings()
    # Auth-off is checked against the address whatever turned it on: the flag, the environment
    # or a .env file (the workers read it from settings, so any of them turns auth off).
    insecure = args.insecure_no_auth or settings.insecure_no_auth
    if insecure and not _is_loopback(args.host):
        source = "--insecure-no-auth" if args.insecure_no_auth else "BALANCES_INSECURE_NO_AUTH"
        return _refuse(
            f"authentication is off ({source}) and --host {args.host} is not a loopback "
            "address; serve on 127.0.0.1, or turn authentication back on"
        )
    bootstrap_secret = (
        settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
    )
    if bootstrap_secret is not None and (problem := secret_problem(bootstrap_secret)):
        return _refuse(f"BALANCES_BOOTSTRAP_ADMIN_KEY is not acceptable: {problem}")
    if insecure:
        logger.warning(
            "AUTHENTICATION IS OFF (%s): every request acts as admin. For local development "
            "only; serving on %s.",
            "--insecure-no-auth" if args.insecure_no_auth else "BALANCES_INSECURE_NO_AUTH",
            args.host,
        )
        os.environ["BALANCES_INSECURE_NO_AUTH"] = "true"  # workers read it from settings
        get_settings.cache_clear()
    data_dir = (args.data_dir or settings.data_dir).expanduser().resolve()
    from app.core.http_protocol import protocol
    from app.core.migrations import upgrade_to_head  # after the checks: alembic logs on import

    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to whatever handler
    # was installed before it. Ours turns it into SystemExit so the `finally` that stops the
    # embedded Postgres still runs (the default handler would kill the process first).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with _database(args.data_dir, supervise=True) as url, _metrics_dir(args.workers):
        upgrade_to_head(url)
        if not insecure:
            key_file = data_dir / BOOTSTRAP_KEY_FILE
            try:
                _run(url, lambda s: ensure_bootstrap_key(s, key_file, bootstrap_secret))
            except OSError as error:
                return _refuse(
                    f"no API key exists and the first admin key cannot be written to "
                    f"{key_file} ({error.strerror}); set BALANCES_BOOTSTRAP_ADMIN_KEY, or "
                    "BALANCES_DATA_DIR to a writable directory"
                )
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=logging_config(settings.log_level, settings.log_format),
            timeout_graceful_shutdown=DRAIN_SECONDS,
            http=protocol(),  # uvicorn's own, plus a deadline for request headers
        )
    return 0


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, Prometheus samples go to a shared directory so that a scrape of
    any worker reports all of them (prometheus_client's multiprocess mode)."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="balances-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _config(args: argparse.Namespace) -> int:
    """Print the effective configuration, secrets masked."""
    settings = get_settings().model_dump(mode="json")
    if settings.get("database_url"):
        settings["database_url"] = make_url(settings["database_url"]).render_as_string(
            hide_password=True
        )
    settings["database"] = "DATABASE_URL" if settings.get("database_url") else "embedded"
    print(json.dumps(settings, indent=2, sort_keys=True))
    return 0


def _openapi(args: argparse.Namespace) -> int:
    """Print the OpenAPI document the service serves: ``balances openapi > openapi.json``."""
    from app.core.docs import document_text
    from app.main import openapi_document

    sys.stdout.write(document_text(openapi_document()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="balances", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {service_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="embedded PostgreSQL data directory, used when DATABASE_URL is not set",
    )

    serve = commands.add_parser("serve", parents=[data_dir], help="migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="local development only: no API keys; refused on a non-loopback --host",
    )
    serve.set_defaults(handler=_serve)

    config = commands.add_parser("config", help="print the effective configuration (masked)")
    config.set_defaults(handler=_config)

    migrate = commands.add_parser("migrate", parents=[data_dir], help="upgrade the schema")
    migrate.set_defaults(handler=_migrate)

    sweep = commands.add_parser(
        "sweep", parents=[data_dir], help="persist due resets, expire locks, purge old keys"
    )
    sweep.set_defaults(handler=_sweep)

    verify = commands.add_parser(
        "verify",
        parents=[data_dir],
        help="check every balance against its ledger; exit 1 if any does not add up",
    )
    verify.add_argument("--customer-id", default=None, help="check only this customer")
    verify.add_argument(
        "--limit", type=int, default=1000, help="list at most this many offending balances"
    )
    verify.set_defaults(handler=_verify)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document (openapi.json)")
    openapi.set_defaults(handler=_openapi)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", parents=[data_dir], help="create a key")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=["read", "write", "admin"],
        help="repeatable; write includes read, admin includes both",
    )
    key_commands.add_parser("list", parents=[data_dir], help="list keys (never secrets)")
    revoke = key_commands.add_parser("revoke", parents=[data_dir], help="revoke a key")
    revoke.add_argument("id")
    keys.set_defaults(handler=_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    """stdout carries a command's result; stderr is the log, in the configured format (with
    JSON, every line is a JSON object: refusals and failures too, never a bare traceback)."""
    args = build_parser().parse_args(argv)  # --help and --version need no settings
    try:
        settings = get_settings()
    except ValidationError as error:
        configure_logging("info", log_format_despite_invalid_settings())
        logger.error("refusing to start: invalid setting: %s", describe_invalid(error))
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        result: int = args.handler(args)
    except DomainError as error:
        logger.error("%s", error.message)
        return 1
    except Exception:
        logger.critical("balances %s failed", args.command, exc_info=True)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
