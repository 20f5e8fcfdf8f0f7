"""The ``balances`` command: ``serve`` and ``migrate``.

Both use DATABASE_URL when it is set; otherwise they start the embedded PostgreSQL whose data
lives in ``--data-dir`` (default ``./.balances-data``), so a laptop needs nothing installed.
"""

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.config import get_settings

logger = logging.getLogger("balances")


@contextmanager
def _database(data_dir: Path | None) -> Iterator[str]:
    """DATABASE_URL if set; else an embedded server for the duration of the command."""
    settings = get_settings()
    if settings.database_url:
        yield settings.database_url
        return
    from app.core.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir or settings.data_dir).start()
    try:
        url = server.url()
        # uvicorn workers are child processes: they find the server through the environment.
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        yield url
    finally:
        server.stop()


def _migrate(args: argparse.Namespace) -> int:
    from app.core.migrations import upgrade_to_head

    with _database(args.data_dir) as url:
        upgrade_to_head(url)
    logger.info("database schema is at the latest migration")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from app.core.clock import SystemClock
    from app.core.database import Database
    from app.sweeper import Sweeper

    async def sweep(url: str) -> int:
        settings = get_settings()
        database = Database(url, settings)
        try:
            sweeper = Sweeper(database.sessionmaker, SystemClock(), settings.sweep_batch_size)
            return await sweeper.sweep_once()
        finally:
            await database.dispose()

    with _database(args.data_dir) as url:
        print(json.dumps({"persisted": asyncio.run(sweep(url))}))
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.core.migrations import upgrade_to_head

    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to whatever handler
    # was installed before it. Ours turns it into SystemExit so the `finally` that stops the
    # embedded Postgres still runs (the default handler would kill the process first).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with _database(args.data_dir) as url:
        upgrade_to_head(url)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=get_settings().log_level,
            timeout_graceful_shutdown=30,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="balances", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    data_dir_help = "embedded PostgreSQL data directory, used when DATABASE_URL is not set"

    serve = commands.add_parser("serve", help="run migrations, then serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    migrate.set_defaults(handler=_migrate)

    sweep = commands.add_parser(
        "sweep", help="persist due resets and expire reservations now (one pass)"
    )
    sweep.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    sweep.set_defaults(handler=_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # chatty at INFO
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
