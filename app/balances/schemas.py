"""Wire schemas of the balance operations (names match Autumn's API so its SDKs work)."""

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from app.balances.models import Interval
from app.balances.resets import state_at
from app.balances.rollovers import (
    MOST_CARRY_OVERS,
    RolloverPolicy,
    Tranche,
    longest_length,
    spending_order,
    total,
)
from app.balances.rows import BalanceRow
from app.core.schemas import (
    RequestSchema,
    ResponseSchema,
    WholeNumber,
    absent,
    both,
    equals,
    given,
    refused,
)
from app.core.types import EpochMillis, ExternalId, NonNegativeQuantity, Quantity, QuantityOut


class BalanceStatus(enum.StrEnum):
    """`expired`: past its `expires_at`; listed only when asked for."""

    ACTIVE = "active"
    EXPIRED = "expired"


class BalanceSource(enum.StrEnum):
    """Whom a balance belongs to: the customer, or one of its entities."""

    CUSTOMER = "customer"
    ENTITY = "entity"


ZERO = Decimal(0)


class ResetParams(RequestSchema):
    interval: Interval = Field(description="How often the balance resets; `one_off` never does.")
    interval_count: WholeNumber = Field(default=1, ge=1, le=1000, description="Periods per reset.")


_ABOVE_100: JsonDict = {"properties": {"max_percentage": {"exclusiveMinimum": 100}}}
_MONTHS_UNDER_1: JsonDict = {  # an absent `duration` is `month`
    "required": ["length"],
    "properties": {"duration": {"const": "month"}, "length": {"maximum": 0}},
}


class RolloverDuration(enum.StrEnum):
    """How long a carry-over lasts: `length` months, or forever."""

    MONTH = "month"
    FOREVER = "forever"


