"""Decimal arithmetic in the service is exact or fails loudly; it never rounds silently."""

import decimal
from decimal import Decimal

import pytest

import app.core.types  # noqa: F401  (installs the exact context)


def test_sums_beyond_28_digits_stay_exact() -> None:
    amount = Decimal("999999999999999.999999999")
    total = sum([amount] * 100_000, Decimal(0))
    # 29 significant digits: Python's default 28-digit context would have rounded this.
    assert str(total) == "99999999999999999999.999900000"


def test_an_inexact_operation_raises_instead_of_rounding() -> None:
    with pytest.raises(decimal.Inexact):
        Decimal(1) / Decimal(3)
