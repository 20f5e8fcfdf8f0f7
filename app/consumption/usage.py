"""Applying usage to locked balances: the one place track, check, lock, confirm and release
change ``usage``. Each change is range-checked and appended to the ledger."""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from app.balances.models import Balance
from app.balances.repository import BalanceRepository
from app.balances.service import check_range, persist_due_reset
from app.ledger.models import EntryKind
from app.ledger.service import LedgerWriter


def apply_usage(
    plan: Sequence[tuple[Balance, Decimal]], kind: EntryKind, now: datetime, ledger: LedgerWriter
) -> None:
    """Add each planned amount to its balance's usage (negative gives back), one entry each."""
    for balance, amount in plan:
        balance.usage += amount
        check_range(balance)
        ledger.record(balance, kind, now, remaining_delta=-amount, usage_delta=amount)


async def lock_feature_balances(
    balances: BalanceRepository,
    ledger: LedgerWriter,
    *,
    customer_id: str,
    feature_id: str,
    entity_id: str | None,
    now: datetime,
    live_only: bool = True,
) -> list[Balance]:
    """Lock a feature's balances (id order) and persist their due resets before any change."""
    rows = await balances.find_live_for_update(
        customer_id, feature_id, entity_id, None, now if live_only else None
    )
    for balance in rows:
        persist_due_reset(balance, now, ledger)
    return list(rows)
