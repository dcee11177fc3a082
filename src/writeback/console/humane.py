"""Times and numbers as the console shows them to a person. Pure: every function takes "now" from its caller.

Every time on a page is one ``<time>`` element made by :func:`time_element` (the Jinja filter ``when``): its
``datetime`` attribute is the ISO 8601 instant, its text is relative ("2 min ago", "in 5 min"), and its
``title`` is the full UTC time, shown on hover. Server-rendered: a page read an hour later says what it said
when it was loaded, and the status page refreshes itself every few seconds anyway.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from markupsafe import Markup, escape

_UNITS = ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"), (3600, "h"))


def to_seconds(value: Any) -> float | None:
    """Unix seconds from Unix seconds or an ISO 8601 string (a naive one is UTC); None for None, "" or junk."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def relative(then: float, now: float) -> str:
    """``then`` seen from ``now``: "just now", "45 s ago", "2 min ago", "3 h ago", "yesterday", "5 days ago",
    "in 10 min"… Rounded down, as a person says it ("1 h ago" until two hours have passed)."""
    delta = now - then
    future = delta < 0
    s = abs(delta)
    if s < 5:
        return "just now"
    if s < 60:
        text = f"{int(s)} s"
    elif s < 3600:
        text = f"{int(s // 60)} min"
    else:
        text = ""
        for size, unit in _UNITS:
            if s >= size:
                n = int(s // size)
                if unit == "day" and n == 1 and not future:
                    return "yesterday"
                if unit == "day" and n == 1:
                    return "tomorrow"
                text = f"{n} h" if unit == "h" else f"{n} {unit}{'' if n == 1 else 's'}"
                break
    return f"in {text}" if future else f"{text} ago"


def full_time(ts: float) -> str:
    """The full UTC time of a hover title: "2026-12-07 05:14:03 UTC"."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_z(ts: float) -> str:
    """ISO 8601 in UTC with a Z, to the second: a ``<time datetime>`` value."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_element(value: Any, now: float, empty: str = "never") -> Markup:
    """``<time datetime="ISO" title="full time">2 min ago</time>``; ``empty`` (escaped) for no time."""
    ts = to_seconds(value)
    if ts is None:
        return escape(empty)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso_z(ts), full_time(ts), relative(ts, now)
    )


def duration(seconds: float | None) -> str:
    """A length of time: "45 s", "12 min", "2 h 5 min", "3 days"."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    days = s // 86400
    return f"{days} day{'' if days == 1 else 's'}"
