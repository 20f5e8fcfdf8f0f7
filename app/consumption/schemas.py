"""Wire schemas of check, track and batch_track, and the feature balance they return."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, RootModel, StrictBool, WithJsonSchema, field_validator

from app.balances.allocation import OverageBehavior
from app.balances.resets import state_at
from app.balances.rows import BalanceRow
from app.balances.schemas import Balance, FeatureAmounts, Reset, RolloverBalance
from app.core.errors import DomainError
from app.core.problems import problem_reply
from app.core.schemas import EventProperties, Problem, RequestSchema, ResponseSchema
from app.core.types import EpochMillis, ExternalId, NonNegativeQuantity, Quantity, QuantityOut

BATCH_TRACK_LIMIT = 1000
# A field Autumn has and this service refuses unless null: the document says null, so that a
# client (and a fuzzer) never sends what the server refuses; the validator says why.
Unsupported = Annotated[str | None, WithJsonSchema({"type": "null"})]


class LockParams(RequestSchema):
    lock_id: ExternalId = Field(
        description="Unique across the deployment, never reused; pass it to balances.finalize."
    )
    enabled: Literal[True] = True
    expires_at: EpochMillis | None = Field(
        default=None,
        description="Released automatically at this time (reads show it released from then "
        "on). In the future, and at most 24 hours ahead.",
    )
    overage_behavior: OverageBehavior | None = Field(
        default=None,
        description="`reject` (default): reserve all or nothing; `cap`: reserve what fits; "
        "`overflow`: reserve all, remaining may go negative.",
    )


class CheckParams(RequestSchema):
    customer_id: ExternalId
    feature_id: ExternalId
    entity_id: ExternalId | None = Field(
        default=None,
        description="The entity's own balances, then its customer's; absent: the "
        "customer-level ones.",
    )
    required_balance: NonNegativeQuantity = Field(default=1, validate_default=True)
    send_event: StrictBool | None = Field(
        default=None,
        description="When allowed, also deduct `required_balance` (all or nothing). With "
        "`lock`: the reservation is the event (held once, settled by finalize).",
    )
    lock: LockParams | None = Field(default=None, description="Reserve `required_balance`.")
    properties: EventProperties | None = None
    with_preview: StrictBool | None = Field(default=None, description="Accepted; no effect.")


class TrackParams(RequestSchema):
    customer_id: ExternalId
    feature_id: ExternalId
    entity_id: ExternalId | None = Field(
        default=None, description="The entity's own balances first, then its customer's."
    )
    value: Quantity = Field(default=1, validate_default=True, description="Negative gives back.")
    overage_behavior: OverageBehavior | None = Field(
        default=None,
        description="`cap` (default): deduct what fits; `overflow`: deduct all; `reject`: all "
        "or nothing. Balances with `overage_allowed` take what the others cannot.",
    )
    properties: EventProperties | None = None
    timestamp: EpochMillis | None = Field(default=None, description="When it happened; not future.")
    event_name: Unsupported = Field(default=None, description="Not supported: use feature_id.")
    async_: StrictBool | None = Field(
        default=None, alias="async", description="Accepted; tracking is always synchronous."
    )

    @field_validator("event_name")
    @classmethod
    def _no_event_names(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("event names are not supported: track by feature_id")


class FeatureBalance(ResponseSchema):
    """The sum over a customer's live balances of one feature (and entity)."""

    feature_id: str
    granted: QuantityOut
    remaining: QuantityOut
    usage: QuantityOut
    unlimited: bool
    overage_allowed: bool
    max_purchase: None = None
    next_reset_at: EpochMillis | None
    breakdown: list[Balance]
    rollovers: list[RolloverBalance] = Field(
        default_factory=list, description="Every carry-over of its balances, in spending order."
    )

    @classmethod
    def of(
        cls, feature_id: str, balances: list[BalanceRow], now: datetime
    ) -> "FeatureBalance | None":
        if not balances:
            return None
        states = [state_at(balance, now) for balance in balances]
        resets = [s.next_reset_at for s in states if s.next_reset_at is not None]
        amounts = FeatureAmounts.of(balances, now)  # unlimited: granted and remaining are 0
        return cls(
            feature_id=feature_id,
            granted=amounts.granted,
            remaining=amounts.remaining,
            usage=amounts.usage,
            unlimited=any(b.unlimited for b in balances),
            overage_allowed=any(b.overage_allowed for b in balances),
            next_reset_at=min(resets, default=None),
            breakdown=[Balance.of(balance, now) for balance in balances],
            rollovers=RolloverBalance.all_of([t for state in states for t in state.rollovers]),
        )