class RolloverParams(RequestSchema):
    """What a resetting balance carries over at each reset (Autumn's rollover). `max` or
    `max_percentage` (at most 100), not both; `length` at least 1 with `duration: month`."""

    model_config = ConfigDict(
        json_schema_extra=refused(
            given("max", "max_percentage"),
            both(given("max_percentage"), _ABOVE_100),
            _MONTHS_UNDER_1,
        ),
    )

    length: WholeNumber = Field(
        default=1, ge=0, le=1200, description="Months a carry-over lasts (`duration: month`)."
    )
    duration: RolloverDuration = Field(
        default=RolloverDuration.MONTH,
        description="`month`: expire after `length` months; `forever`: never.",
    )
    max: NonNegativeQuantity | None = Field(
        default=None, description="The most all carry-overs together may hold; null: no cap."
    )
    max_percentage: NonNegativeQuantity | None = Field(
        default=None,
        description="The cap as a percentage (0-100) of the per-period grant, rounded down; "
        "instead of `max`.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "RolloverParams":
        if self.max is not None and self.max_percentage is not None:
            raise ValueError("give max or max_percentage, not both")
        if self.max_percentage is not None and self.max_percentage > 100:
            raise ValueError("max_percentage must be at most 100")
        if self.duration is RolloverDuration.MONTH and self.length < 1:
            raise ValueError("length must be at least 1 month with duration month")
        return self

    def policy(self) -> RolloverPolicy:
        return RolloverPolicy(self.duration, self.length, self.max, self.max_percentage)


# Matches a body whose balance never resets: no `reset`, or a `one_off` one.
_ONE_OFF: JsonDict = {"properties": {"reset": {"properties": {"interval": {"const": "one_off"}}}}}
_CHANGES = ("remaining", "add_to_balance", "usage", "included_grant", "next_reset_at", "expires_at")


_SHORT_INTERVALS = [i for i in Interval if i is not Interval.ONE_OFF and longest_length(i) < 1200]


def _lasting_too_long(interval: Interval) -> JsonDict:
    """Matches a body with ``interval`` resets whose month-long carry-overs last longer than
    ``longest_length`` allows (an absent `duration` is `month`, an absent `length` is 1)."""
    longest = longest_length(interval)
    rollover: JsonDict = {"properties": {"duration": {"const": "month"}}}
    if longest >= 1:
        rollover = {
            "required": ["length"],
            "properties": {"duration": {"const": "month"}, "length": {"minimum": longest + 1}},
        }
    reset: JsonDict = {"required": ["interval"], "properties": {"interval": {"const": interval}}}
    return {"required": ["reset"], "properties": {"reset": reset, "rollover": rollover}}


class CreateBalanceParams(RequestSchema):
    """A `next_reset_at` needs a `reset` interval other than `one_off`. A `rollover` needs one
    too, a limited balance, and (with `duration: month`) a `length` of at most 0 months for
    minute resets, 1 for hourly, 32 for daily, 229 for weekly and 1000 for monthly ones, so
    that at most 1000 carry-overs are kept at once."""

    model_config = ConfigDict(
        json_schema_extra=refused(
            both(given("next_reset_at"), _ONE_OFF),
            both(given("rollover"), _ONE_OFF),
            both(given("rollover"), equals("unlimited", True)),
            *(both(given("rollover"), _lasting_too_long(i)) for i in _SHORT_INTERVALS),
        )
    )

    customer_id: ExternalId
    feature_id: ExternalId
    entity_id: ExternalId | None = Field(default=None, description="Scope to one entity (seat…).")
    included_grant: NonNegativeQuantity = Field(
        default=0, validate_default=True, description="Granted per period; not negative."
    )
    unlimited: StrictBool = False
    overage_allowed: StrictBool = False
    reset: ResetParams | None = Field(default=None, description="Omitted: `one_off`.")
    next_reset_at: EpochMillis | None = Field(
        default=None, description="Default: now + 1 period. In the future."
    )
    expires_at: EpochMillis | None = Field(
        default=None, description="In the future (epoch milliseconds, not seconds)."
    )
    balance_id: ExternalId | None = Field(default=None, description="Default: `bal_` + random.")
    rollover: RolloverParams | None = Field(
        default=None,
        description="Carry what is left over at each reset. Needs a resetting balance (a "
        "`reset` interval other than `one_off`) that is not unlimited.",
    )

    @field_validator("rollover")
    @classmethod
    def _rollover_needs_resets(
        cls, value: RolloverParams | None, info: ValidationInfo
    ) -> RolloverParams | None:
        if value is None:
            return value
        reset = info.data.get("reset")
        if reset is None or reset.interval is Interval.ONE_OFF:
            raise ValueError("rollover needs a reset interval: a one_off balance never resets")
        if info.data.get("unlimited"):
            raise ValueError("rollover needs a limited balance: an unlimited one has no rest")
        longest = longest_length(reset.interval)
        if value.duration is RolloverDuration.MONTH and value.length > longest:
            raise ValueError(
                f"with {reset.interval} resets, a carry-over may last at most {longest} months "
                f"(so that at most {MOST_CARRY_OVERS} are kept at once): use a longer reset "
                "interval, a shorter length, or duration forever"
            )
        return value


class UpdateBalanceParams(RequestSchema):
    """Set or adjust one balance. At most one of `remaining`, `add_to_balance`, `usage`; at
    least one thing to change; a `next_reset_at` not with `interval: one_off`."""

    model_config = ConfigDict(
        json_schema_extra=refused(
            absent(*_CHANGES),
            given("remaining", "add_to_balance"),
            given("remaining", "usage"),
            given("add_to_balance", "usage"),
            both(given("next_reset_at"), equals("interval", "one_off")),
        )
    )

    customer_id: ExternalId
    feature_id: ExternalId
    entity_id: ExternalId | None = Field(
        default=None, description="Target the entity-scoped balance; absent: customer-level."
    )
    remaining: Quantity | None = Field(default=None, description="Set remaining to exactly this.")
    add_to_balance: Quantity | None = Field(default=None, description="Add this signed amount.")
    usage: NonNegativeQuantity | None = Field(
        default=None, description="Set usage to exactly this; not negative."
    )
    interval: Interval | None = Field(default=None, description="Target by reset interval.")
    balance_id: ExternalId | None = Field(default=None, description="Target this balance.")
    included_grant: NonNegativeQuantity | None = Field(
        default=None, description="Set the per-period grant; not negative."
    )
    next_reset_at: EpochMillis | None = Field(default=None, description="In the future.")
    expires_at: EpochMillis | None = Field(
        default=None, description="In the future (epoch milliseconds, not seconds)."
    )

    @model_validator(mode="after")
    def _one_change_of_remaining(self) -> "UpdateBalanceParams":
        given = [
            f for f in ("remaining", "add_to_balance", "usage") if getattr(self, f) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} cannot be combined: give at most one of them")
        changes = (*given, "included_grant", "next_reset_at", "expires_at")
        if all(getattr(self, f) is None for f in changes):
            raise ValueError(
                "nothing to change: give remaining, add_to_balance, usage, included_grant, "
                "next_reset_at or expires_at"
            )
        return self


class DeleteBalanceParams(RequestSchema):
    """Say which balance: `feature_id` or `balance_id`; `recalculate_balances` needs
    `feature_id`."""

    model_config = ConfigDict(
        json_schema_extra=refused(
            absent("feature_id", "balance_id"),
            both(equals("recalculate_balances", True), absent("feature_id")),
        )
    )

    customer_id: ExternalId
    feature_id: ExternalId | None = None
    entity_id: ExternalId | None = None
    interval: Interval | None = None
    balance_id: ExternalId | None = None
    recalculate_balances: StrictBool | None = Field(
        default=None,
        description="Move the deleted balance's usage onto the live balances that survive it "
        "(the entity's, then its customer's; or the customer's), in deduction order, the "
        "rest past zero on the first of them. Needs `feature_id`.",
    )

    @model_validator(mode="after")
    def _needs_a_target(self) -> "DeleteBalanceParams":
        if self.feature_id is None and self.balance_id is None:
            raise ValueError("give feature_id or balance_id to say which balance to delete")
        if self.recalculate_balances and self.feature_id is None:
            raise ValueError("feature_id is required when recalculate_balances is true")
        return self


class ListBalancesParams(RequestSchema):
    customer_id: ExternalId | None = None
    feature_id: ExternalId | None = None
    entity_id: ExternalId | None = None
    statuses: list[BalanceStatus] | None = Field(default=None, description="Default: active.")
    limit: WholeNumber = Field(default=50, ge=1, le=1000)
    start_cursor: str | None = Field(default=None, max_length=2048, description="`next_cursor`.")
    plan_id: str | None = Field(
        default=None, description="Balances have no plan here: a non-null plan_id matches nothing."
    )


class RolloverBalance(ResponseSchema):
    """One carry-over of a balance, as Autumn shows it."""

    granted: QuantityOut = Field(description="What was carried over.")
    balance: QuantityOut = Field(description="What is left of it.")
    expires_at: EpochMillis = Field(description="When it expires; 0 (as in Autumn): never.")

    @classmethod
    def all_of(cls, tranches: Sequence[Tranche]) -> "list[RolloverBalance]":
        return [
            cls(granted=t.granted, balance=t.remaining, expires_at=t.expires_at or _NEVER_SHOWN)
            for t in spending_order(tranches)
        ]


_NEVER_SHOWN = datetime(1970, 1, 1, tzinfo=UTC)  # epoch 0: how Autumn shows "never expires"


class Reset(ResponseSchema):
    interval: Interval
    interval_count: int
    resets_at: EpochMillis | None


_BALANCE_EXAMPLE: JsonDict = {
    "id": "bal_01M86DMT1QTN9BA5H2BXPXNZHJ",
    "customer_id": "cus_123",
    "feature_id": "api_calls",
    "entity_id": None,
    "plan_id": None,
    "included_grant": 1000,
    "prepaid_grant": 0,
    "adjustment": 250.5,
    "granted": 1250.5,
    "usage": 300,
    "remaining": 950.5,
    "unlimited": False,
    "overage_allowed": False,
    "reset": {"interval": "month", "interval_count": 1, "resets_at": 1798103969847},
    "interval": "month",
    "next_reset_at": 1798103969847,
    "expires_at": None,
    "status": "active",
    "version": 4,
    "price": None,
    "rollovers": [],
    "source": "customer",
    "created_at": 1795511969847,
    "updated_at": 1795512000000,
}


class Balance(ResponseSchema):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_BALANCE_EXAMPLE]}
    )

    id: str
    customer_id: str
    feature_id: str
    entity_id: str | None
    plan_id: None = None
    included_grant: QuantityOut
    prepaid_grant: QuantityOut
    adjustment: QuantityOut
    granted: QuantityOut
    usage: QuantityOut
    remaining: QuantityOut
    unlimited: bool
    overage_allowed: bool
    reset: Reset | None
    interval: Interval
    next_reset_at: EpochMillis | None
    expires_at: EpochMillis | None
    status: BalanceStatus
    version: int
    price: None = None
    rollovers: list[RolloverBalance] = Field(
        default_factory=list, description="Its live carry-overs, in the order they are spent."
    )
    source: BalanceSource
    created_at: EpochMillis
    updated_at: EpochMillis

    @classmethod
    def of(cls, balance: BalanceRow, now: datetime) -> "Balance":
        """The balance as shown. An unlimited one reports ``granted`` and ``remaining`` 0, as
        Autumn does (its usage is counted; nothing is granted or left of an infinite sink)."""
        interval = Interval(balance.interval)
        state = state_at(balance, now)
        reset = None
        if interval is not Interval.ONE_OFF:
            reset = Reset(
                interval=interval,
                interval_count=balance.interval_count,
                resets_at=state.next_reset_at,
            )
        return cls(
            id=balance.id,
            customer_id=balance.customer_id,
            feature_id=balance.feature_id,
            entity_id=balance.entity_id,
            included_grant=state.included_grant,
            prepaid_grant=state.prepaid_grant,
            adjustment=state.adjustment,
            granted=ZERO if balance.unlimited else state.granted,
            usage=state.usage,
            remaining=ZERO if balance.unlimited else state.remaining,
            unlimited=balance.unlimited,
            overage_allowed=balance.overage_allowed,
            reset=reset,
            interval=interval,
            next_reset_at=state.next_reset_at,
            expires_at=balance.expires_at,
            status="expired" if balance.is_expired(now) else "active",
            version=balance.version,
            rollovers=RolloverBalance.all_of(state.rollovers),
            source="customer" if balance.entity_id is None else "entity",
            created_at=balance.created_at,
            updated_at=balance.updated_at,
        )


