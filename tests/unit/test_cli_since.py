"""`writeback log --since`: relative ages and ISO times; anything else is a usage error (exit 64) that names the
option and says what to write (the parsing itself: tests/unit/test_logquery.py)."""

from __future__ import annotations

import time

import pytest

from writeback.cli.main import EXIT_USAGE, build_parser, main


def test_the_parsed_value_is_a_time() -> None:
    args = build_parser().parse_args(["log", "--since", "90m"])
    assert abs(time.time() - 5400 - args.since) < 5
    assert build_parser().parse_args(["log"]).since is None


@pytest.mark.parametrize("bad", ["yesterday", "10w", "22/11/2026"])
def test_anything_else_is_a_usage_error_of_log(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["log", "--since", bad])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: writeback log ")
    assert f"writeback log: error: argument --since: {bad!r}: use 90m, 12h, 7d or an ISO time" in err
