"""Base classes for wire schemas, the problem+json error body, and the JSON Schema pieces that
state rules across fields in the OpenAPI document."""

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel
from pydantic.config import JsonDict

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


class EventProperties(RootModel[dict[str, Any]]):
    """Free-form properties of an event (any JSON object): accepted, not stored."""


class ErrorItem(BaseModel):
    """One input at fault: where it is (`loc`: the path into the body, or a header's name)
    and what is wrong with it."""

    loc: list[str | int] = Field(examples=[["lock", "expires_at"]])
    msg: str = Field(examples=["lock.expires_at must be in the future."])


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error (`application/problem+json`).

    Branch on `code`: it is stable, and every value it can take is listed in `ProblemCode`.
    `detail` (also as `message`, for clients written for Autumn) is a sentence for people.
    """

    type: str = Field(
        description="`urn:balances:problem:` followed by the code.",
        examples=["urn:balances:problem:balance_not_found"],
    )
    title: str = Field(
        description="What went wrong, in a few words.", examples=["Balance not found"]
    )
    status: int = Field(description="The HTTP status of the answer.", examples=[404])
    detail: str = Field(examples=["No balance of feature 'api_calls' for customer 'cus_1'."])
    code: str = Field(examples=["balance_not_found"])  # documented as ProblemCode (problems.py)
    message: str = Field(
        description="The same as `detail`.",
        examples=["No balance of feature 'api_calls' for customer 'cus_1'."],
    )
    errors: list[ErrorItem] | None = Field(
        default=None, description="Only on `422`: each input at fault (omitted otherwise)."
    )


class SuccessResponse(BaseModel):
    success: bool = True


# Rules across fields, as JSON Schema (a model's ``json_schema_extra``): stated with ``not``,
# which generators ignore rather than turning the model into a union (as ``anyOf`` would), and
# which validators and fuzzers read exactly. "Absent" means missing or null, as the server reads
# a body.


def given(*fields: str) -> JsonDict:
    """Matches a body in which each of ``fields`` is present and not null."""
    return {"required": list(fields), "properties": {f: {"not": {"type": "null"}} for f in fields}}


def absent(*fields: str) -> JsonDict:
    """Matches a body in which each of ``fields`` is missing or null."""
    return {"properties": {field: {"type": "null"} for field in fields}}


def equals(field: str, value: Any) -> JsonDict:
    """Matches a body in which ``field`` is ``value``."""
    return {"required": [field], "properties": {field: {"const": value}}}


def both(*conditions: JsonDict) -> JsonDict:
    return {"allOf": list(conditions)}


def refused(*cases: JsonDict) -> JsonDict:
    """The ``json_schema_extra`` of a model whose bodies matching any of ``cases`` are refused."""
    return {"not": {"anyOf": list(cases)}}
