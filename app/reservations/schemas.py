"""Wire schemas of ``balances.finalize``."""

import enum

from pydantic import Field

from app.core.schemas import RequestSchema
from app.core.types import ExternalId, Quantity


class FinalizeAction(enum.StrEnum):
    CONFIRM = "confirm"
    RELEASE = "release"


class FinalizeLockParams(RequestSchema):
    lock_id: ExternalId
    customer_id: ExternalId
    action: FinalizeAction = Field(
        description="`confirm` keeps the deduction; `release` returns it."
    )
    override_value: Quantity | None = Field(
        default=None, ge=0, description="With `confirm`: deduct exactly this instead."
    )
