"""Dates for CDate, DateAdd, DateDiff, DateFromNum, NumFromDate and FormatDateTime, as Microsoft's engine does them.

Microsoft's provisioning service is .NET running in UTC: CDate "returns a UTC DateTime" and prints it as
``M/d/yyyy h:mm:ss tt`` (en-US's general pattern "G", e.g. ``3/16/2020 7:00:00 AM``); a date with an
offset (``2020-03-16-07:00``) is converted to UTC; a date without one is taken as UTC. Values here are
always timezone-aware UTC ``datetime`` objects, so results never depend on the machine's time zone.

Nothing reads the clock: ``Now()`` is not offered (see ``_functions.UNSUPPORTED``) and a FormatDateTime
input format without a year, month or day defaults them to 1 (.NET's ``NoCurrentDateDefault``) instead of
today, so the same group always maps to the same value.

.NET custom date and time format strings are translated here by hand: no maintained Python library reads
them (strftime, babel/LDML and dateutil all use other pattern languages). The subset is the whole table of
https://learn.microsoft.com/dotnet/standard/base-types/custom-date-and-time-format-strings except
calendar eras other than A.D.; the single-letter standard formats use en-US patterns, the culture whose
"G" pattern CDate's documented output shows.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

# Windows FILETIME / AD "Interval" (accountExpires, lastLogonTimestamp): 100-ns ticks since 1601-01-01 UTC.
# https://learn.microsoft.com/windows/win32/adschema/a-accountexpires
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
# accountExpires uses 0 and 0x7FFFFFFFFFFFFFFF for "never expires": DateFromNum gives null for both.
FILETIME_NEVER = (0, 0x7FFFFFFFFFFFFFFF)

_MONTHS = tuple(calendar.month_name[i] for i in range(1, 13))  # C locale = en-US names
_MONTHS_ABBR = tuple(calendar.month_abbr[i] for i in range(1, 13))
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAYS_ABBR = tuple(day[:3] for day in _DAYS)

# en-US standard format strings (single letters), expanded to custom formats.
# https://learn.microsoft.com/dotnet/standard/base-types/standard-date-and-time-format-strings
STANDARD_FORMATS = {
    "d": "M/d/yyyy",
    "D": "dddd, MMMM d, yyyy",
    "f": "dddd, MMMM d, yyyy h:mm tt",
    "F": "dddd, MMMM d, yyyy h:mm:ss tt",
    "g": "M/d/yyyy h:mm tt",
    "G": "M/d/yyyy h:mm:ss tt",
    "M": "MMMM d",
    "m": "MMMM d",
    "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
    "t": "h:mm tt",
    "T": "h:mm:ss tt",
    "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
    "U": "dddd, MMMM d, yyyy h:mm:ss tt",
    "Y": "MMMM yyyy",
    "y": "MMMM yyyy",
}
DISPLAY_FORMAT = STANDARD_FORMATS["G"]  # what CDate, DateAdd and DateFromNum print: 3/16/2020 7:00:00 AM


class DateError(ValueError):
    """A date string or a format string could not be read; the message never contains the data."""


# --- the format language -------------------------------------------------------------------------

_SPECIFIERS = "dfFghHKmMstyz"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # a specifier letter, or "" for literal text
    width: int
    text: str = ""


@lru_cache(maxsize=128)
def tokenize(pattern: str) -> tuple[_Token, ...]:
    """Split a .NET date format string into specifiers (letter, repeat count) and literal text."""
    if len(pattern) == 1:
        if pattern not in STANDARD_FORMATS:
            raise DateError(
                f'{pattern!r} is not a .NET standard date format; use a custom format such as "yyyy-MM-dd"'
            )
        pattern = STANDARD_FORMATS[pattern]
    if not pattern:
        raise DateError("the date format is empty")
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "'\"":
            end = pattern.find(c, i + 1)
            if end < 0:
                raise DateError(f"the date format has an unclosed quote at position {i + 1}")
            tokens.append(_Token("", 0, pattern[i + 1 : end]))
            i = end + 1
        elif c == "\\":
            if i + 1 >= len(pattern):
                raise DateError("the date format ends with a lone backslash")
            tokens.append(_Token("", 0, pattern[i + 1]))
            i += 2
        elif c == "%":  # "%d": the single-letter specifier d inside a custom format
            i += 1
        elif c in _SPECIFIERS:
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            width = j - i
            if c in "fF" and width > 7:
                raise DateError(f"{c * width!r}: .NET allows at most 7 fraction digits")
            tokens.append(_Token(c, width))
            i = j
        else:  # ':' and '/' are the invariant/en-US separators; anything else is copied as is
            tokens.append(_Token("", 0, c))
            i += 1
    return tuple(tokens)


def _offset_text(width: int) -> str:
    # Values are UTC (Microsoft's service runs in UTC, so its "local" offset is zero).
    return {1: "+0", 2: "+00"}.get(width, "+00:00")


def format_date(value: datetime, pattern: str) -> str:
    """Format a UTC datetime with a .NET custom or standard format string (en-US names)."""
    out: list[str] = []
    for tok in tokenize(pattern):
        k, w = tok.kind, tok.width
        if not k:
            out.append(tok.text)
        elif k == "d":
            out.append(
                str(value.day)
                if w == 1
                else f"{value.day:02d}"
                if w == 2
                else _DAYS_ABBR[value.weekday()]
                if w == 3
                else _DAYS[value.weekday()]
            )
        elif k in "fF":
            digits = f"{value.microsecond:06d}0"[:w]
            if k == "F":
                digits = digits.rstrip("0")
                if not digits and out and out[-1].endswith("."):
                    out[-1] = out[-1][:-1]  # .NET drops the decimal point before an empty F
            out.append(digits)
        elif k == "g":
            out.append("A.D.")
        elif k == "h":
            hour = value.hour % 12 or 12
            out.append(str(hour) if w == 1 else f"{hour:02d}")
        elif k == "H":
            out.append(str(value.hour) if w == 1 else f"{value.hour:02d}")
        elif k == "K":
            out.append("Z")
        elif k == "m":
            out.append(str(value.minute) if w == 1 else f"{value.minute:02d}")
        elif k == "M":
            out.append(
                str(value.month)
                if w == 1
                else f"{value.month:02d}"
                if w == 2
                else _MONTHS_ABBR[value.month - 1]
                if w == 3
                else _MONTHS[value.month - 1]
            )
        elif k == "s":
            out.append(str(value.second) if w == 1 else f"{value.second:02d}")
        elif k == "t":
            ampm = "AM" if value.hour < 12 else "PM"
            out.append(ampm[:1] if w == 1 else ampm)
        elif k == "y":
            out.append(
                str(value.year % 100)
                if w == 1
                else f"{value.year % 100:02d}"
                if w == 2
                else f"{value.year:0{w}d}"
            )
        elif k == "z":
            out.append(_offset_text(w))
    return "".join(out)


def display(value: datetime) -> str:
    """How a date prints as an attribute value: ``M/d/yyyy h:mm:ss tt`` in UTC, as CDate documents."""
    return format_date(value, DISPLAY_FORMAT)


_OFFSET = r"(?P<offset>Z|[+-]\d{1,2}(?::?\d{2})?)"


def _group_pattern(tok: _Token, index: int) -> str:
    k, w = tok.kind, tok.width
    name = f"{k}{index}"
    if k == "d":
        if w >= 3:
            names = _DAYS_ABBR if w == 3 else _DAYS
            return "(?:" + "|".join(names) + ")"
        return rf"(?P<{name}>\d{{{w},2}})"
    if k == "M":
        if w >= 3:
            names = _MONTHS_ABBR if w == 3 else _MONTHS
            return rf"(?P<{name}>" + "|".join(names) + ")"
        return rf"(?P<{name}>\d{{{w},2}})"
    if k in "hHms":
        return rf"(?P<{name}>\d{{{w},2}})"
    if k == "f":
        return rf"(?P<{name}>\d{{{w}}})"
    if k == "F":
        return rf"(?P<{name}>\d{{0,{w}}})"
    if k == "y":
        return (
            rf"(?P<{name}>\d{{1,2}})"
            if w == 1
            else rf"(?P<{name}>\d{{2}})"
            if w == 2
            else rf"(?P<{name}>\d{{{w},5}})"
        )
    if k == "t":
        return rf"(?P<{name}>[AaPp])" if w == 1 else rf"(?P<{name}>[AaPp][Mm])"
    if k == "g":
        return r"(?:A\.?D\.?)?"
    if k in "zK":
        optional = "?" if k == "K" else ""
        return rf"(?P<{name}>Z|[+-]\d{{1,2}}(?::?\d{{2}})?){optional}"
    raise DateError(f"unsupported date specifier {k * w!r}")  # pragma: no cover - tokenize only yields these


@lru_cache(maxsize=128)
def _parser(pattern: str) -> tuple[re.Pattern[str], tuple[tuple[str, _Token], ...]]:
    tokens = tokenize(pattern)
    parts: list[str] = []
    fields: list[tuple[str, _Token]] = []
    optional_until = -1
    for index, tok in enumerate(tokens):
        if not tok.kind:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if tok.text == "." and following is not None and following.kind == "F":
                # .NET's ParseExact: "ss.FFF" also reads "08:00:00" (no decimal point, no digits).
                parts.append(r"(?:\.")
                optional_until = index + 1
            else:
                parts.append(re.escape(tok.text))
            continue
        parts.append(_group_pattern(tok, index))
        if index == optional_until:
            parts.append(")?")
        if tok.kind not in "dg" or (tok.kind == "d" and tok.width <= 2):
            fields.append((f"{tok.kind}{index}", tok))
    return re.compile("".join(parts), re.IGNORECASE), tuple(fields)


def _offset(text: str) -> timedelta:
    if text.upper() == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    body = text[1:].replace(":", "")
    hours, minutes = (int(body[:-2]), int(body[-2:])) if len(body) > 2 else (int(body), 0)
    if hours > 14 or minutes > 59:
        raise DateError("the time zone offset is out of range (at most ±14:00)")
    return sign * timedelta(hours=hours, minutes=minutes)


def parse_exact(value: str, pattern: str) -> datetime:
    """Read ``value`` with a .NET format string (like ``DateTime.ParseExact``); the result is UTC.

    Leading and trailing white space is ignored (Microsoft's default AllowLeadingWhite/AllowTrailingWhite);
    an offset (z, zz, zzz, K) converts to UTC; without one the value is taken as UTC.
    """
    regex, fields = _parser(pattern)
    match = regex.fullmatch(value.strip())
    if match is None:
        raise DateError(f"the value does not match the input format {pattern!r}")
    year, month, day, hour, minute, second, micro = 1, 1, 1, 0, 0, 0, 0
    pm: bool | None = None
    offset = timedelta(0)
    for name, tok in fields:
        got = match.group(name)
        if got is None:
            continue
        k, w = tok.kind, tok.width
        if k == "y":
            year = int(got)
            if w <= 2:  # .NET's two-digit year window: 30-99 -> 1900s, 00-29 -> 2000s (TwoDigitYearMax 2029)
                year += 1900 if year >= 30 else 2000
        elif k == "M":
            names = _MONTHS_ABBR if w == 3 else _MONTHS
            month = int(got) if w <= 2 else [n.lower() for n in names].index(got.lower()) + 1
        elif k == "d":
            day = int(got)
        elif k in "hH":
            hour = int(got)
        elif k == "m":
            minute = int(got)
        elif k == "s":
            second = int(got)
        elif k in "fF":
            micro = int((got + "000000")[:6]) if got else 0
        elif k == "t":
            pm = got[0].upper() == "P"
        elif k in "zK":
            offset = _offset(got)
    if pm is not None:
        if not 1 <= hour <= 12:
            raise DateError("an AM/PM hour must be between 1 and 12")
        hour = hour % 12 + (12 if pm else 0)
    try:
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    except ValueError as exc:
        raise DateError(f"the value is not a valid date ({exc})") from exc
    return local.astimezone(UTC)


# --- CDate: the date strings Microsoft's examples use --------------------------------------------

_ISO = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,7}))?)?)?"
    r"\s*" + _OFFSET + "?"
)
_US = re.compile(
    r"(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})"
    r"(?:\s+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?)?\s*(?P<ampm>[AaPp][Mm])?)?"
    r"\s*" + _OFFSET + "?"
)


def parse_date(value: str) -> datetime:
    """CDate's reading of a string: ISO 8601 (``2009-06-15T01:45:30-07:00``, ``2020-03-16-07:00``,
    ``2021-08-24``, Graph's ``2024-01-31T08:00:00Z``) or en-US (``8/25/2021 5:41:18 PM``, what CDate
    itself prints). An offset converts to UTC; no offset means UTC."""
    text = value.strip()
    match = _ISO.fullmatch(text) or _US.fullmatch(text)
    if match is None:
        raise DateError(
            "the value is not a date in ISO 8601 (2024-01-31T08:00:00Z) or M/d/yyyy h:mm:ss tt form; "
            "read other forms with FormatDateTime(source, , inputFormat, outputFormat)"
        )
    g = match.groupdict()
    hour = int(g["h"] or 0)
    ampm = g.get("ampm")
    if ampm:
        if not 1 <= hour <= 12:
            raise DateError("an AM/PM hour must be between 1 and 12")
        hour = hour % 12 + (12 if ampm[0] in "Pp" else 0)
    micro = int(((g["f"] or "") + "000000")[:6])
    offset = _offset(g["offset"]) if g["offset"] else timedelta(0)
    try:
        local = datetime(
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            hour,
            int(g["mi"] or 0),
            int(g["s"] or 0),
            micro,
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise DateError(f"the value is not a valid date ({exc})") from exc
    return local.astimezone(UTC)


def from_filetime(ticks: int) -> datetime | None:
    """AD's 100-ns intervals since 1601 -> UTC datetime; None for AD's "never" values (0, max)."""
    if ticks in FILETIME_NEVER:
        return None
    if ticks < 0:
        raise DateError("an AD date (100-nanosecond intervals since 1601) cannot be negative")
    try:
        return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError as exc:
        raise DateError("the AD date is beyond the year 9999") from exc


def to_filetime(value: datetime) -> int:
    delta = value.astimezone(UTC) - FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# --- DateAdd / DateDiff: Microsoft.VisualBasic.DateAndTime semantics ------------------------------
# https://learn.microsoft.com/dotnet/api/microsoft.visualbasic.dateandtime.dateadd and .datediff:
# interval letters are case-insensitive; d/h/n/s differences truncate the elapsed time; "ww" counts
# calendar weeks (both dates moved back to the Sunday that starts their week), "w" whole 7-day spans;
# m, q and yyyy compare calendar fields. The reference page's DateDiff table (-3449 days, -493 weeks,
# -113 months, -9 years from 8/25/2021 5:41:18 PM to 2012-03-16-07:00) holds only with these rules.

INTERVALS = {
    "yyyy": "year",
    "q": "quarter",
    "m": "month",
    "y": "day",  # VB's DayOfYear: counted as days
    "d": "day",
    "w": "weekday",  # VB's Weekday: whole 7-day spans
    "ww": "week",
    "h": "hour",
    "n": "minute",
    "s": "second",
}


def interval(name: str) -> str:
    key = name.strip().lower()
    if key not in INTERVALS:
        raise DateError(
            f"{name!r} is not a date interval; use yyyy (year), q (quarter), m (month), d (day), "
            "ww (week), h (hour), n (minute) or s (second)"
        )
    return INTERVALS[key]


def _add_months(value: datetime, months: int) -> datetime:
    total = value.year * 12 + value.month - 1 + months
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise DateError("the resulting date is outside the years 1 to 9999")
    day = min(value.day, calendar.monthrange(year, month + 1)[1])  # .NET AddMonths clamps to month end
    return value.replace(year=year, month=month + 1, day=day)


_STEPS: dict[str, Callable[[int], timedelta]] = {
    "day": lambda n: timedelta(days=n),
    "weekday": lambda n: timedelta(days=n),
    "week": lambda n: timedelta(weeks=n),
    "hour": lambda n: timedelta(hours=n),
    "minute": lambda n: timedelta(minutes=n),
    "second": lambda n: timedelta(seconds=n),
}


def date_add(unit: str, number: int, value: datetime) -> datetime:
    try:
        if unit == "year":
            return _add_months(value, 12 * number)
        if unit == "quarter":
            return _add_months(value, 3 * number)
        if unit == "month":
            return _add_months(value, number)
        return value + _STEPS[unit](number)
    except OverflowError as exc:
        raise DateError("the resulting date is outside the years 1 to 9999") from exc


def _truncate(seconds: float) -> int:
    return int(seconds)  # toward zero, as .NET's (long) cast of TimeSpan.TotalDays and friends


def _before_week(value: datetime) -> datetime:
    """VB's ``Date.AddDays(-GetDayOfWeek(Date, Sunday))``: back 1 (Sunday) to 7 (Saturday) days, time kept."""
    return value - timedelta(days=(value.weekday() + 1) % 7 + 1)


def date_diff(unit: str, first: datetime, second: datetime) -> int:
    if unit == "year":
        return second.year - first.year
    if unit == "quarter":
        return (second.year - first.year) * 4 + (second.month - 1) // 3 - (first.month - 1) // 3
    if unit == "month":
        return (second.year - first.year) * 12 + second.month - first.month
    elapsed = (second - first).total_seconds()
    if unit == "day":
        return _truncate(elapsed / 86_400)
    if unit == "weekday":
        return _truncate(_truncate(elapsed / 86_400) / 7)
    if unit == "week":
        days = _truncate((_before_week(second) - _before_week(first)).total_seconds() / 86_400)
        return _truncate(days / 7)  # C#'s long division truncates toward zero
    if unit == "hour":
        return _truncate(elapsed / 3_600)
    if unit == "minute":
        return _truncate(elapsed / 60)
    return _truncate(elapsed)
