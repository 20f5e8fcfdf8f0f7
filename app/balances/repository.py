"""All SQL that touches the ``balances`` table."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.balances.models import Balance
from app.core.metrics import LOCK_WAIT_SECONDS
from app.core.models import equal_where_given


def _feature_of(
    customer_id: str, feature_id: str, entity_id: str | None
) -> list[ColumnElement[bool]]:
    """The balances of one customer's feature at one scope: an entity's, or (None) the
    customer-level ones. NOT DISTINCT FROM makes None match NULL, as the key index does."""
    return [
        Balance.customer_id == customer_id,
        Balance.feature_id == feature_id,
        Balance.entity_id.is_not_distinct_from(entity_id),
    ]


def _is_live(now: datetime) -> ColumnElement[bool]:
    return or_(Balance.expires_at.is_(None), Balance.expires_at > now)


class BalanceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Balance | None:
        """Insert a balance; ``None`` when its id or its key is already taken.

        ON CONFLICT DO NOTHING instead of catching IntegrityError: two concurrent creates of one
        key leave exactly one row and the loser gets a clean answer, with its transaction intact.
        """
        statement = insert(Balance).values(values).on_conflict_do_nothing().returning(Balance)
        return (await self.session.scalars(statement)).one_or_none()

    async def lock_supplied_id(self, balance_id: str) -> None:
        """Serialize creates that supply the same ``balance_id`` (for any customer) until commit,
        so checking that the id is free and taking it cannot interleave."""
        await self.session.execute(
            select(func.pg_advisory_xact_lock(func.hashtextextended(balance_id, 0)))
        )

    async def get(self, customer_id: str, balance_id: str) -> Balance | None:
        return await self.session.get(Balance, (customer_id, balance_id))

    async def get_by_key(
        self, customer_id: str, feature_id: str, entity_id: str | None, interval: str
    ) -> Balance | None:
        statement = select(Balance).where(
            *_feature_of(customer_id, feature_id, entity_id), Balance.interval == interval
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def find_matching(
        self,
        *,
        customer_id: str | None,
        balance_id: str | None,
        feature_id: str | None,
        entity_id: str | None,
        interval: str | None,
    ) -> Sequence[Balance]:
        """Balances matching the given fields, read without locks (for showing, not changing)."""
        conditions = equal_where_given(
            (Balance.customer_id, customer_id),
            (Balance.id, balance_id),
            (Balance.feature_id, feature_id),
            (Balance.entity_id, entity_id),
            (Balance.interval, interval),
        )
        return (await self.session.scalars(select(Balance).where(*conditions))).all()

    async def find_live(
        self, customer_id: str, feature_id: str, entity_id: str | None, now: datetime
    ) -> Sequence[Balance]:
        """The live balances of (customer, feature, entity), read without locks."""
        statement = (
            select(Balance)
            .where(*_feature_of(customer_id, feature_id, entity_id), _is_live(now))
            .order_by(Balance.id)
        )
        return (await self.session.scalars(statement)).all()

    async def get_by_key_for_update(
        self, customer_id: str, feature_id: str, entity_id: str | None, interval: str
    ) -> Balance | None:
        """Lock the balance holding a key (live or expired), to retire it if it has expired."""
        statement = (
            select(Balance)
            .where(*_feature_of(customer_id, feature_id, entity_id), Balance.interval == interval)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        with LOCK_WAIT_SECONDS.time():
            return (await self.session.scalars(statement)).one_or_none()

    async def get_for_update(self, customer_id: str, balance_id: str) -> Balance | None:
        """Lock one balance for the read-check-write of a mutation.

        ``FOR UPDATE`` makes concurrent mutations of this balance queue behind each other, so each
        computes from the value the previous one committed: no lost update. Other balances are
        not touched, so they never wait on this one.
        """
        statement = (
            select(Balance)
            .where(Balance.customer_id == customer_id, Balance.id == balance_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        with LOCK_WAIT_SECONDS.time():
            return (await self.session.scalars(statement)).one_or_none()

    async def find_live_for_update(
        self,
        customer_id: str,
        feature_id: str,
        entity_id: str | None,
        interval: str | None,
        now: datetime | None,
    ) -> Sequence[Balance]:
        """Lock the live balances of (customer, feature, entity[, interval]), in id order.

        Every multi-row lock in the service is taken in id order, so two transactions that lock
        overlapping sets can never wait on each other in a cycle (no deadlock). Rows deleted or
        expired while we waited are re-checked by Postgres and drop out of the result.
        """
        conditions = _feature_of(customer_id, feature_id, entity_id)
        if now is not None:  # None: expired balances too (finalizing a lock may touch them)
            conditions.append(_is_live(now))
        if interval is not None:
            conditions.append(Balance.interval == interval)
        statement = (
            select(Balance)
            .where(*conditions)
            .order_by(Balance.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        with LOCK_WAIT_SECONDS.time():
            return (await self.session.scalars(statement)).all()

    async def find_due_for_reset_for_update(self, now: datetime, limit: int) -> Sequence[Balance]:
        """Lock up to ``limit`` balances whose reset is due, skipping rows others hold.

        SKIP LOCKED: a balance locked by a request is being reset by that request anyway, and
        several sweepers (one per worker) share the work instead of queueing on each other.
        """
        statement = (
            select(Balance)
            .where(Balance.next_reset_at <= now)
            .order_by(Balance.next_reset_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).all()

    async def delete(self, balance: Balance) -> None:
        await self.session.delete(balance)

    async def list_page(
        self,
        *,
        customer_id: str | None,
        feature_id: str | None,
        entity_id: str | None,
        include_active: bool,
        include_expired: bool,
        after: tuple[str, str] | None,
        limit: int,
        now: datetime,
    ) -> Sequence[Balance]:
        """One page in (customer_id, id) order, starting after the cursor (keyset pagination)."""
        conditions = equal_where_given(
            (Balance.customer_id, customer_id),
            (Balance.feature_id, feature_id),
            (Balance.entity_id, entity_id),
        )
        if include_active and not include_expired:
            conditions.append(_is_live(now))
        elif include_expired and not include_active:
            conditions.append(and_(Balance.expires_at.is_not(None), Balance.expires_at <= now))
        if after is not None:
            conditions.append(tuple_(Balance.customer_id, Balance.id) > tuple_(*after))
        statement = (
            select(Balance)
            .where(*conditions)
            .order_by(Balance.customer_id, Balance.id)
            .limit(limit)
        )
        return (await self.session.scalars(statement)).all()
