"""ISO 8601 durations (``p1d``, ``PT12H``, ``P1Y2M``) and dates, for ``system.now -plus p1d`` rules.

Hand-written because the whole need is one regular expression and calendar-month addition; pulling in a
date library for it would add a runtime dependency to the pure core.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta

from writeback.core.rules.nodes import Duration

_DURATION = re.compile(
    r"(?P<sign>[+-])?P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


def parse_duration(text: str) -> Duration:
    """``'p1d'`` → Duration(months=0, delta=1 day). Raises ValueError for anything that is not a duration."""
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.group(g) for g in ("y", "mo", "w", "d", "h", "mi", "s")):
        raise ValueError(f'"{text}" is not an ISO 8601 duration such as P1D, P2W or PT12H')
    sign = -1 if match.group("sign") == "-" else 1

    def part(name: str) -> int:
        return int(match.group(name) or 0)

    months = sign * (12 * part("y") + part("mo"))
    delta = sign * timedelta(
        weeks=part("w"),
        days=part("d"),
        hours=part("h"),
        minutes=part("mi"),
        seconds=float(match.group("s") or 0),
    )
    return Duration(months, delta, text)


def add_duration(moment: datetime, duration: Duration, sign: int = 1) -> datetime:
    """``moment`` plus (or minus, ``sign=-1``) ``duration``; months land on the same day, clamped to month end."""
    months = sign * duration.months
    if months:
        index = moment.month - 1 + months
        year, month = moment.year + index // 12, index % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        moment = moment.replace(year=year, month=month, day=day)
    return moment + sign * duration.delta


def parse_datetime(value: object) -> datetime | None:
    """A timezone-aware datetime from Graph's ISO strings (``2020-06-10T18:13:20Z``), dates or datetimes.

    Naive values are taken as UTC, as Graph's are. Returns None when ``value`` is not a date.
    """
    if isinstance(value, str):  # the usual case: Graph's ISO 8601 text
        text = value.strip()
        if len(text) < 10 or not text[:4].isdigit():
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
