"""The write path talks to psycopg directly, on a connection checked out of SQLAlchemy's pool.

Repositories run their SQL through one method, ``exec_driver_sql`` (SQLAlchemy's name), so
reads keep using SQLAlchemy connections while a batch uses these two faces of one psycopg
connection: ``Fetching`` waits for each statement's rows (locks, claims), ``Queueing`` sends
statements down a psycopg pipeline without waiting, so a batch's writes and its COMMIT travel
in one round trip.
"""

from collections.abc import Sequence
from typing import Any

import psycopg


class Rows:
    """The part of SQLAlchemy's ``Result`` the repositories use."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = rows

    def all(self) -> Sequence[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None


Statement = tuple[str, Any]  # SQL and its parameters


class Fetching:
    """``prelude``: a statement to send with the transaction's first one, in the same round
    trip (its rows are not wanted): the transaction's own settings, which need no trip of
    their own."""

    def __init__(self, pg: psycopg.AsyncConnection[Any], prelude: Statement | None = None) -> None:
        self.pg = pg
        self.prelude = prelude

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> Rows:
        if self.prelude is None:
            cursor = await self.pg.execute(statement, parameters)
        else:
            prelude, self.prelude = self.prelude, None
            # BEGIN still travels alone (psycopg syncs it), as without the prelude; the prelude
            # and the statement then share the next trip, which the pipeline's end sends.
            async with self.pg.pipeline():
                await self.pg.execute(*prelude)
                cursor = await self.pg.execute(statement, parameters)
        return Rows(await cursor.fetchall() if cursor.description else [])


class Queueing:
    """Only inside ``pg.pipeline()``; errors surface when the pipeline syncs (at COMMIT)."""

    def __init__(self, pg: psycopg.AsyncConnection[Any]) -> None:
        self.pg = pg

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> Rows:
        await self.pg.execute(statement, parameters)
        return Rows([])
