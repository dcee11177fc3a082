"""The provisioning log's filters and times, as the CLI (`writeback log`) and the console (/log, /api/log) read
and show them: one parser for a time filter, the actions and results a row can have (one list each: :mod:`writeback.core.journal`), one format
for a time.

A time filter is an age ("90m", "12h", "7d", "30s": that long ago) or an ISO 8601 date or time, UTC unless it
names a zone. A bad one raises :class:`~writeback.errors.ConfigError`; the CLI maps it to a usage error (exit
64), the console to HTTP 400.
"""

from __future__ import annotations

import datetime as dt
import time

from writeback.core.journal import LOG_ACTIONS, LOG_RESULTS
from writeback.errors import ConfigError

__all__ = ["LOG_ACTIONS", "LOG_RESULTS", "iso_time", "parse_since", "parse_until"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAY = 86400.0


def iso_time(ts: float) -> str:
    """A log time (Unix seconds) as ISO 8601 UTC to the second, e.g. 2026-12-07T01:53:07+00:00: the form the
    console's API gives."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def parse_since(text: str | None, name: str = "--since", *, now: float | None = None) -> float | None:
    """The Unix time a "since" filter means: ``None`` for no filter (empty or absent), an age before ``now``
    (default: the current time), or an ISO 8601 date or time (UTC unless it names a zone).

    ``name`` is the option or parameter the value came from (empty: the caller names it); the error names it
    and says what to write."""
    return _parse(text, name, now=now, whole_day=False)


def parse_until(text: str | None, name: str = "until", *, now: float | None = None) -> float | None:
    """Like :func:`parse_since`, but a date alone means the end of that day (so until=2026-11-22 includes the
    22nd)."""
    return _parse(text, name, now=now, whole_day=True)


def _parse(text: str | None, name: str, *, now: float | None, whole_day: bool) -> float | None:
    if not text:
        return None
    value = text.strip()
    if value[-1:] in _UNITS and value[:-1].isdigit():  # isdigit: no sign, no fraction ("-5m", "1.5h" fail)
        return (time.time() if now is None else now) - int(value[:-1]) * _UNITS[value[-1]]
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{f'{name} ' if name else ''}{text!r}: use 90m, 12h, 7d or an ISO time such as 2026-11-22T08:00 "
            "(UTC unless it names a zone, e.g. 2026-11-22T08:00+01:00)"
        ) from None
    ts = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    return ts + _DAY if whole_day and _is_date(value) else ts


def _is_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True
