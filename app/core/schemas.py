"""Base classes for wire schemas and the problem+json error body."""

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.core.types import json_number_only


class RequestSchema(BaseModel):
    """Request bodies refuse unknown fields: a typo must fail loudly, not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _whole_number(value: Any) -> Any:
    json_number_only(value)
    if value != int(value):
        raise ValueError("must be a whole number")
    return int(value)


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
"""An integer that may arrive as ``3`` or ``3.0`` (generated clients send floats)."""


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus ``code``/``message`` for clients written for Autumn."""

    type: str = Field(examples=["urn:balances:problem:balance_not_found"])
    title: str = Field(examples=["Balance not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No balance of feature 'api_calls' for customer 'cus_1'."])
    code: str = Field(examples=["balance_not_found"])
    message: str = Field(examples=["No balance of feature 'api_calls' for customer 'cus_1'."])
    errors: list[ErrorItem] | None = None


class SuccessResponse(BaseModel):
    success: bool = True
