"""Small helpers so each test reads as one scenario."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from app.core.json import dumps_exact, loads_exact


class Api:
    """Calls the service like a client would, and reads committed rows like an auditor would."""

    def __init__(self, client: httpx.AsyncClient, db: psycopg.Connection, secret: str) -> None:
        self.client = client
        self.db = db
        self.secret = secret

    async def post(self, path: str, body: Any, **headers: str | None) -> httpx.Response:
        """POST as JSON with this API's key; a header given as None is left out."""
        content = body if isinstance(body, bytes | str) else dumps_exact(body)
        defaults = {"content-type": "application/json", "authorization": f"Bearer {self.secret}"}
        merged = {k.replace("_", "-"): v for k, v in {**defaults, **headers}.items()}
        sent = {k: v for k, v in merged.items() if v is not None}
        return await self.client.post(f"/v1/{path}", content=content, headers=sent)

    async def ok(self, path: str, body: Any) -> Any:
        response = await self.post(path, body)
        assert response.status_code == 200, response.text
        return loads_exact(response.content)

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
        balance: dict[str, Any] = (await self.ok("balances.create", body))["balance"]
        return balance

    async def update(self, **fields: Any) -> dict[str, Any]:
        body = {"customer_id": "cus_1", "feature_id": "api_calls", **fields}
        balance: dict[str, Any] = (await self.ok("balances.update", body))["balance"]
        return balance

    def ledger(self, balance_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT kind, remaining_delta, usage_delta, remaining_after, usage_after "
            "FROM balance_ledger WHERE balance_id = %s ORDER BY id",
            (balance_id,),
        ).fetchall()
        keys = ("kind", "remaining_delta", "usage_delta", "remaining_after", "usage_after")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def rollover_ledger(self, balance_id: str) -> list[tuple[str, Decimal, Decimal]]:
        """(kind, rollover_delta, rollover_after) of each entry of the balance, oldest first."""
        return self.db.execute(
            "SELECT kind, rollover_delta, rollover_after FROM balance_ledger "
            "WHERE balance_id = %s ORDER BY id",
            (balance_id,),
        ).fetchall()

    def ledger_kinds(self, balance_id: str) -> list[str]:
        return [entry["kind"] for entry in self.ledger(balance_id)]

    def count(self, table: str) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        row = self.db.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    def invariant_violations(self) -> list[tuple[str, Decimal, Decimal]]:
        """Balances whose ledger does not sum to their remaining, or to what their rollovers
        hold (deleted ones must sum to 0)."""
        return self.db.execute(
            """
            WITH held AS (
                SELECT customer_id, id,
                       included_grant + prepaid_grant + adjustment - usage AS remaining,
                       (SELECT coalesce(sum((t->>'remaining')::numeric), 0)
                        FROM jsonb_array_elements(rollovers) t) AS rolled
                FROM balances
            )
            SELECT l.balance_id, coalesce(sum(l.remaining_delta), 0),
                   coalesce(max(b.remaining), 0)
            FROM balance_ledger l
            LEFT JOIN held b ON b.customer_id = l.customer_id AND b.id = l.balance_id
            GROUP BY l.balance_id
            HAVING coalesce(sum(l.remaining_delta), 0) <> coalesce(max(b.remaining), 0)
                OR coalesce(sum(l.rollover_delta), 0) <> coalesce(max(b.rolled), 0)
            """
        ).fetchall()


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the response is a problem+json error with this status and code; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["message"] == body["detail"] and body["detail"]
    return body


@contextmanager
def throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new empty database on the test server, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class RunningService:
    """`balances serve` as a real subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args]
        # A file, not a pipe: a pipe nobody reads would fill up and block a chatty service.
        self._output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (lives as long as self)
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "BALANCES_LOG_FORMAT": "text", **env},
            stdout=self._output,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, seconds: float = 30) -> "RunningService":
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("service did not become ready")

    def stop(self, seconds: float = 30) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read()
