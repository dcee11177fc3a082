"""The status page's activity chart: provisioning-log rows per day, stacked by result, drawn by the server as
SVG with its text (dates on the axis, each day's total, a scale, a legend) and a table with the same numbers
as its text alternative. Pure: the caller gives the rows and today's date.

Hand-drawn rather than a chart library: the console allows no inline script (its Content-Security-Policy), a
client-side library would need one plus a vendored bundle, and this chart is a few rectangles and labels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

# The results a log row can have, in stacking order (bottom first), with their colours and words. Colours are
# Pico's palette, each with at least 3:1 contrast against the white background (WCAG 1.4.11, non-text).
SERIES: tuple[tuple[str, str, str], ...] = (
    ("success", "#2a7a3b", "success"),
    ("info", "#5d6b89", "operator action"),
    ("skipped", "#8891a4", "skipped"),
    ("held", "#b86a00", "held"),
    ("pending", "#6f42c1", "pending"),
    ("interrupted", "#8e44ad", "interrupted"),
    ("error", "#c52f21", "error"),
)
COLOURS = {key: colour for key, colour, _ in SERIES}
WORDS = {key: word for key, _, word in SERIES}


def nice_ceiling(n: int) -> int:
    """The axis's top: the smallest 1, 2 or 5 times a power of ten that is at least ``n`` (at least 1)."""
    if n <= 1:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= n:
                return m * step
        step *= 10


def chart(
    per_day: Iterable[Mapping[str, Any]],
    *,
    today: dt.date,
    days: int = 14,
    width: int = 640,
    height: int = 220,
) -> dict[str, Any]:
    """The chart of ``per_day`` rows ({"day": "YYYY-MM-DD", "status": result, "count": n}) over the ``days``
    days ending ``today`` (days without rows are on the axis too): bars, axis labels, gridlines, legend and the
    table rows. Coordinates are in the SVG's viewBox (``width`` x ``height``)."""
    dates = [(today - dt.timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    counts: dict[str, dict[str, int]] = {d: {} for d in dates}
    for p in per_day:
        day, status, n = str(p["day"]), str(p["status"]), int(p["count"])
        if day in counts and n > 0:
            counts[day][status] = counts[day].get(status, 0) + n
    totals = {d: sum(counts[d].values()) for d in dates}
    top = nice_ceiling(max(totals.values(), default=0))
    left, right, above, below = 44, 8, 18, 40  # room for the scale, the totals and the dates
    plot_w, plot_h = width - left - right, height - above - below
    slot = plot_w / days
    bars: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    every = 1 if days <= 7 else 2  # a date under every other bar keeps the labels apart
    for i, d in enumerate(dates):
        x = left + i * slot
        y = float(above + plot_h)
        for key, colour, word in SERIES:
            n = counts[d].get(key, 0)
            if not n:
                continue
            h = n / top * plot_h
            y -= h
            bars.append(
                {
                    "x": x + 3,
                    "y": y,
                    "w": max(slot - 6, 1),
                    "h": h,
                    "fill": colour,
                    "title": f"{d}: {n} {word}",
                }
            )
        date = dt.date.fromisoformat(d)
        labels.append(
            {
                "x": x + slot / 2,
                "total": totals[d],
                "total_y": y - 4 if totals[d] else above + plot_h - 4,
                "date": f"{date:%b} {date.day}" if i % every == (days - 1) % every else "",
            }
        )
    grid = [
        {"y": above + plot_h - v / top * plot_h, "value": v} for v in sorted({0, top // 2, top}) if v or top
    ]
    shown = {k for d in dates for k in counts[d]}
    legend = [{"key": k, "fill": c, "word": w} for k, c, w in SERIES if k in shown]
    table = [
        {"day": d, "total": totals[d], "by": {WORDS.get(k, k): n for k, n in sorted(counts[d].items())}}
        for d in dates
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "base": above + plot_h,
        "date_y": above + plot_h + 16,
        "bars": bars,
        "labels": labels,
        "grid": grid,
        "legend": legend,
        "table": table,
        "total": sum(totals.values()),
        "days": days,
        "first": dates[0],
        "last": dates[-1],
    }
