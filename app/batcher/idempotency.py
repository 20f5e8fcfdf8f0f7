"""The idempotency step of the write path: claim a batch's keys, store their answers (SQL on
``idempotency_keys``, whose model lives in ``app.idempotency``)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

# The advisory lock of one key: held by whoever is applying a request under that key, until
# its transaction ends. The batch path only *tries* it, so a duplicate still in flight elsewhere
# is sent to the waiting path instead of stalling a whole batch.
_LOCK_KEY = "hashtextextended(c.scope || chr(31) || c.key, 0)"

_TRY_CLAIM = f"""
INSERT INTO idempotency_keys (scope, key, fingerprint, created_at)
SELECT c.scope, c.key, c.fingerprint, %s
FROM unnest(%s::text[], %s::text[], %s::bytea[]) AS c(scope, key, fingerprint)
WHERE pg_try_advisory_xact_lock({_LOCK_KEY})
ON CONFLICT DO NOTHING
RETURNING scope, key
"""

_WAIT_FOR_KEYS = f"""
SELECT pg_advisory_xact_lock({_LOCK_KEY})
FROM unnest(%s::text[], %s::text[]) AS c(scope, key)
ORDER BY c.scope, c.key
"""

_READ = """
SELECT r.scope, r.key, r.fingerprint, r.status_code, r.content_type, r.response_body
FROM idempotency_keys r
JOIN unnest(%s::text[], %s::text[]) AS c(scope, key) ON r.scope = c.scope AND r.key = c.key
WHERE r.key = ANY(%s::text[])
"""

_STORE = """
UPDATE idempotency_keys AS r
SET status_code = a.status_code, content_type = a.content_type, response_body = a.body
FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::bytea[])
    AS a(scope, key, status_code, content_type, body)
WHERE r.scope = a.scope AND r.key = a.key AND r.key = ANY(%s::text[])
"""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    fingerprint: bytes
    status_code: int
    content_type: str
    body: bytes


Key = tuple[str, str]  # (scope, Idempotency-Key)


async def claim(
    conn: AsyncConnection,
    keys: Sequence[tuple[str, str, bytes]],
    now: datetime,
    *,
    wait: bool,
) -> tuple[set[Key], dict[Key, StoredAnswer]]:
    """Claim ``(scope, key, fingerprint)`` triples for this transaction.

    Returns the keys now ours (apply the request, then ``store`` its answer) and the answers
    already stored for others (replay them). A key in neither is in flight in another
    transaction: with ``wait=False`` its request must go to the waiting path.
    """
    scopes, names, prints = (list(column) for column in zip(*keys, strict=True))
    if wait:
        await conn.exec_driver_sql(_WAIT_FOR_KEYS, (scopes, names))
    result: Sequence[Any] = (
        await conn.exec_driver_sql(_TRY_CLAIM, (now, scopes, names, prints))
    ).all()
    claimed: set[Key] = {(row[0], row[1]) for row in result}
    stored: dict[Key, StoredAnswer] = {}
    if len(claimed) < len(keys):
        parameters = (scopes, names, sorted(set(names)))
        rows: Sequence[Any] = (await conn.exec_driver_sql(_READ, parameters)).all()
        for scope, key, fingerprint, status, content_type, body in rows:
            if (scope, key) not in claimed and status is not None:
                stored[(scope, key)] = StoredAnswer(bytes(fingerprint), status, content_type, body)
    return claimed, stored


async def store(conn: AsyncConnection, answers: Sequence[tuple[str, str, int, str, bytes]]) -> None:
    """Store the answer of each claimed key, in the transaction that applied its request."""
    columns = [list(column) for column in zip(*answers, strict=True)]
    # The keys again, as a constant: Citus prunes idempotency_keys (distributed by key) with it.
    await conn.exec_driver_sql(_STORE, (*columns, sorted(set(columns[1]))))
