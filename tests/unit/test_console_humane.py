"""The console's pure helpers: human times (writeback.console.humane) and the activity chart
(writeback.console.chart)."""

from __future__ import annotations

import datetime as dt

import pytest

from writeback.console.chart import COLOURS, chart, nice_ceiling
from writeback.console.humane import duration, relative, time_element, to_seconds

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (0, "just now"),
        (4, "just now"),
        (45, "45 s ago"),
        (60, "1 min ago"),
        (119, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (7199, "1 h ago"),
        (86399, "23 h ago"),
        (86400, "yesterday"),
        (2 * 86400, "2 days ago"),
        (8 * 86400, "1 week ago"),
        (40 * 86400, "1 month ago"),
        (800 * 86400, "2 years ago"),
        (-300, "in 5 min"),
        (-2 * 3600, "in 2 h"),
        (-86400, "tomorrow"),
    ],
)
def test_relative_time_reads_as_a_person_says_it(ago: float, text: str) -> None:
    assert relative(NOW - ago, NOW) == text


def test_a_time_element_has_the_instant_the_full_time_on_hover_and_relative_text() -> None:
    html = str(time_element(NOW - 120, NOW))
    assert html == ('<time datetime="2027-01-15T07:58:00Z" title="2027-01-15 07:58:00 UTC">2 min ago</time>')
    # ISO strings as the API gives them, with an offset or a Z, mean the same instant.
    assert str(time_element("2027-01-15T07:58:00+00:00", NOW)) == html
    assert str(time_element("2027-01-15T07:58:00Z", NOW)) == html


def test_no_time_is_the_escaped_fallback_text() -> None:
    assert str(time_element(None, NOW)) == "never"
    assert str(time_element("", NOW, "not planned")) == "not planned"
    assert str(time_element(None, NOW, "<b>")) == "&lt;b&gt;"
    assert to_seconds("not a time") is None and to_seconds(float("nan")) is None


def test_durations() -> None:
    assert [duration(s) for s in (None, 5, 75, 3600, 3900, 2 * 86400)] == [
        "",
        "5 s",
        "1 min",
        "1 h",
        "1 h 5 min",
        "2 days",
    ]


def test_the_axis_top_is_a_round_number() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 2, 3, 7, 11, 99, 101, 4000)] == [
        1,
        1,
        2,
        5,
        10,
        20,
        100,
        200,
        5000,
    ]


def test_the_chart_has_every_day_dated_counted_stacked_and_a_legend_of_what_it_shows() -> None:
    today = dt.date(2026, 12, 7)
    rows = [
        {"day": "2026-12-07", "status": "success", "count": 6},
        {"day": "2026-12-07", "status": "error", "count": 2},
        {"day": "2026-12-01", "status": "info", "count": 3},
        {"day": "2026-11-01", "status": "success", "count": 99},  # before the 14 days: not shown
    ]
    c = chart(rows, today=today)
    assert (c["first"], c["last"], c["days"]) == ("2026-11-24", "2026-12-07", 14)
    assert [r["day"] for r in c["table"]][:2] == ["2026-11-24", "2026-11-25"] and len(c["table"]) == 14
    assert c["total"] == 11
    table = {r["day"]: r for r in c["table"]}
    assert table["2026-12-07"]["total"] == 8 and table["2026-12-07"]["by"] == {"error": 2, "success": 6}
    assert table["2026-12-01"]["by"] == {"operator action": 3} and table["2026-11-30"]["total"] == 0
    # The scale: 0, half and a round top above the busiest day (8 -> 10).
    assert [g["value"] for g in c["grid"]] == [0, 5, 10]
    # Dates under the bars (every other day, the last one always), totals above the days that have rows.
    labels = c["labels"]
    assert labels[-1]["date"] == "Dec 7" and labels[-2]["date"] == "" and labels[-3]["date"] == "Dec 5"
    assert [lab["total"] for lab in labels if lab["total"]] == [3, 8]
    # Bars stack from the base line, each as tall as its share of the top.
    today_bars = [b for b in c["bars"] if b["title"].startswith("2026-12-07")]
    assert [b["title"] for b in today_bars] == ["2026-12-07: 6 success", "2026-12-07: 2 error"]
    plot = c["base"] - 18
    assert today_bars[0]["h"] == pytest.approx(plot * 6 / 10)
    assert today_bars[0]["y"] + today_bars[0]["h"] == pytest.approx(c["base"])
    assert today_bars[1]["y"] + today_bars[1]["h"] == pytest.approx(today_bars[0]["y"])
    assert [k["key"] for k in c["legend"]] == ["success", "info", "error"]
    assert all(k["fill"] == COLOURS[k["key"]] for k in c["legend"])


def test_an_empty_chart_still_has_its_days_and_no_bars() -> None:
    c = chart([], today=dt.date(2026, 12, 7))
    assert c["bars"] == [] and c["legend"] == [] and c["total"] == 0 and len(c["labels"]) == 14
