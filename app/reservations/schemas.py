"""Wire schemas of ``balances.finalize``."""

import enum
from typing import Any

from pydantic import Field

from app.core.schemas import RequestSchema
from app.core.types import ExternalId, NonNegativeQuantity


class FinalizeAction(enum.StrEnum):
    CONFIRM = "confirm"
    RELEASE = "release"


class FinalizeLockParams(RequestSchema):
    lock_id: ExternalId
    customer_id: ExternalId | None = Field(
        default=None,
        description="Optional (Autumn's SDK omits it): a `lock_id` is unique across the "
        "deployment and finds the lock alone. If given, it must be the lock's customer.",
    )
    action: FinalizeAction = Field(
        description="`confirm` keeps the deduction; `release` returns it."
    )
    override_value: NonNegativeQuantity | None = Field(
        default=None, description="With `confirm`: deduct exactly this instead."
    )
    properties: dict[str, Any] | None = Field(default=None, description="Accepted; not stored.")
