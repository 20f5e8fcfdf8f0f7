"""Wire types shared by every schema: exact quantities, epoch-millisecond times, opaque IDs."""

import decimal
import re
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


AMOUNT_FORMAT = "decimal"
"""OpenAPI ``format`` of every amount: a JSON number on the wire, to be read as an exact decimal
(generators that know the format map it to BigDecimal, decimal.Decimal…, never to a float)."""


def _amount_schema(description: str, **bounds: int) -> WithJsonSchema:
    exact = f"An exact decimal (a JSON number; at most {QUANTITY_PLACES} decimal places). "
    return WithJsonSchema(
        {"type": "number", "format": AMOUNT_FORMAT, **bounds, "description": exact + description}
    )


Quantity = Annotated[
    Decimal,
    BeforeValidator(json_number_only),
    Field(
        allow_inf_nan=False, decimal_places=QUANTITY_PLACES, gt=-QUANTITY_LIMIT, lt=QUANTITY_LIMIT
    ),
    PlainSerializer(normalize_decimal),
    _amount_schema("Magnitude below 10^15.", exclusiveMinimum=-(10**15), exclusiveMaximum=10**15),
]
"""An exact amount: a JSON number, finite, at most 9 decimals, magnitude below 10^15.

The decimal places are stated in prose only: ``multipleOf: 1e-9`` is what JSON Schema offers,
and validators and generators test it in binary floating point, refusing valid amounts."""

NonNegativeQuantity = Annotated[
    Quantity,
    Field(ge=0),
    _amount_schema("Never below 0; below 10^15.", minimum=0, exclusiveMaximum=10**15),
]
"""A quantity that cannot be negative (422 otherwise). Its own JSON schema: a bound given as
``Field(ge=0)`` on a ``Quantity`` field is lost from the document (``Quantity``'s schema
replaces it), or leaks as a ``"ge"`` keyword that JSON Schema does not know."""

QuantityOut = Annotated[
    Decimal,
    PlainSerializer(normalize_decimal),
    WithJsonSchema({"type": "number", "format": AMOUNT_FORMAT, "description": "An exact decimal."}),
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


# What an identifier may not contain: control characters (C0, DEL, C1), every space but
# U+0020 (no-break, ideographic…) and line/paragraph separators, invisible format characters
# (zero-width, bidi controls, BOM…) and private-use characters: the Basic Multilingual Plane's
# non-printable characters. One regex, used as is by the server and in the OpenAPI document,
# so a generated client and the server agree on every ID (``str.isprintable`` follows the
# running Python's Unicode version; a fixed list does not). ``\uXXXX`` reads the same in
# Python's ``re`` and in ECMA-262. Characters beyond the BMP are allowed.
_NOT_IN_IDS = (
    r"\u0000-\u001f\u007f-\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    r"\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ue000-\uf8ff"
    r"\ufeff\ufff9-\ufffb"
)
ID_PATTERN = f"^[^{_NOT_IN_IDS}]+$"
_ID = re.compile(f"[^{_NOT_IN_IDS}]+")


def _printable_id(value: str) -> str:
    # fullmatch, not the pattern's "$": Python's "$" also matches before a final newline.
    if not _ID.fullmatch(value):
        raise ValueError("must not contain control, invisible or non-breaking space characters")
    return value


ExternalId = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra={"pattern": ID_PATTERN}),
    AfterValidator(_printable_id),
]
"""An ID owned by a calling system: 1-255 printable characters (``ID_PATTERN``)."""

_KEY = "[!-~]([ -~]{0,253}[!-~])?"
IDEMPOTENCY_KEY_PATTERN = f"^{_KEY}$"
"""An ``Idempotency-Key``: 1-255 printable ASCII characters, no space at either end (HTTP
strips those from a header value)."""
IDEMPOTENCY_KEY = re.compile(_KEY)
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": IDEMPOTENCY_KEY_PATTERN,
}
