"""The migrated schema stays distributable by Citus as it is (docs/scaling.md).

Citus shards a distributed table by one column and can only enforce a primary key or unique
index that contains that column; a transaction stays on one shard (one worker, no two-phase
commit) when every statement filters by it. Balances is distributed by ``customer_id``, so every
table that holds customer data must *lead* its primary key and every unique constraint or unique
index with ``customer_id``: leading, not merely containing, so that the index is also the one the
per-customer lookups use, and so that a row's uniqueness is decided inside its customer's shard.

This test reads the LIVE schema (pg_catalog, after ``alembic upgrade head``), not the models:
a migration that adds a table or a unique index breaks it at once, with a message saying what to
do. Every table must be classified below; the classification is the design, and the reasons are
in the comments.
"""

from dataclasses import dataclass

import psycopg
import pytest

# Sharded by customer_id and co-located with each other (colocate_with => 'balances'): every
# write path transaction (lock, apply, ledger append) is a single-shard transaction.
CUSTOMER_DISTRIBUTED = {"balances", "balance_ledger", "balance_locks"}

# Sharded by a column of their own. idempotency_keys: by ``key``. Its primary key is
# (scope, key), and ``scope`` is one constant for the whole deployment ('*', keys are scoped to
# the deployment since migration 0009), so distributing by scope would put every record on one
# shard; a key belongs to a request, not to a customer (a batch_track spans customers), so it
# cannot be distributed by customer_id either. Distributed by ``key``, one claim touches one
# shard of idempotency_keys, and a keyed write is a two-shard transaction (the key's shard and
# the customer's). Citus requires every unique index of it to contain ``key``.
# lock_ids: by ``lock_id``. A lock id is unique across the deployment and Autumn's SDK
# finalizes by the id alone, so the id must be found without knowing its customer: one shard of
# lock_ids says which customer holds it. Taking a lock writes that shard and the customer's (a
# two-shard transaction); a finalize by id alone reads it, then runs on the customer's shard.
OWN_KEY_DISTRIBUTED = {"idempotency_keys": "key", "lock_ids": "lock_id"}

# Replicated to every node (create_reference_table): small, read on every request or once.
REFERENCE = {"api_keys", "alembic_version"}

DISTRIBUTION_COLUMN = "customer_id"

HOW_TO_CLASSIFY = (
    "Classify it in tests/test_schema_distribution.py (and in docs/scaling.md's Citus "
    "section): CUSTOMER_DISTRIBUTED if it holds customer data (then customer_id must lead its "
    "primary key and every unique constraint/index), OWN_KEY_DISTRIBUTED with its distribution "
    "column if rows cannot name a customer (every unique index must contain that column), or "
    "REFERENCE if it is small, shared data replicated to every node."
)

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname
"""

# Every unique index (primary keys and unique constraints are backed by one): its name, whether
# it is the primary key, and its key columns in order (NULL for an expression column).
_UNIQUE_INDEXES = """
SELECT t.relname, i.relname, x.indisprimary,
       array(SELECT a.attname FROM unnest(x.indkey[:x.indnkeyatts - 1]) WITH ORDINALITY
             AS k(attnum, position)
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             ORDER BY k.position)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public' AND x.indisunique
ORDER BY t.relname, i.relname
"""

_COLUMNS = """
SELECT c.relname, a.attname, a.attnotnull FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""

_FOREIGN_KEYS = """
SELECT f.conname, s.relname, t.relname FROM pg_constraint f
JOIN pg_class s ON s.oid = f.conrelid JOIN pg_class t ON t.oid = f.confrelid
JOIN pg_namespace n ON n.oid = s.relnamespace
WHERE n.nspname = 'public' AND f.contype = 'f'
"""


@dataclass(frozen=True)
class UniqueIndex:
    table: str
    name: str
    primary: bool
    columns: list[str | None]

    def describe(self) -> str:
        kind = "primary key" if self.primary else "unique index"
        return f"{self.table}: {kind} {self.name} on ({', '.join(map(str, self.columns))})"


def read_schema(conn: psycopg.Connection) -> "Schema":
    tables = [row[0] for row in conn.execute(_TABLES)]
    indexes = [UniqueIndex(*row) for row in conn.execute(_UNIQUE_INDEXES)]
    columns: dict[str, dict[str, bool]] = {}
    for table, column, not_null in conn.execute(_COLUMNS):
        columns.setdefault(table, {})[column] = not_null
    return tables, indexes, columns


Schema = tuple[list[str], list[UniqueIndex], dict[str, dict[str, bool]]]


