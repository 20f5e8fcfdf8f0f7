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
        description="Recommended. Autumn's SDK omits it: the lock is then found by `lock_id` "
        "alone, and `409 ambiguous_lock` if several customers use that id.",
    )
    action: FinalizeAction = Field(
        description="`confirm` keeps the deduction; `release` returns it."
    )
    override_value: NonNegativeQuantity | None = Field(
        default=None, description="With `confirm`: deduct exactly this instead."
    )
    properties: dict[str, Any] | None = Field(default=None, description="Accepted; not stored.")
