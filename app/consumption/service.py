"""Metering and gating: ``check`` and ``track`` over all live balances of one feature.

A write locks every live balance of the feature (id order), persists their due resets, gives
back expired reservations, and only then decides: so "check then use" and concurrent tracks
see one consistent total and can never overshoot it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.balances.models import Balance
from app.balances.repository import BalanceRepository
from app.balances.resets import state_at
from app.consumption.allocation import OverageBehavior, deduction_order, plan_deduction
from app.consumption.schemas import CheckParams, TrackParams
from app.consumption.usage import apply_usage
from app.core.clock import Clock
from app.core.context import RequestContext
from app.core.errors import BalanceNotFound, InvalidRequest
from app.ledger.models import EntryKind
from app.ledger.service import LedgerWriter
from app.reservations.models import BalanceLock
from app.reservations.service import ReservationService

ZERO = Decimal(0)


@dataclass
class CheckResult:
    allowed: bool
    balances: list[Balance]
    lock: BalanceLock | None = None


@dataclass
class TrackResult:
    balances: list[Balance]
    deductions: list[tuple[Balance, Decimal]] = field(default_factory=list)

    @property
    def deducted(self) -> Decimal:
        return sum((amount for _, amount in self.deductions), ZERO)


def is_allowed(balances: Sequence[Balance], required: Decimal, now: datetime) -> bool:
    """The spec's rule: unlimited, or enough remaining in total, or overage allowed."""
    if not balances:
        return False
    remaining = sum((state_at(balance, now).remaining for balance in balances), ZERO)
    return (
        any(b.unlimited for b in balances)
        or remaining >= required
        or any(b.overage_allowed for b in balances)
    )


class ConsumptionService:
    def __init__(self, session: AsyncSession, clock: Clock, context: RequestContext) -> None:
        self.balances = BalanceRepository(session)
        self.ledger = LedgerWriter(session, context)
        self.reservations = ReservationService(session, clock, context)
        self.clock = clock

    async def check(self, params: CheckParams) -> CheckResult:
        if params.send_event and params.lock is not None:
            raise InvalidRequest(
                "Give send_event or lock, not both: a lock is settled later.", "send_event", "lock"
            )
        if not params.send_event and params.lock is None:
            # A pure read: no row locks, reset state computed by the response.
            now = self.clock.now()
            rows = await self.balances.find_live(
                params.customer_id, params.feature_id, params.entity_id, now
            )
            return CheckResult(is_allowed(rows, params.required_balance, now), list(rows))
        now = self.clock.now()
        balances, _ = await self.reservations.lock_feature(
            params.customer_id, params.feature_id, params.entity_id
        )
        if params.lock is not None:
            return await self._check_and_reserve(params, balances, now)
        if not is_allowed(balances, params.required_balance, now):
            return CheckResult(False, balances)
        plan = plan_deduction(
            deduction_order(balances), params.required_balance, OverageBehavior.REJECT
        )
        apply_usage(plan, EntryKind.TRACK, now, self.ledger)
        return CheckResult(True, balances)

    async def _check_and_reserve(
        self, params: CheckParams, balances: list[Balance], now: datetime
    ) -> CheckResult:
        assert params.lock is not None
        behavior = params.lock.overage_behavior or OverageBehavior.REJECT
        if not balances or (
            behavior is OverageBehavior.REJECT
            and not is_allowed(balances, params.required_balance, now)
        ):
            return CheckResult(False, balances)
        lock = await self.reservations.reserve(
            customer_id=params.customer_id,
            feature_id=params.feature_id,
            entity_id=params.entity_id,
            lock_id=params.lock.lock_id,
            amount=params.required_balance,
            behavior=behavior,
            expires_at=params.lock.expires_at,
            balances=balances,
            now=now,
        )
        return CheckResult(True, balances, lock)

    async def track(self, params: TrackParams) -> TrackResult:
        now = self.clock.now()
        if params.timestamp is not None and params.timestamp > now:
            raise InvalidRequest("timestamp must not be in the future.", "timestamp")
        balances, _ = await self.reservations.lock_feature(
            params.customer_id, params.feature_id, params.entity_id
        )
        if not balances:
            scope = f"entity '{params.entity_id}'" if params.entity_id else "the customer"
            raise BalanceNotFound(
                f"Customer '{params.customer_id}' has no live balance of feature "
                f"'{params.feature_id}' for {scope}."
            )
        plan = plan_deduction(deduction_order(balances), params.value, params.overage_behavior)
        apply_usage(plan, EntryKind.TRACK, now, self.ledger)
        return TrackResult(balances, plan)
