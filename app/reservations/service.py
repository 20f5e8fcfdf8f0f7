"""Reservations: amounts taken by ``check`` with a ``lock`` and settled by ``finalize``.

Taking a lock deducts the amount at once (ledger ``lock``), so concurrent checks cannot promise
the same units twice. ``confirm`` keeps it (or moves it to ``override_value``), ``release``
gives it back, and a lock past ``expires_at`` is given back automatically: lazily by the next
check or track of its feature, by a finalize that finds it expired, or by the sweeper.
"""

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.balances.models import Balance
from app.balances.repository import BalanceRepository
from app.consumption.allocation import OverageBehavior, deduction_order, plan_deduction
from app.consumption.usage import apply_usage, lock_feature_balances
from app.core.clock import Clock
from app.core.context import RequestContext
from app.core.errors import (
    AmbiguousLock,
    InvalidRequest,
    LockExists,
    LockNotActive,
    LockNotFound,
)
from app.ledger.models import EntryKind
from app.ledger.service import LedgerWriter
from app.reservations.models import BalanceLock, LockStatus
from app.reservations.repository import LockRepository
from app.reservations.schemas import FinalizeAction, FinalizeLockParams

ZERO = Decimal(0)


class ReservationService:
    def __init__(self, session: AsyncSession, clock: Clock, context: RequestContext) -> None:
        self.locks = LockRepository(session)
        self.balances = BalanceRepository(session)
        self.ledger = LedgerWriter(session, context)
        self.clock = clock

    async def reserve(
        self,
        *,
        customer_id: str,
        feature_id: str,
        entity_id: str | None,
        lock_id: str,
        amount: Decimal,
        behavior: OverageBehavior,
        expires_at: datetime | None,
        balances: list[Balance],
        now: datetime,
    ) -> BalanceLock:
        """Deduct ``amount`` from the (locked) balances and record the lock holding it."""
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("lock.expires_at must be in the future.", "lock.expires_at")
        plan = plan_deduction(deduction_order(balances), amount, behavior)
        lock = await self.locks.insert(
            {
                "customer_id": customer_id,
                "lock_id": lock_id,
                "feature_id": feature_id,
                "entity_id": entity_id,
                "status": LockStatus.ACTIVE,
                "amount": sum((value for _, value in plan), ZERO),
                "items": [
                    {
                        "balance_id": balance.id,
                        "value": str(value),
                        "period": _period(balance),
                    }
                    for balance, value in plan
                ],
                "overage_behavior": behavior,
                "expires_at": expires_at,
                "created_at": now,
            }
        )
        if lock is None:
            raise LockExists(f"Customer '{customer_id}' already has a lock '{lock_id}'.")
        apply_usage(plan, EntryKind.LOCK, now, self.ledger)
        return lock

    async def lock_feature(
        self,
        customer_id: str,
        feature_id: str,
        entity_id: str | None,
        *,
        live_only: bool = True,
    ) -> tuple[list[Balance], int]:
        """Lock a feature's balances (id order), persist their due resets, then give back the
        feature's expired locks (lock rows after balances: the service-wide order).

        Returns the locked balances and how many expired locks were given back.
        """
        now = self.clock.now()
        balances = await lock_feature_balances(
            self.balances,
            self.ledger,
            customer_id=customer_id,
            feature_id=feature_id,
            entity_id=entity_id,
            now=now,
            live_only=live_only,
        )
        expired = await self.locks.find_expired_for_update(customer_id, feature_id, entity_id, now)
        for lock in expired:
            self._give_back(lock, balances, EntryKind.RELEASE, now)
            _settle(lock, LockStatus.EXPIRED, now)
        return balances, len(expired)

    async def finalize(self, params: FinalizeLockParams) -> LockStatus:
        """Confirm or release a lock; returns the lock's final status.

        ``LockStatus.EXPIRED`` means the lock had run out: it has just been given back, and the
        caller answers 409 ``lock_not_active`` *after* committing that release.
        """
        now = self.clock.now()
        found = await self._find(params.customer_id, params.lock_id)
        # Balances first, then the lock row: the service-wide lock order.
        balances = await lock_feature_balances(
            self.balances,
            self.ledger,
            customer_id=found.customer_id,
            feature_id=found.feature_id,
            entity_id=found.entity_id,
            now=now,
            live_only=False,
        )
        lock = await self.locks.get_for_update(found.customer_id, found.lock_id)
        assert lock is not None  # locks are never deleted
        if lock.status != LockStatus.ACTIVE:
            raise LockNotActive(f"Lock '{lock.lock_id}' is already {lock.status}.")
        if lock.is_expired(now):
            self._give_back(lock, balances, EntryKind.RELEASE, now)
            _settle(lock, LockStatus.EXPIRED, now)
            return LockStatus.EXPIRED
        if params.action is FinalizeAction.RELEASE:
            if params.override_value is not None:
                raise InvalidRequest(
                    "override_value goes with confirm, not release.", "override_value"
                )
            self._give_back(lock, balances, EntryKind.RELEASE, now)
            _settle(lock, LockStatus.RELEASED, now)
            return LockStatus.RELEASED
        self._confirm(lock, balances, params.override_value, now)
        _settle(lock, LockStatus.CONFIRMED, now)
        return LockStatus.CONFIRMED

    async def _find(self, customer_id: str | None, lock_id: str) -> BalanceLock:
        if customer_id is not None:
            lock = await self.locks.get(customer_id, lock_id)
            if lock is None:
                raise LockNotFound(f"Customer '{customer_id}' has no lock '{lock_id}'.")
            return lock
        matches = await self.locks.find_by_lock_id(lock_id)
        if not matches:
            raise LockNotFound(f"There is no lock '{lock_id}'.")
        if len(matches) > 1:
            raise AmbiguousLock(
                f"Several customers have a lock '{lock_id}': give customer_id to choose one."
            )
        return matches[0]

    def _confirm(
        self, lock: BalanceLock, balances: list[Balance], override: Decimal | None, now: datetime
    ) -> None:
        difference = ZERO if override is None else override - lock.amount
        if override is not None:
            lock.amount = override
        if difference < 0:
            self._give_back(lock, balances, EntryKind.CONFIRM, now, limit=-difference)
        elif difference > 0:
            live = [b for b in balances if not b.is_expired(now)]
            behavior = OverageBehavior(lock.overage_behavior)
            plan = plan_deduction(deduction_order(live), difference, behavior)
            apply_usage(plan, EntryKind.CONFIRM, now, self.ledger)
        else:
            by_id = {balance.id: balance for balance in balances}
            held = [by_id[item["balance_id"]] for item in lock.items if item["balance_id"] in by_id]
            apply_usage([(balance, ZERO) for balance in held], EntryKind.CONFIRM, now, self.ledger)

    def _give_back(
        self,
        lock: BalanceLock,
        balances: list[Balance],
        kind: EntryKind,
        now: datetime,
        limit: Decimal | None = None,
    ) -> None:
        """Return what the lock holds (at most ``limit``), last-deducted balance first.

        An item is skipped when its balance was deleted or has reset since the lock was taken:
        that period's usage is gone, so giving it back would credit the new period.
        """
        by_id = {balance.id: balance for balance in balances}
        left = lock.amount if limit is None else limit
        plan = []
        for item in reversed(lock.items):
            balance = by_id.get(item["balance_id"])
            if left <= 0 or balance is None or _period(balance) != item["period"]:
                continue
            back = min(left, Decimal(item["value"]))
            plan.append((balance, -back))
            left -= back
        apply_usage(plan, kind, now, self.ledger)


def _period(balance: Balance) -> int:
    """Which reset period the balance is in (its reset count)."""
    return balance.reset_count


def _settle(lock: BalanceLock, status: LockStatus, now: datetime) -> None:
    lock.status = status
    lock.finalized_at = now
