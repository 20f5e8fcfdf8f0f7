"""Writing the ledger: one immutable entry per change, snapshotting the balance after it."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.balances.models import Balance
from app.balances.repository import BalanceRepository
from app.balances.resets import due_reset, state_at
from app.core.clock import Clock
from app.core.context import RequestContext
from app.core.cursor import decode_cursor, encode_cursor
from app.core.database import COMMITTED_KINDS_KEY
from app.ledger.models import EntryKind, LedgerEntry
from app.ledger.repository import LedgerRepository
from app.ledger.schemas import HistoryParams

ZERO = Decimal(0)
NEWEST_ID = 2**63 - 1  # the bigint maximum: a cursor "before" it starts at the newest entry


class LedgerWriter:
    """Appends entries for one request. Call ``record`` right after changing the balance."""

    def __init__(self, session: AsyncSession, context: RequestContext) -> None:
        self.repository = LedgerRepository(session)
        self.context = context
        self.kinds: list[str] = session.info.setdefault(COMMITTED_KINDS_KEY, [])

    def record(
        self,
        balance: Balance,
        kind: EntryKind,
        now: datetime,
        *,
        remaining_delta: Decimal = ZERO,
        usage_delta: Decimal = ZERO,
    ) -> None:
        """Append the entry for a change just applied to ``balance``, snapshotting its state.

        Every change is one entry and one version: this bumps ``version`` and ``updated_at``, so
        an entry's ``balance_version`` names exactly the state it produced.
        """
        balance.version += 1
        balance.updated_at = now
        self._append(
            balance,
            kind,
            now,
            remaining_delta=remaining_delta,
            usage_delta=usage_delta,
            after=(balance.remaining, balance.usage, balance.granted),
            version=balance.version,
        )

    def record_deletion(self, balance: Balance, now: datetime) -> None:
        """The closing entry: takes remaining and usage to zero, so a deleted balance sums to 0."""
        balance.version += 1
        self._append(
            balance,
            EntryKind.DELETE,
            now,
            remaining_delta=-balance.remaining,
            usage_delta=-balance.usage,
            after=(ZERO, ZERO, ZERO),
            version=balance.version,
        )

    def _append(
        self,
        balance: Balance,
        kind: EntryKind,
        now: datetime,
        *,
        remaining_delta: Decimal,
        usage_delta: Decimal,
        after: tuple[Decimal, Decimal, Decimal],
        version: int,
    ) -> None:
        remaining_after, usage_after, granted_after = after
        self.kinds.append(kind)
        self.repository.append(
            LedgerEntry(
                customer_id=balance.customer_id,
                balance_id=balance.id,
                feature_id=balance.feature_id,
                entity_id=balance.entity_id,
                interval=balance.interval,
                kind=kind,
                remaining_delta=remaining_delta,
                usage_delta=usage_delta,
                remaining_after=remaining_after,
                usage_after=usage_after,
                granted_after=granted_after,
                balance_version=version,
                idempotency_key=self.context.idempotency_key,
                request_id=self.context.request_id,
                api_key_id=self.context.api_key_id,
                created_at=now,
            )
        )


class LedgerReader:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.repository = LedgerRepository(session)
        self.balances = BalanceRepository(session)
        self.clock = clock

    async def history(self, params: HistoryParams) -> tuple[list[LedgerEntry], str | None]:
        """One page of entries, newest first, and the cursor of the next page.

        The first page starts with a *pending* ``reset`` entry (``id`` null) for each balance
        whose reset is due but not yet persisted, so history shows the truth without a write.
        """
        before = decode_cursor(params.start_cursor, int)[0] if params.start_cursor else None
        filters = {
            "customer_id": params.customer_id,
            "balance_id": params.balance_id,
            "feature_id": params.feature_id,
            "entity_id": params.entity_id,
            "interval": params.interval,
        }
        pending = [] if before is not None else await self._pending_resets(filters)
        pending = pending[: params.limit]  # they count toward the page size
        room = params.limit - len(pending)
        rows = list(await self.repository.page(**filters, before_id=before, limit=room + 1))
        if len(rows) <= room:
            return pending + rows, None
        # A page full of pending entries continues with the newest persisted one.
        last_id = rows[room - 1].id if room > 0 else NEWEST_ID
        return pending + rows[:room], encode_cursor(last_id)

    async def _pending_resets(self, filters: dict[str, str | None]) -> list[LedgerEntry]:
        now = self.clock.now()
        entries = []
        for balance in await self.balances.find_matching(**filters):
            if due_reset(balance, now) is None:
                continue
            state = state_at(balance, now)
            # Transient (never added to the session): shown, not written.
            entries.append(
                LedgerEntry(
                    id=None,
                    customer_id=balance.customer_id,
                    balance_id=balance.id,
                    feature_id=balance.feature_id,
                    entity_id=balance.entity_id,
                    interval=balance.interval,
                    kind=EntryKind.RESET,
                    remaining_delta=state.remaining - balance.remaining,
                    usage_delta=-balance.usage,
                    remaining_after=state.remaining,
                    usage_after=state.usage,
                    granted_after=state.granted,
                    balance_version=balance.version,
                    created_at=now,
                )
            )
        return entries
