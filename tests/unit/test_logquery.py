"""The log's time filters and time format, shared by `writeback log` and the console (one parser, one format)."""

from __future__ import annotations

import datetime as dt

import pytest

from writeback.app.logquery import LOG_ACTIONS, LOG_RESULTS, iso_time, parse_since, parse_until
from writeback.errors import ConfigError

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC).timestamp()


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("90m", 5400), ("12h", 43200), ("7d", 604800)])
def test_an_age_is_that_long_before_now(text: str, seconds: int) -> None:
    assert parse_since(text, now=NOW) == NOW - seconds
    assert parse_until(text, now=NOW) == NOW - seconds


def test_an_age_without_now_is_before_the_current_time() -> None:
    import time

    value = parse_since("1h")
    assert value is not None and abs(time.time() - 3600 - value) < 5


def test_no_filter() -> None:
    assert parse_since(None) is None and parse_since("") is None and parse_until(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T08:00", utc(2026, 11, 22, 8)),  # no zone: UTC
        ("2026-11-22 08:00:30", utc(2026, 11, 22, 8, 0, 30)),
        ("2026-11-22T09:00+01:00", utc(2026, 11, 22, 8)),
        ("2026-11-22T08:00Z", utc(2026, 11, 22, 8)),
        ("2026-11-22", utc(2026, 11, 22)),
    ],
)
def test_iso_times_are_utc_unless_they_name_a_zone(text: str, expected: float) -> None:
    assert parse_since(text) == expected


def test_until_a_date_means_the_end_of_that_day_and_a_time_means_that_time() -> None:
    assert parse_until("2026-11-22") == utc(2026, 11, 23)
    assert parse_until("2026-11-22T08:00") == utc(2026, 11, 22, 8)
    assert parse_until("2026-11-22 08:00") == utc(2026, 11, 22, 8)  # a space is a time too, not a date


@pytest.mark.parametrize("bad", ["yesterday", "10w", "h", "-5m", "1.5h", "22/11/2026", "2026-13-01", "7 d"])
def test_anything_else_names_the_option_and_says_what_to_write(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_since(bad, "--since")
    assert str(info.value).startswith(f"--since {bad!r}: use 90m, 12h, 7d or an ISO time such as")
    with pytest.raises(ConfigError, match=r"^until '"):
        parse_until(bad)


def test_iso_time_is_the_consoles_format() -> None:
    from writeback.app.views import iso

    ts = utc(2026, 12, 7, 1, 53, 7) + 0.6
    assert iso_time(ts) == "2026-12-07T01:53:07+00:00" == iso(ts)


def test_the_console_parses_its_filters_with_the_same_functions() -> None:
    from writeback.app.views import log_query

    q = log_query({"since": "2026-11-22T09:00+01:00", "until": "2026-11-22"})
    assert (q.since, q.until) == (utc(2026, 11, 22, 8), utc(2026, 11, 23))
    q = log_query({"since": "12h"})  # an age works in the console too
    assert q.since is not None and q.until is None
    with pytest.raises(ValueError, match=r"^since 'yesterday': use 90m, 12h, 7d or an ISO time"):
        log_query({"since": "yesterday"})


def test_the_known_actions_and_results() -> None:
    assert {"create", "skip", "skip_members", "held", "staged_delete", "provision"} <= set(LOG_ACTIONS)
    assert len(set(LOG_ACTIONS)) == len(LOG_ACTIONS)
    assert set(LOG_RESULTS) == {"success", "error", "skipped", "held", "info", "pending", "interrupted"}
