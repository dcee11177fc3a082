"""The read ahead's thread (writeback.adapters.directory.readahead) with a scripted directory: closed while
it reads, it stops at the next account and counts the search it broke off as no failure; a failure is kept
for the plan, which then reads itself."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from writeback.adapters.directory.adapter import LdapDirectory
from writeback.adapters.directory.readahead import ReadAhead
from writeback.core.model import DirectoryAccount
from writeback.core.ports import UsnWatermark
from writeback.errors import DirectoryUnavailable


class Sibling:
    """The read ahead's own directory: accounts handed out one by one until told to stop, or a failure."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.stats: dict[str, int] = Counter()
        self.reading = threading.Event()
        self.closed = False

    def read_group_stamps(self, anchors: Any, prefixes: Any) -> tuple[UsnWatermark, list[Any]]:
        return UsnWatermark("dc", 7), []

    def read_every_account(self, each: Callable[[DirectoryAccount], object]) -> None:
        self.stats["search"] += 1
        if self.fail:
            self.stats["search_errors"] += 1
            raise DirectoryUnavailable("the DC went away")
        n = 0
        try:
            while True:  # a search that only ends when the read ahead is closed
                each(
                    DirectoryAccount(f"CN=u{n},DC=t", f"00000000-0000-0000-0000-{n:012d}", f"S-1-5-21-1-{n}")
                )
                n += 1
                self.reading.set()
        except BaseException:
            self.stats["search_errors"] += 1  # as LdapSession.search counts any exception
            raise

    def read_managed_groups(self, *args: Any) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


class Directory:
    def __init__(self, sibling: Sibling) -> None:
        self._sibling = sibling
        self.counted: list[tuple[dict[str, int], float, float]] = []

    def sibling(self) -> Sibling:
        return self._sibling

    def count_read_ahead(self, stats: dict[str, int], seconds: float, waited: float) -> None:
        self.counted.append((dict(stats), seconds, waited))


def test_closed_while_reading_it_stops_and_counts_no_failure() -> None:
    sibling = Sibling()
    directory = Directory(sibling)
    ahead = ReadAhead(cast(LdapDirectory, directory), ("a",), ("m",), ("Group_",))
    assert sibling.reading.wait(5)
    ahead.close()
    assert not ahead._thread.is_alive() and sibling.closed
    (stats, seconds, _), *more = [c for c in directory.counted if c[0]]
    assert stats["search"] == 1 and stats.get("search_errors", 0) == 0 and seconds > 0 and not more
    assert ahead.accounts() is None  # closed: nothing handed over


def test_a_failed_read_is_kept_for_the_plan_which_reads_itself(caplog: Any) -> None:
    sibling = Sibling(fail=True)
    directory = Directory(sibling)
    with ReadAhead(cast(LdapDirectory, directory), ("a",), ("m",), ("Group_",)) as ahead:
        assert ahead.head() is not None  # the head was read before the failure
        assert ahead.accounts() is None
        assert "the DC went away" in caplog.text
    assert directory.counted[-1][0]["search_errors"] == 1  # a real failure stays counted
