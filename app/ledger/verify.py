"""``balances verify``: check the ledger against the balances, in one set-based statement.

What is checked, for every balance (or every balance of one customer), live or deleted:

- **conservation**: the sum of its entries' ``remaining_delta`` equals its ``remaining``
  (``included_grant + prepaid_grant + adjustment - usage``); for a deleted balance (entries but
  no row), the sum is 0; likewise ``rollover_delta`` sums to what its carry-overs hold;
- **no gaps**: each life of the balance (from its ``create`` entry on; a customer may reuse the
  id of a balance it deleted) has versions 1, 2, 3… in entry order, with none missing or
  repeated, and the latest entry's ``balance_version`` is the row's ``version``, so no change
  (a reset, an expiry, a reservation) was applied without its entry;
- **closure**: a deleted balance's last entry is its ``delete`` entry, and a live balance's is
  not.

One statement reads one snapshot of both tables, so a running service may keep writing. It
sorts the ledger once (a window over balance and entry id), so it runs in seconds over
millions of entries; it reads without locks and with no statement timeout.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

CHECKS = (
    "sum(remaining_delta) of a balance's entries equals its remaining; 0 once deleted",
    "sum(rollover_delta) of a balance's entries equals what its rollovers hold; 0 once deleted",
    "each life of a balance has versions 1..n in entry order, without gaps or repeats",
    "the latest entry's balance_version equals the balance's version",
    "a deleted balance ends with a delete entry; a live one does not",
)

_SQL = """
WITH entries AS (
    SELECT customer_id, balance_id, kind, remaining_delta, rollover_delta, balance_version,
           lag(balance_version) OVER w AS previous_version,
           lead(id) OVER w IS NULL AS is_last
    FROM balance_ledger
    {ledger_filter}
    WINDOW w AS (PARTITION BY customer_id, balance_id ORDER BY id)
),
ledger AS (
    SELECT customer_id, balance_id,
           count(*) AS entries,
           sum(remaining_delta) AS ledger_remaining,
           sum(rollover_delta) AS ledger_rollovers,
           count(*) FILTER (
               WHERE CASE WHEN kind = 'create' THEN balance_version <> 1
                          ELSE previous_version IS NULL
                               OR balance_version <> previous_version + 1 END
           ) AS out_of_sequence,
           max(balance_version) FILTER (WHERE is_last) AS last_version,
           bool_or(is_last AND kind = 'delete') AS closed
    FROM entries
    GROUP BY customer_id, balance_id
),
live_rows AS (
    SELECT customer_id, id, version,
           included_grant + prepaid_grant + adjustment - usage AS remaining,
           (SELECT coalesce(sum((t->>'remaining')::numeric), 0)
            FROM jsonb_array_elements(rollovers) t) AS rollovers
    FROM balances
    {balance_filter}
),
checked AS (
    SELECT coalesce(b.customer_id, l.customer_id) AS customer_id,
           coalesce(b.id, l.balance_id) AS balance_id,
           b.id IS NOT NULL AS live,
           coalesce(l.entries, 0) AS entries,
           coalesce(b.remaining, 0) AS expected_remaining,
           coalesce(l.ledger_remaining, 0) AS ledger_remaining,
           coalesce(b.rollovers, 0) AS expected_rollovers,
           coalesce(l.ledger_rollovers, 0) AS ledger_rollovers,
           coalesce(l.out_of_sequence, 0) AS out_of_sequence,
           b.version AS version,
           l.last_version,
           coalesce(l.closed, false) AS closed
    FROM ledger l
    FULL JOIN live_rows b ON b.customer_id = l.customer_id AND b.id = l.balance_id
),
judged AS (
    SELECT *,
           array_remove(ARRAY[
               CASE WHEN ledger_remaining <> expected_remaining THEN 'remaining_mismatch' END,
               CASE WHEN ledger_rollovers <> expected_rollovers THEN 'rollover_mismatch' END,
               CASE WHEN out_of_sequence > 0 THEN 'version_gap' END,
               CASE WHEN live AND last_version IS DISTINCT FROM version
                    THEN 'version_mismatch' END,
               CASE WHEN live AND closed THEN 'live_after_delete' END,
               CASE WHEN NOT live AND NOT closed THEN 'deleted_without_delete_entry' END
           ], NULL) AS problems
    FROM checked
),
totals AS (
    SELECT count(*) AS balances,
           count(*) FILTER (WHERE live) AS live,
           coalesce(sum(entries), 0) AS entries,
           count(*) FILTER (WHERE cardinality(problems) > 0) AS violations
    FROM judged
)
SELECT t.balances, t.live, t.entries, t.violations,
       v.customer_id, v.balance_id, v.live AS balance_live, v.entries AS balance_entries,
       v.expected_remaining, v.ledger_remaining, v.expected_rollovers, v.ledger_rollovers,
       v.out_of_sequence, v.version, v.last_version,
       v.problems
FROM totals t
LEFT JOIN LATERAL (
    SELECT * FROM judged
    WHERE cardinality(problems) > 0
    ORDER BY customer_id, balance_id
    LIMIT :limit
) v ON true
"""


def _plain(amount: Decimal) -> Decimal:
    """``100.000000000`` as ``100``: NUMERIC(30, 9) without its padding, exactly."""
    return Decimal(f"{amount.normalize():f}") if amount else Decimal(0)


@dataclass
class Report:
    customer_id: str | None
    balances: int = 0
    live: int = 0
    entries: int = 0
    violation_count: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "customer_id": self.customer_id,
            "balances_checked": self.balances,
            "live_balances": self.live,
            "deleted_balances": self.balances - self.live,
            "ledger_entries": self.entries,
            "checks": list(CHECKS),
            "violation_count": self.violation_count,
            "violations": self.violations,
        }


async def verify_ledger(
    sessions: async_sessionmaker[AsyncSession], customer_id: str | None = None, limit: int = 1000
) -> Report:
    """Check every balance (or one customer's) against its ledger; list at most ``limit``
    offending balances (all are counted)."""
    where = "WHERE customer_id = :customer_id" if customer_id is not None else ""
    statement = text(_SQL.format(ledger_filter=where, balance_filter=where))
    params: dict[str, Any] = {"limit": limit}
    if customer_id is not None:
        params["customer_id"] = customer_id
    async with sessions() as session, session.begin():
        # An audit reads everything once: no timeout meant for requests, room to sort in memory.
        await session.execute(text("SET TRANSACTION READ ONLY"))
        await session.execute(text("SET LOCAL statement_timeout = 0"))
        await session.execute(text("SET LOCAL work_mem = '256MB'"))
        rows = (await session.execute(statement, params)).mappings().all()
    first = rows[0]
    report = Report(
        customer_id=customer_id,
        balances=first["balances"],
        live=first["live"],
        entries=int(first["entries"]),
        violation_count=first["violations"],
    )
    for row in rows:
        if row["balance_id"] is None:
            continue
        expected, summed = row["expected_remaining"], row["ledger_remaining"]
        report.violations.append(
            {
                "customer_id": row["customer_id"],
                "balance_id": row["balance_id"],
                "status": "live" if row["balance_live"] else "deleted",
                "problems": list(row["problems"]),
                "remaining": _plain(expected),
                "ledger_sum": _plain(summed),
                "discrepancy": _plain(summed - expected),
                "rollovers": _plain(row["expected_rollovers"]),
                "ledger_rollover_sum": _plain(row["ledger_rollovers"]),
                "version": row["version"],
                "ledger_version": row["last_version"],
                "entries": row["balance_entries"],
                "out_of_sequence_entries": row["out_of_sequence"],
            }
        )
    return report
