"""Business rules of balances. No FastAPI here: errors are typed domain errors.

Every mutation follows one path: lock the target row(s), check, change, append one ledger entry
per change, flush. The session dependency commits, so the change and its ledger entries become
visible together or not at all.
"""

import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.balances import periods
from app.balances.models import Balance, Interval
from app.balances.repository import BalanceRepository
from app.balances.resets import due_reset
from app.balances.schemas import (
    CreateBalanceParams,
    DeleteBalanceParams,
    ListBalancesParams,
    UpdateBalanceParams,
)
from app.core.clock import Clock
from app.core.context import RequestContext
from app.core.cursor import decode_cursor, encode_cursor
from app.core.errors import (
    AmbiguousBalance,
    AmountOutOfRange,
    BalanceExists,
    BalanceNotFound,
    BalanceUnlimited,
    InvalidRequest,
)
from app.core.types import QUANTITY_LIMIT
from app.ledger.models import EntryKind
from app.ledger.repository import LedgerRepository
from app.ledger.service import LedgerWriter

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_balance_id() -> str:
    """``bal_`` + 26 chars: 48-bit millisecond time then 80 random bits (ULID layout).

    Time-ordered ids keep inserts at the right edge of the primary-key index and make the
    default list order roughly creation order.
    """
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "bal_" + "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def check_range(balance: Balance) -> None:
    """Refuse (422) a change that takes any amount of the balance to 10^15 or beyond."""
    for name in ("included_grant", "adjustment", "usage", "granted", "remaining"):
        if abs(getattr(balance, name)) >= QUANTITY_LIMIT:
            raise AmountOutOfRange(f"This change would take {name} to 10^15 or beyond.")


def persist_due_reset(balance: Balance, now: datetime, ledger: LedgerWriter) -> bool:
    """Apply a due reset to a locked balance and append its ``reset`` entry; False if not due.

    The entry's ``remaining_delta`` is whatever takes remaining back to ``included_grant``, so
    the ledger still sums to remaining after the reset.
    """
    next_reset_at = due_reset(balance, now)
    if next_reset_at is None:
        return False
    remaining_before, usage_before = balance.remaining, balance.usage
    balance.usage = balance.adjustment = Decimal(0)
    balance.next_reset_at = next_reset_at
    balance.reset_count += 1
    ledger.record(
        balance,
        EntryKind.RESET,
        now,
        remaining_delta=balance.remaining - remaining_before,
        usage_delta=-usage_before,
    )
    return True


