"""All SQL that touches the ``balance_ledger`` table. Rows are only ever inserted."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import equal_where_given
from app.ledger.models import LedgerEntry


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def append(self, entry: LedgerEntry) -> None:
        """Queue an entry; it is written with the balance change at the next flush."""
        self.session.add(entry)

    async def balance_id_used_by_another_customer(self, balance_id: str, customer_id: str) -> bool:
        """Whether another customer's balance ever had this id (every balance has entries)."""
        statement = (
            select(LedgerEntry.id)
            .where(LedgerEntry.balance_id == balance_id, LedgerEntry.customer_id != customer_id)
            .limit(1)
        )
        return (await self.session.scalar(statement)) is not None

    async def page(
        self,
        *,
        customer_id: str | None,
        balance_id: str | None,
        feature_id: str | None,
        entity_id: str | None,
        interval: str | None,
        before_id: int | None,
        limit: int,
    ) -> Sequence[LedgerEntry]:
        """Entries newest first, starting below ``before_id`` (keyset pagination)."""
        conditions = equal_where_given(
            (LedgerEntry.customer_id, customer_id),
            (LedgerEntry.balance_id, balance_id),
            (LedgerEntry.feature_id, feature_id),
            (LedgerEntry.entity_id, entity_id),
            (LedgerEntry.interval, interval),
        )
        if before_id is not None:
            conditions.append(LedgerEntry.id < before_id)
        statement = (
            select(LedgerEntry).where(*conditions).order_by(LedgerEntry.id.desc()).limit(limit)
        )
        return (await self.session.scalars(statement)).all()
