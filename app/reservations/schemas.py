"""Wire schemas of ``balances.finalize``."""

import enum

from pydantic import ConfigDict, Field

from app.core.schemas import EventProperties, RequestSchema, given, refused
from app.core.types import ExternalId, NonNegativeQuantity


class FinalizeAction(enum.StrEnum):
    CONFIRM = "confirm"
    RELEASE = "release"


class FinalizeLockParams(RequestSchema):
    """Confirm or release a lock. `override_value` goes with `confirm` only."""

    model_config = ConfigDict(
        json_schema_extra=refused(
            {"allOf": [given("override_value"), {"properties": {"action": {"const": "release"}}}]}
        )
    )

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
    properties: EventProperties | None = None
