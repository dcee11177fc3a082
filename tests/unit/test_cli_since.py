"""`writeback log --since`: relative ages and ISO times, and a clear error for anything else."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from writeback.cli.main import _since
from writeback.errors import ConfigError


def test_relative_ages() -> None:
    assert _since(None) is None and _since("") is None
    for text, seconds in (("30s", 30), ("90m", 5400), ("12h", 43200), ("7d", 604800)):
        value = _since(text)
        assert value is not None and abs(time.time() - seconds - value) < 5


def test_iso_times_are_utc_unless_a_zone_is_given() -> None:
    assert _since("2026-11-22T08:00") == dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC).timestamp()
    assert _since("2026-11-22T09:00+01:00") == dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize("bad", ["yesterday", "10w", "h", "22/11/2026"])
def test_anything_else_says_what_to_write(bad: str) -> None:
    with pytest.raises(ConfigError, match="use 90m, 12h, 7d or an ISO time"):
        _since(bad)