class BalanceService:
    def __init__(self, session: AsyncSession, clock: Clock, context: RequestContext) -> None:
        self.balances = BalanceRepository(session)
        self.ledger = LedgerWriter(session, context)
        self.ledger_entries = LedgerRepository(session)
        self.session = session
        self.clock = clock

    async def create(self, params: CreateBalanceParams) -> Balance:
        now = self.clock.now()
        interval = params.reset.interval if params.reset else Interval.ONE_OFF
        interval_count = params.reset.interval_count if params.reset else 1
        anchor, next_reset_at = self._initial_schedule(params, interval, interval_count, now)
        if params.balance_id is not None:
            await self._claim_supplied_id(params.customer_id, params.balance_id)
        values = {
            "customer_id": params.customer_id,
            "id": params.balance_id or new_balance_id(),
            "feature_id": params.feature_id,
            "entity_id": params.entity_id,
            "interval": interval,
            "interval_count": interval_count,
            "included_grant": params.included_grant,
            "prepaid_grant": Decimal(0),
            "adjustment": Decimal(0),
            "usage": Decimal(0),
            "unlimited": params.unlimited,
            "overage_allowed": params.overage_allowed,
            "reset_anchor_at": anchor,
            "next_reset_at": next_reset_at,
            "expires_at": params.expires_at,
            "version": 0,  # the create entry below makes it 1
            "created_at": now,
            "updated_at": now,
        }
        balance = await self.balances.insert(values)
        if balance is None and await self._retire_expired(params, interval, now):
            balance = await self.balances.insert(values)
        if balance is None:
            raise await self._conflict(params, interval)
        self.ledger.record(balance, EntryKind.CREATE, now, remaining_delta=balance.remaining)
        return balance

    async def _claim_supplied_id(self, customer_id: str, balance_id: str) -> None:
        """A balance id names one balance service-wide: history looks balances up by id alone.

        Generated ids are unique by construction; a supplied one is refused if another
        customer's balance, live or deleted, ever had it.
        """
        await self.balances.lock_supplied_id(balance_id)
        if await self.ledger_entries.balance_id_used_by_another_customer(balance_id, customer_id):
            raise BalanceExists(f"A balance with id '{balance_id}' already exists.")

    async def _retire_expired(
        self, params: CreateBalanceParams, interval: Interval, now: datetime
    ) -> bool:
        """Delete an expired balance holding the key, so a new one can take it.

        Only live balances own their key; an expired one no longer counts and is closed with a
        `delete` entry, as if deleted by hand. Its history stays readable by its id.
        """
        holder = await self.balances.get_by_key_for_update(
            params.customer_id, params.feature_id, params.entity_id, interval
        )
        if holder is None or not holder.is_expired(now):
            return False
        persist_due_reset(holder, now, self.ledger)
        self.ledger.record_deletion(holder, now)
        await self.balances.delete(holder)
        await self.session.flush()
        return True

    @staticmethod
    def _initial_schedule(
        params: CreateBalanceParams, interval: Interval, interval_count: int, now: datetime
    ) -> tuple[datetime | None, datetime | None]:
        if interval is Interval.ONE_OFF:
            if params.next_reset_at is not None:
                raise InvalidRequest(
                    "A one_off balance never resets: omit next_reset_at.", "next_reset_at"
                )
            return None, None
        if params.next_reset_at is None:
            return now, periods.boundary(now, interval, interval_count, 1)
        if params.next_reset_at <= now:
            raise InvalidRequest("next_reset_at must be in the future.", "next_reset_at")
        return params.next_reset_at, params.next_reset_at

    async def _conflict(self, params: CreateBalanceParams, interval: Interval) -> BalanceExists:
        if params.balance_id and await self.balances.get(params.customer_id, params.balance_id):
            return BalanceExists(f"A balance with id '{params.balance_id}' already exists.")
        existing = await self.balances.get_by_key(
            params.customer_id, params.feature_id, params.entity_id, interval
        )
        where = f" for entity '{params.entity_id}'" if params.entity_id else ""
        return BalanceExists(
            f"Customer '{params.customer_id}' already has a live {interval} balance of feature "
            f"'{params.feature_id}'{where}.",
            balance_id=existing.id if existing else None,
        )

    async def update(self, params: UpdateBalanceParams) -> Balance:
        now = self.clock.now()
        balance = await self._lock_target(params, now)
        # A due reset is persisted first, so the change applies to the balance as it is now.
        persist_due_reset(balance, now, self.ledger)
        changes_amount = any(
            v is not None for v in (params.remaining, params.add_to_balance, params.usage)
        )
        if balance.unlimited and changes_amount:
            raise BalanceUnlimited(
                f"Balance '{balance.id}' is unlimited: its remaining and usage cannot be set."
            )
        self._check_times(balance, params, now)

        if params.included_grant is not None:
            delta = params.included_grant - balance.included_grant
            balance.included_grant = params.included_grant
            self._record(balance, EntryKind.SET_INCLUDED_GRANT, now, remaining_delta=delta)
        if params.add_to_balance is not None:
            balance.adjustment += params.add_to_balance
            self._record(balance, EntryKind.ADD, now, remaining_delta=params.add_to_balance)
        elif params.remaining is not None:
            # Recorded as the delta it really was, so the ledger still sums to remaining.
            delta = params.remaining - balance.remaining
            balance.adjustment += delta
            self._record(balance, EntryKind.SET_REMAINING, now, remaining_delta=delta)
        elif params.usage is not None:
            delta = params.usage - balance.usage
            balance.usage = params.usage
            self._record(
                balance, EntryKind.SET_USAGE, now, remaining_delta=-delta, usage_delta=delta
            )
        if params.next_reset_at is not None or params.expires_at is not None:
            if params.next_reset_at is not None:
                balance.reset_anchor_at = params.next_reset_at
                balance.next_reset_at = params.next_reset_at
            if params.expires_at is not None:
                balance.expires_at = params.expires_at
            self._record(balance, EntryKind.SET_TIMES, now)
        await self.session.flush()
        return balance

    def _record(self, balance: Balance, kind: EntryKind, now: datetime, **deltas: Decimal) -> None:
        check_range(balance)
        self.ledger.record(balance, kind, now, **deltas)

    @staticmethod
    def _check_times(balance: Balance, params: UpdateBalanceParams, now: datetime) -> None:
        if params.next_reset_at is None:
            return
        if balance.interval == Interval.ONE_OFF:
            raise InvalidRequest(
                f"Balance '{balance.id}' is one_off and never resets.", "next_reset_at"
            )
        if params.next_reset_at <= now:
            raise InvalidRequest("next_reset_at must be in the future.", "next_reset_at")

    async def delete(self, params: DeleteBalanceParams) -> None:
        now = self.clock.now()
        balance = await self._lock_target(params, now)
        persist_due_reset(balance, now, self.ledger)
        self.ledger.record_deletion(balance, now)
        await self.balances.delete(balance)
        await self.session.flush()

    async def _lock_target(
        self, target: UpdateBalanceParams | DeleteBalanceParams, now: datetime
    ) -> Balance:
        """Find and lock the one balance a request targets (the spec's targeting rules)."""
        customer_id, feature_id, entity_id = target.customer_id, target.feature_id, target.entity_id
        interval, balance_id = target.interval, target.balance_id
        if balance_id is not None:
            balance = await self.balances.get_for_update(customer_id, balance_id)
            if (
                balance is None
                or (feature_id is not None and balance.feature_id != feature_id)
                or (entity_id is not None and balance.entity_id != entity_id)
                or (interval is not None and balance.interval != interval)
            ):
                raise BalanceNotFound(
                    f"No balance '{balance_id}' of customer '{customer_id}' matches the request."
                )
            return balance
        assert feature_id is not None  # schemas require feature_id when balance_id is absent
        candidates = await self.balances.find_live_for_update(
            customer_id, feature_id, entity_id, interval, now
        )
        if len(candidates) == 1:
            return candidates[0]
        scope = f"entity '{entity_id}'" if entity_id else f"customer '{customer_id}'"
        if not candidates:
            what = f"{interval} balance" if interval else "balance"
            raise BalanceNotFound(f"No live {what} of feature '{feature_id}' for {scope}.")
        intervals = sorted(c.interval for c in candidates)
        raise AmbiguousBalance(
            f"{len(candidates)} balances of feature '{feature_id}' for {scope} match "
            f"(intervals: {', '.join(intervals)}): give interval or balance_id.",
            candidates=[{"balance_id": c.id, "interval": c.interval} for c in candidates],
        )

    async def list(self, params: ListBalancesParams) -> tuple[Sequence[Balance], str | None]:
        """One page of balances and the cursor of the next page (None on the last page)."""
        if params.plan_id is not None:
            return [], None
        after = decode_cursor(params.start_cursor, str, str) if params.start_cursor else None
        statuses = set(params.statuses or ["active"])
        rows = await self.balances.list_page(
            customer_id=params.customer_id,
            feature_id=params.feature_id,
            entity_id=params.entity_id,
            include_active="active" in statuses,
            include_expired="expired" in statuses,
            after=(after[0], after[1]) if after else None,
            limit=params.limit + 1,
            now=self.clock.now(),
        )
        if len(rows) <= params.limit:
            return rows, None
        last = rows[params.limit - 1]
        return rows[: params.limit], encode_cursor(last.customer_id, last.id)
