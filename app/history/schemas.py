"""Wire schemas of the ledger (``balances.history``)."""

from pydantic import ConfigDict, Field, model_validator

from app.balances.models import Interval
from app.core.schemas import RequestSchema, ResponseSchema, WholeNumber, absent, refused
from app.core.types import EpochMillis, ExternalId, QuantityOut
from app.ledger.models import EntryKind
from app.ledger.repository import StoredEntry


class HistoryParams(RequestSchema):
    """Either `balance_id`, or `customer_id` + `feature_id` (optionally `entity_id`, `interval`)."""

    model_config = ConfigDict(
        json_schema_extra=refused(
            absent("balance_id", "customer_id"), absent("balance_id", "feature_id")
        )
    )

    balance_id: ExternalId | None = None
    customer_id: ExternalId | None = None
    feature_id: ExternalId | None = None
    entity_id: ExternalId | None = None
    interval: Interval | None = None
    limit: WholeNumber = Field(default=50, ge=1, le=1000)
    start_cursor: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _needs_a_balance(self) -> "HistoryParams":
        if self.balance_id is None and (self.customer_id is None or self.feature_id is None):
            raise ValueError("give balance_id, or customer_id and feature_id")
        return self


class LedgerEntry(ResponseSchema):
    id: int | None = Field(description="Monotonic; null for a pending (not yet persisted) reset.")
    balance_id: str
    customer_id: str
    feature_id: str
    entity_id: str | None
    interval: Interval
    kind: EntryKind
    remaining_delta: QuantityOut
    usage_delta: QuantityOut
    remaining_after: QuantityOut
    usage_after: QuantityOut
    granted_after: QuantityOut
    rollover_delta: QuantityOut = Field(description="What the balance's rollovers gained or lost.")
    rollover_after: QuantityOut = Field(description="What its rollovers hold after the entry.")
    balance_version: int
    idempotency_key: str | None
    request_id: str | None
    api_key_id: str | None
    created_at: EpochMillis
    pending: bool = Field(
        default=False,
        description="True for a reset that is due but not yet written (shown, not stored).",
    )

    @classmethod
    def of(cls, entry: StoredEntry) -> "LedgerEntry":
        return cls.model_validate(entry).model_copy(update={"pending": entry.id is None})


class HistoryResponse(ResponseSchema):
    list: list[LedgerEntry]
    has_more: bool
    next_cursor: str | None