def unclassified(schema: Schema) -> list[str]:
    known = CUSTOMER_DISTRIBUTED | set(OWN_KEY_DISTRIBUTED) | REFERENCE
    return [f"table {table} is not classified. {HOW_TO_CLASSIFY}"
            for table in schema[0] if table not in known]  # fmt: skip


def misplaced_unique_indexes(schema: Schema) -> list[str]:
    problems = []
    for index in schema[1]:
        if index.table in CUSTOMER_DISTRIBUTED and index.columns[:1] != [DISTRIBUTION_COLUMN]:
            problems.append(
                f"{index.describe()} does not lead with {DISTRIBUTION_COLUMN}: Citus could not "
                f"enforce it on a table distributed by {DISTRIBUTION_COLUMN}, and lookups by it "
                f"would be multi-shard. Put {DISTRIBUTION_COLUMN} first, or make it a plain "
                "(non-unique) index."
            )
        column = OWN_KEY_DISTRIBUTED.get(index.table)
        if column is not None and column not in index.columns:
            problems.append(
                f"{index.describe()} does not contain {column}, the column {index.table} is "
                "distributed by: Citus cannot enforce it."
            )
    return problems


@pytest.fixture(scope="module")
def schema(database_url: str) -> Schema:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return read_schema(conn)


def test_classification_is_disjoint() -> None:
    own = set(OWN_KEY_DISTRIBUTED)
    assert not (CUSTOMER_DISTRIBUTED & own or CUSTOMER_DISTRIBUTED & REFERENCE or own & REFERENCE)


def test_every_table_is_classified(schema: Schema) -> None:
    problems = unclassified(schema)
    assert not problems, "\n".join(problems)
    known = CUSTOMER_DISTRIBUTED | set(OWN_KEY_DISTRIBUTED) | REFERENCE
    gone = sorted(known - set(schema[0]))
    assert not gone, f"classified tables {gone} are not in the schema: remove them from the lists"


def test_distribution_columns_exist_and_are_not_null(schema: Schema) -> None:
    columns = schema[2]
    wanted = {table: DISTRIBUTION_COLUMN for table in CUSTOMER_DISTRIBUTED}
    wanted |= OWN_KEY_DISTRIBUTED
    problems = [
        f"{table}.{column} must exist and be NOT NULL (its distribution column)"
        for table, column in sorted(wanted.items())
        if not columns.get(table, {}).get(column, False)
    ]
    assert not problems, problems


def test_every_unique_index_contains_the_distribution_column(schema: Schema) -> None:
    """Customer tables lead their primary key and every unique constraint/index with
    customer_id; own-key tables contain their column in every one."""
    problems = misplaced_unique_indexes(schema)
    assert not problems, "\n".join(problems)
    with_pk = {index.table for index in schema[1] if index.primary}
    assert with_pk >= CUSTOMER_DISTRIBUTED, f"no primary key: {CUSTOMER_DISTRIBUTED - with_pk}"


def test_foreign_keys_are_distributable(database_url: str) -> None:
    """Citus allows a foreign key from a distributed table to a reference table, or between
    co-located tables on the distribution column; never from a reference table to a
    distributed one, nor between tables distributed by different columns."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = conn.execute(_FOREIGN_KEYS).fetchall()
    problems = [
        f"foreign key {name} from {source} to {target}"
        for name, source, target in keys
        if not (
            target in REFERENCE
            or (source in CUSTOMER_DISTRIBUTED and target in CUSTOMER_DISTRIBUTED)
        )
    ]
    assert not problems, f"{problems}: not distributable. {HOW_TO_CLASSIFY}"


def test_the_checks_catch_a_new_table_and_a_bad_unique_index(database_url: str) -> None:
    """What a careless migration would do, in a transaction that is rolled back: a new table,
    a unique index on balance_locks(lock_id) (finalize by lock_id alone, made unique), and one
    on idempotency_keys without its key. Each is reported, with what to do."""
    with psycopg.connect(database_url) as conn:
        try:
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("CREATE TABLE customer_notes (customer_id text, note text)")
            conn.execute("CREATE UNIQUE INDEX uq_probe_lock_id ON balance_locks (lock_id)")
            conn.execute("CREATE UNIQUE INDEX uq_probe_created ON idempotency_keys (created_at)")
            schema = read_schema(conn)
        finally:
            conn.rollback()
    assert unclassified(schema) == [f"table customer_notes is not classified. {HOW_TO_CLASSIFY}"]
    problems = misplaced_unique_indexes(schema)
    assert len(problems) == 2, problems
    assert "uq_probe_lock_id on (lock_id) does not lead with customer_id" in problems[0]
    assert "uq_probe_created on (created_at) does not contain key" in problems[1]
