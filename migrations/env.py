"""Alembic environment: runs migrations over a synchronous psycopg 3 connection.

The database URL comes from the alembic config (set by ``app.core.migrations``) or DATABASE_URL.
A transaction-scoped advisory lock makes concurrent ``balances migrate`` runs (several replicas
starting at once) take turns instead of racing on DDL.
"""

import os

from alembic import context
from sqlalchemy import create_engine, pool, text

from app.auth import models as _auth_models  # noqa: F401  (register tables)
from app.balances import models as _balance_models  # noqa: F401  (register tables)
from app.core.database import to_sqlalchemy_url
from app.core.models import Base
from app.idempotency import models as _idempotency_models  # noqa: F401  (register tables)
from app.ledger import models as _ledger_models  # noqa: F401  (register tables)
from app.reservations import models as _reservation_models  # noqa: F401  (register tables)

MIGRATION_LOCK_KEY = 7_214_330_001  # arbitrary, fixed: identifies "balances schema migration"


def _database_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("No database URL: set DATABASE_URL or use `balances migrate`.")
    return url


def run_migrations_online() -> None:
    engine = create_engine(to_sqlalchemy_url(_database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            # DDL queued behind a long transaction would block all traffic behind it: give up
            # after a while instead, and let the deploy retry.
            connection.execute(text("SET LOCAL lock_timeout = '15s'"))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Offline (SQL script) migrations are not supported.")
run_migrations_online()