class CheckResponse(ResponseSchema):
    allowed: bool
    customer_id: str
    feature_id: str
    entity_id: str | None
    required_balance: QuantityOut
    balance: FeatureBalance | None
    flag: None = None
    lock_id: str | None = Field(default=None, description="Set when a lock was taken.")
    reserved: QuantityOut | None = Field(default=None, description="Amount the lock holds.")


class Deduction(ResponseSchema):
    balance_id: str
    feature_id: str
    plan_id: None = None
    reset: Reset | None
    value: QuantityOut

    @classmethod
    def of(cls, balance: BalanceRow, value: Decimal, now: datetime) -> "Deduction":
        return cls(
            balance_id=balance.id,
            feature_id=balance.feature_id,
            reset=Balance.of(balance, now).reset,
            value=value,
        )


class TrackResponse(ResponseSchema):
    customer_id: str
    feature_id: str
    entity_id: str | None
    value: QuantityOut = Field(description="The value asked for.")
    deducted: QuantityOut = Field(description="What was deducted (less than value when capped).")
    balance: FeatureBalance | None
    deductions: list[Deduction]


class BatchTrackItem(RequestSchema):
    """One usage event of ``balances.batch_track``: what ``balances.track`` takes."""

    customer_id: ExternalId
    feature_id: ExternalId
    entity_id: ExternalId | None = Field(
        default=None, description="The entity's own balances first, then its customer's."
    )
    value: Quantity = Field(default=1, validate_default=True, description="Negative gives back.")
    overage_behavior: OverageBehavior | None = Field(
        default=None, description="As for `balances.track`."
    )
    properties: EventProperties | None = None
    timestamp: EpochMillis | None = Field(default=None, description="When it happened; not future.")
    event_name: Unsupported = Field(default=None, description="Not supported: use feature_id.")
    idempotency_key: Unsupported = Field(
        default=None,
        description="Not supported per item: send the whole batch with an `Idempotency-Key` "
        "header, which makes it exactly-once.",
    )

    @field_validator("event_name")
    @classmethod
    def _no_event_names(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("event names are not supported: track by feature_id")

    @field_validator("idempotency_key")
    @classmethod
    def _no_item_keys(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError(
                "per-item idempotency keys are not supported: send the batch with an "
                "Idempotency-Key header, which makes the whole batch exactly-once"
            )


class BatchTrackParams(RootModel[list[BatchTrackItem]]):
    """The events to apply, in order: a JSON array of 1 to 1000 items."""

    root: list[BatchTrackItem] = Field(min_length=1, max_length=BATCH_TRACK_LIMIT)


class BatchTrackResult(ResponseSchema):
    """What ``balances.track`` would have answered for this item alone, at its turn."""

    success: bool
    status: int = Field(description="200, or the error's status.")
    result: TrackResponse | None = Field(description="The track's answer when it applied.")
    error: Problem | None = Field(description="Why it did not apply; it changed nothing.")

    @classmethod
    def of(cls, response: TrackResponse) -> "BatchTrackResult":
        return cls(success=True, status=200, result=response, error=None)

    @classmethod
    def failed(cls, error: DomainError) -> "BatchTrackResult":
        problem = Problem.model_validate_json(problem_reply(error).body)
        return cls(success=False, status=error.status, result=None, error=problem)


class BatchTrackResponse(ResponseSchema):
    success: Literal[True] = Field(
        default=True, description="The batch was applied: each item's outcome is in `results`."
    )
    applied: int = Field(description="Items that applied.")
    failed: int = Field(description="Items that did not (each changed nothing).")
    results: list[BatchTrackResult] = Field(description="One per item, in the order sent.")

    @classmethod
    def of(cls, results: list[BatchTrackResult]) -> "BatchTrackResponse":
        applied = sum(result.success for result in results)
        return cls(applied=applied, failed=len(results) - applied, results=results)
