"""Reset-period arithmetic: examples for the calendar edge cases, properties for the rest."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.balances.models import Interval
from app.balances.periods import boundary, first_boundary_after

RESETTING = [i for i in Interval if i is not Interval.ONE_OFF]


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_month_anchored_on_31st_clamps_then_returns_to_31st() -> None:
    anchor = utc(2026, 1, 31, 9)
    got = [boundary(anchor, Interval.MONTH, 1, k) for k in range(1, 5)]
    assert got == [
        utc(2026, 2, 28, 9),
        utc(2026, 3, 31, 9),
        utc(2026, 4, 30, 9),
        utc(2026, 5, 31, 9),
    ]


def test_month_anchored_on_31st_lands_on_29th_in_leap_february() -> None:
    assert boundary(utc(2028, 1, 31), Interval.MONTH, 1, 1) == utc(2028, 2, 29)


def test_year_anchored_on_leap_day() -> None:
    anchor = utc(2028, 2, 29)
    assert boundary(anchor, Interval.YEAR, 1, 1) == utc(2029, 2, 28)
    assert boundary(anchor, Interval.YEAR, 1, 4) == utc(2032, 2, 29)


def test_quarter_and_semi_annual_with_counts() -> None:
    anchor = utc(2026, 1, 15)
    assert boundary(anchor, Interval.QUARTER, 1, 1) == utc(2026, 4, 15)
    assert boundary(anchor, Interval.SEMI_ANNUAL, 1, 1) == utc(2026, 7, 15)
    assert boundary(anchor, Interval.MONTH, 2, 3) == utc(2026, 7, 15)


def test_first_boundary_after_skips_missed_periods_in_one_step() -> None:
    anchor = utc(2026, 1, 31)
    assert first_boundary_after(anchor, Interval.MONTH, 1, utc(2026, 5, 1)) == utc(2026, 5, 31)
    assert first_boundary_after(anchor, Interval.DAY, 1, utc(2026, 2, 3, 1)) == utc(2026, 2, 4)


def test_a_boundary_equal_to_now_is_already_past() -> None:
    anchor = utc(2026, 1, 1)
    assert first_boundary_after(anchor, Interval.HOUR, 1, utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 6)


anchors = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(anchors, st.sampled_from(RESETTING), st.integers(1, 12), st.integers(0, 200))
def test_boundaries_strictly_increase(
    anchor: datetime, interval: Interval, count: int, k: int
) -> None:
    assert boundary(anchor, interval, count, k) < boundary(anchor, interval, count, k + 1)


@settings(deadline=None)
@given(
    anchors,
    st.sampled_from(RESETTING),
    st.integers(1, 12),
    st.integers(0, 500),
    st.integers(0, 59_999),
)
def test_first_boundary_after_skipping_missed_periods_equals_stepping_one_by_one(
    anchor: datetime, interval: Interval, count: int, missed: int, jitter_ms: int
) -> None:
    # "now" lies less than a minute (the shortest period) after the boundary `missed`.
    now = boundary(anchor, interval, count, missed) + timedelta(milliseconds=jitter_ms)
    expected = boundary(anchor, interval, count, missed + 1)
    assert first_boundary_after(anchor, interval, count, now) == expected


@given(
    anchors, st.sampled_from([Interval.MONTH, Interval.QUARTER, Interval.YEAR]), st.integers(0, 60)
)
def test_calendar_boundaries_keep_the_anchor_day_when_the_month_has_it(
    anchor: datetime, interval: Interval, k: int
) -> None:
    got = boundary(anchor, interval, 1, k)
    assert got.time() == anchor.time()
    last_day_of_month = (got + timedelta(days=1)).day == 1
    assert got.day == anchor.day or (got.day < anchor.day and last_day_of_month)
