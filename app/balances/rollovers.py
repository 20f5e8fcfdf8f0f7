"""Rollovers: what a resetting balance carries over, and how it is spent. Pure: no I/O, no clock.

At each reset, what is left of the balance (its own ``remaining``, never below 0) is carried
over as a *tranche*: an amount of its own that expires ``length`` months after that reset
(``duration: month``) or never (``forever``). The tranches of a balance are capped by the
policy's ``max`` (or ``max_percentage`` of the per-period grant, rounded down): what exceeds it
is trimmed, soonest-expiring tranche first. Tranches are spent before any main balance, soonest
expiring first, and a tranche past its ``expires_at`` no longer counts.

Conservation: every change to a tranche is a ledger entry with a ``rollover_delta``; per balance
they add up to the tranches' remaining, as ``remaining_delta`` add up to ``remaining``.

A tranche is identified by the ``reset_count`` of the reset that created it (``period``): one
reset carries over at most once, so the number is unique within its balance and a reservation
can name the tranche it drew on. A tranche lasts until it expires (or the cap trims all it was
granted), so that name stays valid while a reservation may need it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from app.balances.models import Interval
from app.balances.periods import FIXED_PERIODS, MONTHS_PER_PERIOD, add_months

ZERO = Decimal(0)
HUNDRED = Decimal(100)
# A balance row holds its carry-overs: a policy that could keep more at once (minute resets
# kept for a month: 43,830) is refused at create, so a row stays small to read and write.
MOST_CARRY_OVERS = 1000
_MONTH = timedelta(days=30.44)


def longest_length(interval: Interval) -> int:
    """The most months a carry-over may last with resets every ``interval``: at one carry-over
    per reset, no more than ``MOST_CARRY_OVERS`` are then live at once (whatever the
    ``interval_count``, which only spaces resets further apart)."""
    if interval in MONTHS_PER_PERIOD:
        return MOST_CARRY_OVERS * MONTHS_PER_PERIOD[interval]
    return int(MOST_CARRY_OVERS * FIXED_PERIODS[interval] / _MONTH)


_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RolloverPolicy:
    """How a balance carries over (``rollover`` on create)."""

    duration: str  # "month": tranches expire after ``length`` months; "forever": never
    length: int
    max: Decimal | None = None
    max_percentage: Decimal | None = None

    def cap(self, per_period_grant: Decimal) -> Decimal | None:
        """The most all tranches together may hold; None: no cap."""
        if self.max_percentage is not None:
            with localcontext() as exact:  # 30 + 9 digits never round before the floor
                exact.prec = 60
                cap = per_period_grant * self.max_percentage / HUNDRED
                return cap.to_integral_value(rounding=ROUND_FLOOR)  # Autumn rounds down
        return self.max

    def expiry(self, reset_at: datetime) -> datetime | None:
        if self.duration == "forever":
            return None
        try:
            return add_months(reset_at, self.length)
        except ValueError:  # past year 9999, the last instant times can hold: never, then
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "length": self.length,
            "max": None if self.max is None else str(self.max),
            "max_percentage": None if self.max_percentage is None else str(self.max_percentage),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "RolloverPolicy | None":
        if data is None:
            return None
        return cls(
            duration=data["duration"],
            length=data["length"],
            max=_decimal(data.get("max")),
            max_percentage=_decimal(data.get("max_percentage")),
        )


@dataclass(frozen=True, slots=True)
class Tranche:
    """One carry-over: ``granted`` when carried, ``remaining`` of it now."""

    period: int
    granted: Decimal
    remaining: Decimal
    expires_at: datetime | None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> dict[str, Any]:
        expires = None if self.expires_at is None else self.expires_at.isoformat()
        return {
            "period": self.period,
            "granted": str(self.granted),
            "remaining": str(self.remaining),
            "expires_at": expires,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Tranche":
        expires = data["expires_at"]
        return cls(
            period=data["period"],
            granted=Decimal(data["granted"]),
            remaining=Decimal(data["remaining"]),
            expires_at=None if expires is None else datetime.fromisoformat(expires),
        )


Tranches = tuple[Tranche, ...]


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def spending_key(tranche: Tranche) -> tuple[datetime, int]:
    """Soonest-expiring first, never-expiring last; the older carry-over first among equals."""
    return (tranche.expires_at or _NEVER, tranche.period)


def spending_order(tranches: Iterable[Tranche]) -> list[Tranche]:
    return sorted(tranches, key=spending_key)


def total(tranches: Iterable[Tranche]) -> Decimal:
    return sum((t.remaining for t in tranches), ZERO)


def drop_expired(tranches: Tranches, now: datetime) -> tuple[Tranches, Decimal]:
    """The tranches still live at ``now``, and how much the expired ones still held."""
    live = tuple(t for t in tranches if not t.is_expired(now))
    return live, total(tranches) - total(live)


def carry_over(
    tranches: Tranches,
    policy: RolloverPolicy,
    *,
    left: Decimal,
    period: int,
    reset_at: datetime,
    per_period_grant: Decimal,
    now: datetime,
) -> tuple[Tranches, Tranches, Decimal, Decimal]:
    """At the reset numbered ``period`` (due at ``reset_at``, applied at ``now``), carry
    ``left`` over.

    Returns the tranches with the carry-over (before and after the cap trims them), the amount
    carried and the amount trimmed. Nothing is carried when the carry-over would already have
    expired by ``now`` (a reset applied long after it was due). A carry-over expiring when an
    existing tranche does joins it (so ``forever`` ones make one tranche, not one per reset).
    A tranche spent to nothing is kept until it expires, as Autumn keeps it: a reservation may
    still give back into it. Trimming lowers what a tranche holds *and* what it was granted
    (trimmed units were never spent); one trimmed to nothing granted is dropped.
    """
    expires_at = policy.expiry(reset_at)
    carried = max(left, ZERO)
    if expires_at is not None and expires_at <= now:
        carried = ZERO
    kept = list(tranches)
    if carried > 0:
        same = next((i for i, t in enumerate(kept) if t.expires_at == expires_at), None)
        if same is None:
            kept.append(Tranche(period, carried, carried, expires_at))
        else:
            joined = kept[same]
            kept[same] = replace(
                joined, granted=joined.granted + carried, remaining=joined.remaining + carried
            )
    untrimmed = tuple(kept)
    cap = policy.cap(per_period_grant)
    excess = ZERO if cap is None else max(total(kept) - max(cap, ZERO), ZERO)
    trimmed = excess
    result = []
    for tranche in spending_order(kept):
        cut = min(excess, tranche.remaining)
        excess -= cut
        if tranche.granted - cut > 0:
            result.append(
                replace(tranche, granted=tranche.granted - cut, remaining=tranche.remaining - cut)
            )
    return untrimmed, tuple(sorted(result, key=lambda t: t.period)), carried, trimmed


def spend(tranches: Tranches, period: int, amount: Decimal) -> Tranches:
    """Take ``amount`` (negative: give back) from the tranche ``period``; it must hold it."""
    return tuple(
        replace(t, remaining=t.remaining - amount) if t.period == period else t for t in tranches
    )