@dataclass(frozen=True, slots=True)
class FeatureAmounts:
    """The totals of a feature balance (the sum over its balances), as Autumn reports them."""

    granted: Decimal
    remaining: Decimal
    usage: Decimal

    @classmethod
    def of(cls, balances: Sequence[BalanceRow], now: datetime) -> "FeatureAmounts":
        """Sums over the balances as they are at ``now``, their carry-overs included (as in
        Autumn: what was carried over is granted, what was spent of it is usage). With an
        unlimited balance among them, the feature is unlimited: ``granted`` and ``remaining``
        are 0 and ``usage`` is what the unlimited balances counted (Autumn's unlimited
        balance)."""
        states = [(row, state_at(row, now)) for row in balances]
        if any(row.unlimited for row in balances):
            usage = sum((state.usage for row, state in states if row.unlimited), ZERO)
            return cls(granted=ZERO, remaining=ZERO, usage=usage)
        rolled = [t for _, state in states for t in state.rollovers]
        rolled_granted = sum((t.granted for t in rolled), ZERO)
        return cls(
            granted=sum((state.granted for _, state in states), rolled_granted),
            remaining=sum((state.remaining for _, state in states), total(rolled)),
            usage=sum((state.usage for _, state in states), rolled_granted - total(rolled)),
        )


class BalanceResponse(ResponseSchema):
    success: bool = True
    balance: Balance


class ListBalancesResponse(ResponseSchema):
    list: list[Balance]
    has_more: bool
    next_cursor: str | None
