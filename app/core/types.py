"""Wire types shared by every schema: exact quantities, epoch-millisecond times, opaque IDs."""

import decimal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

QUANTITY_LIMIT = Decimal(10) ** 15
QUANTITY_PLACES = 9


def use_exact_decimal_arithmetic() -> None:
    """Make every Decimal operation in the process exact, or an error: never silently rounded.

    Python's default context keeps 28 significant digits, and a feature balance summing many
    amounts of 24 digits (15 + 9 decimals) could exceed that and round without a word. 50
    digits cover any sum this service can form; a trap turns anything inexact into an error.
    Applied to this thread's context and to the default that new threads copy.
    """
    for context in (decimal.DefaultContext, decimal.getcontext()):
        context.prec = 50
        context.traps[decimal.Inexact] = True


use_exact_decimal_arithmetic()

_MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z, the last instant datetime can hold
_MAX_EXPONENT = 40


def json_number_only(value: Any) -> Any:
    # Bodies are parsed with Decimal for non-integers (app.core.json), so a genuine JSON number
    # arrives as int or Decimal. Strings and booleans are refused rather than coerced.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a JSON number")
    # 1e999999999 is a valid JSON number; turning it into an int would take minutes.
    if isinstance(value, Decimal) and abs(value.adjusted()) > _MAX_EXPONENT:
        raise ValueError(f"must be between 1e-{_MAX_EXPONENT} and 1e{_MAX_EXPONENT}")
    return value


def normalize_decimal(value: Decimal) -> Decimal:
    """Drop trailing zeros (NUMERIC(.., 9) returns 5.000000000) without switching to 1E+2."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


Quantity = Annotated[
    Decimal,
    BeforeValidator(json_number_only),
    Field(
        allow_inf_nan=False, decimal_places=QUANTITY_PLACES, gt=-QUANTITY_LIMIT, lt=QUANTITY_LIMIT
    ),
    PlainSerializer(normalize_decimal),
    WithJsonSchema(
        {
            "type": "number",
            "exclusiveMinimum": -(10**15),
            "exclusiveMaximum": 10**15,
            "description": "Exact: at most 9 decimal places.",
        }
    ),
]
"""An exact amount: a JSON number, finite, at most 9 decimals, magnitude below 10^15."""

NonNegativeQuantity = Annotated[
    Quantity,
    Field(ge=0),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 10**15,
            "description": "Exact: at most 9 decimal places; never below 0.",
        }
    ),
]
"""A quantity that cannot be negative (422 otherwise). Its own JSON schema: a bound given as
``Field(ge=0)`` on a ``Quantity`` field is lost from the document (``Quantity``'s schema
replaces it), or leaks as a ``"ge"`` keyword that JSON Schema does not know."""

QuantityOut = Annotated[
    Decimal, PlainSerializer(normalize_decimal), WithJsonSchema({"type": "number"})
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def from_epoch_ms(value: Any) -> datetime:
    if isinstance(value, datetime):  # building a response from a row
        return value
    json_number_only(value)
    if value != int(value):
        raise ValueError("must be a whole number of milliseconds")
    millis = int(value)
    if not 0 <= millis <= _MAX_EPOCH_MS:
        raise ValueError("must be Unix epoch milliseconds between 1970 and 9999")
    return _EPOCH + millis * _ONE_MS


def to_epoch_ms(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_MS


EpochMillis = Annotated[
    datetime,
    BeforeValidator(from_epoch_ms),
    PlainSerializer(to_epoch_ms),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 0,
            "maximum": _MAX_EPOCH_MS,
            "description": "Unix epoch milliseconds",
        }
    ),
]
"""A point in time on the wire: Unix epoch milliseconds (a JSON number)."""


def _printable_id(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


ExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f]+$"},  # for clients
    ),
    AfterValidator(_printable_id),  # enforces: str.isprintable(), stricter than the pattern
]
"""An ID owned by a calling system: 1-255 printable characters."""
