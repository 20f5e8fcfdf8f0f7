"""All SQL that touches the ``balance_ledger`` table. Rows are only ever inserted."""

from collections.abc import Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.models import LedgerEntry


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def append(self, entry: LedgerEntry) -> None:
        """Queue an entry; it is written with the balance change at the next flush."""
        self.session.add(entry)

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
        conditions: list[ColumnElement[bool]] = []
        if customer_id is not None:
            conditions.append(LedgerEntry.customer_id == customer_id)
        if balance_id is not None:
            conditions.append(LedgerEntry.balance_id == balance_id)
        if feature_id is not None:
            conditions.append(LedgerEntry.feature_id == feature_id)
        if entity_id is not None:
            conditions.append(LedgerEntry.entity_id == entity_id)
        if interval is not None:
            conditions.append(LedgerEntry.interval == interval)
        if before_id is not None:
            conditions.append(LedgerEntry.id < before_id)
        statement = (
            select(LedgerEntry).where(*conditions).order_by(LedgerEntry.id.desc()).limit(limit)
        )
        return (await self.session.scalars(statement)).all()
