"""Reset-period arithmetic in UTC. Pure functions: no clock, no database.

A schedule is an *anchor* plus whole periods: boundary k is ``anchor + k * interval_count *
interval``, always computed from the anchor. Calendar periods (month, quarter, semi_annual, year)
keep the anchor's day of month, clamped to the month's last day: anchored on Jan 31, monthly
boundaries fall on Feb 28 (29 in leap years), Mar 31, Apr 30, ...
"""

import calendar
from datetime import datetime, timedelta

from app.balances.models import Interval

FIXED_PERIODS: dict[Interval, timedelta] = {
    Interval.MINUTE: timedelta(minutes=1),
    Interval.HOUR: timedelta(hours=1),
    Interval.DAY: timedelta(days=1),
    Interval.WEEK: timedelta(weeks=1),
}
MONTHS_PER_PERIOD: dict[Interval, int] = {
    Interval.MONTH: 1,
    Interval.QUARTER: 3,
    Interval.SEMI_ANNUAL: 6,
    Interval.YEAR: 12,
}


def add_months(anchor: datetime, months: int) -> datetime:
    year, month_index = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month_index + 1)[1])
    return anchor.replace(year=year, month=month_index + 1, day=day)


def boundary(anchor: datetime, interval: Interval, interval_count: int, k: int) -> datetime:
    """The k-th reset boundary of the schedule (k = 0 is the anchor itself)."""
    if interval in FIXED_PERIODS:
        return anchor + FIXED_PERIODS[interval] * (interval_count * k)
    if interval in MONTHS_PER_PERIOD:
        return add_months(anchor, MONTHS_PER_PERIOD[interval] * interval_count * k)
    raise ValueError(f"{interval} has no reset periods")


def first_boundary_after(
    anchor: datetime, interval: Interval, interval_count: int, now: datetime
) -> datetime:
    """The earliest boundary strictly after ``now`` (the anchor itself if it is still ahead).

    Jumps straight to the right period instead of stepping through missed ones, so a balance
    nobody touched for years costs the same as one touched yesterday.
    """
    if anchor > now:
        return anchor
    if interval in FIXED_PERIODS:
        period = FIXED_PERIODS[interval] * interval_count
        k = (now - anchor) // period + 1
    else:
        months = MONTHS_PER_PERIOD[interval] * interval_count
        elapsed_months = (now.year - anchor.year) * 12 + (now.month - anchor.month)
        k = max(elapsed_months // months, 0)
    while boundary(anchor, interval, interval_count, k) <= now:
        k += 1
    return boundary(anchor, interval, interval_count, k)
