"""The apply's writer thread (issue 27): one journal batch is written while the engine journals the next, and
the write-ahead journal's rules still hold: no write without a committed pending row, nothing left pending
after a stop, an abort, a lost lease or an error, rows of changes never attempted dropped."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from tests.unit.builders import settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_engine import accounts, gid, group, users
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import JOURNAL_BATCH, Engine
from writeback.app.writer import SWITCH_INTERVAL, WriterThread
from writeback.core.planning import Plan
from writeback.core.ports import PENDING, LogRecord
from writeback.errors import DirectoryUnavailable, LeaseLostError, StateError

WAIT = 10.0  # seconds a test waits for the other thread before it calls the overlap missing


class Recorder:
    """The order of events across both threads: ("journaled", cloud id) once a batch's rows are committed,
    ("write", dn) when an LDAP write starts, and the thread each happened in."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def add(self, kind: str, key: str) -> None:
        with self.lock:
            self.events.append((kind, key, threading.current_thread().name))


class SlowDirectory(FakeDirectory):
    """A FakeDirectory whose writes are recorded and can be held until something happens elsewhere."""

    def __init__(self, recorder: Recorder, **kw: Any) -> None:
        super().__init__(**kw)
        self.recorder = recorder
        self.hold_first: threading.Event | None = None  # the first create's answer waits for it
        self.held_ok: bool | None = None
        self.started = threading.Event()  # set once the first create is sent
        self.fail: Callable[[int], BaseException | None] = lambda _n: None
        self.creates = 0
        self.counts = False  # counts its writes as LdapDirectory.stats does (sent once the fence let them by)

    @property
    def stats(self) -> dict[str, int]:
        return {"add": sum(1 for op, _ in self.ops if op == "add")} if self.counts else {}

    def create_group(
        self, dn: str, attributes: Mapping[str, str | int | tuple[str, ...]], members: Sequence[str]
    ) -> None:
        self.creates += 1
        self.recorder.add("write", dn)
        exc = self.fail(self.creates)
        if exc is not None:
            raise exc
        super().create_group(dn, attributes, members)
        self.started.set()
        if self.creates == 1 and self.hold_first is not None:  # sent; its answer is slow
            self.held_ok = self.hold_first.wait(WAIT)


def journaling_store(
    recorder: Recorder, journaled: Callable[[int], None] = lambda _n: None, fail_batch: int = 0
) -> SqliteStore:
    """An SQLite store (in memory) whose log_rows of changes tells ``journaled`` the how-manieth batch it
    committed (1, 2, ...), and records each change as journaled once committed. Batch ``fail_batch`` fails as
    a full disk would: nothing of it committed."""
    store = SqliteStore(":memory:")
    real = store.log_rows
    batches = 0

    def log_rows(records: Sequence[LogRecord]) -> list[int]:
        nonlocal batches
        changes = [r for r in records if r.action == "create"]
        if changes and batches + 1 == fail_batch:
            raise StateError("state store: database or disk is full")
        ids = real(records)
        if changes:
            for r in changes:
                recorder.add("journaled", r.cloud_id or "")
            batches += 1
            journaled(batches)
        return ids

    store.log_rows = log_rows  # type: ignore[method-assign]
    return store


def world(
    groups: int, journaled: Callable[[int], None] = lambda _n: None, fail_batch: int = 0
) -> tuple[Engine, SlowDirectory, SqliteStore, Recorder, Plan]:
    recorder = Recorder()
    cloud = FakeCloud(users=users(6), groups={gid(i): group(i, ["u0"]) for i in range(groups)})
    directory = SlowDirectory(recorder, accounts=accounts(6))
    store = journaling_store(recorder, journaled, fail_batch)
    engine = Engine(settings(), cloud, directory, store)
    engine.sync()
    return engine, directory, store, recorder, engine.plan()


def marked_since(store: SqliteStore, seq: int) -> frozenset[str]:
    """The groups marked pending (to compare whole) after the mark counter was at ``seq``."""
    return frozenset(store.pending_groups(after=seq).groups)


def mark_counter(store: SqliteStore) -> int:
    return int(store.get_meta("pending_seq") or 0)


def creates(store: SqliteStore) -> list[str]:
    return [e.result for e in store.read_log(limit=10_000) if e.action == "create"]


def test_the_next_batch_is_journaled_while_the_first_is_being_written() -> None:
    second = threading.Event()
    engine, directory, store, recorder, plan = world(
        JOURNAL_BATCH + 3, lambda n: second.set() if n == 2 else None
    )
    directory.hold_first = second  # the first LDAP write lasts until the second batch is journaled
    result = engine.apply(plan)
    assert directory.held_ok, "the second batch was not journaled while the first was being written"
    assert result.ok and len(result.results) == JOURNAL_BATCH + 3
    assert creates(store) == ["success"] * (JOURNAL_BATCH + 3)
    writers = {thread for kind, _, thread in recorder.events if kind == "write"}
    journals = {thread for kind, _, thread in recorder.events if kind == "journaled"}
    assert writers == {"writeback-writer"} and threading.current_thread().name in journals


def test_every_change_is_journaled_before_its_first_write() -> None:
    engine, directory, _store, recorder, plan = world(2 * JOURNAL_BATCH + 5)
    result = engine.apply(plan)
    assert result.ok
    by_dn = {c.dn: c.cloud_id for c in plan.changes}
    journaled: set[str] = set()
    for kind, key, _ in recorder.events:
        if kind == "journaled":
            journaled.add(key)
        else:
            assert by_dn[key] in journaled, f"{key} was written before its pending row was committed"
    assert len(journaled) == len(plan.changes) == directory.creates


def test_a_stop_drops_the_rows_of_the_batch_journaled_ahead() -> None:
    second = threading.Event()
    engine, directory, store, _rec, plan = world(
        2 * JOURNAL_BATCH, lambda n: second.set() if n == 2 else None
    )
    directory.hold_first = second
    asked = iter(range(10_000))
    result = engine.apply(plan, should_stop=lambda: next(asked) >= 3)
    assert directory.held_ok, "the second batch was journaled ahead"
    assert result.aborted == "stop requested" and len(result.results) == 3
    # The second batch's rows were committed as pending while the first was written: dropped, as if never logged.
    assert creates(store) == ["success"] * 3 and directory.creates == 3


def test_an_unreachable_directory_aborts_and_leaves_no_row_pending() -> None:
    engine, directory, store, _rec, plan = world(JOURNAL_BATCH + 10)
    directory.fail = lambda n: DirectoryUnavailable("connection to ldap://dc lost") if n == 5 else None
    result = engine.apply(plan)
    assert result.aborted is not None and result.aborted.startswith("directory unavailable")
    assert creates(store) == ["success"] * 4 + ["error"]
    assert PENDING not in {e.result for e in store.read_log(limit=10_000)}
    assert engine.store.applied_fingerprints() == {}, "an aborted apply records no converged group"


def test_an_error_in_the_writer_is_raised_in_the_engine_thread_once_the_log_is_finished() -> None:
    engine, directory, store, _rec, plan = world(JOURNAL_BATCH + 10)
    directory.fail = lambda n: RuntimeError("a bug in a write") if n == 3 else None
    with pytest.raises(RuntimeError, match="a bug in a write"):
        engine.apply(plan)
    rows = [e for e in store.read_log(limit=10_000) if e.action == "create"]
    assert [e.result for e in rows] == ["success", "success", "error"]
    assert rows[-1].error == "stopped by RuntimeError: a bug in a write"


def test_a_lease_lost_between_batches_halts_the_writer_and_marks_the_last_group_written() -> None:
    released = threading.Event()
    lost = False
    calls = 0

    def guard() -> None:  # the lease's database check, before each batch (engine thread)
        nonlocal calls, lost
        calls += 1
        if calls == 2:  # before the second batch, while the first change is being written: the lease ended
            assert directory.started.wait(WAIT)
            lost = True
            released.set()
            raise LeaseLostError("the leader lease with fencing token 7 ended")

    def guard_write() -> None:  # the lease's fence before every LDAP write (writer thread), as LeaderLease's
        if lost:
            raise LeaseLostError("this instance no longer holds the leader lease")

    engine, directory, store, _rec, plan = world(JOURNAL_BATCH + 10)
    directory.hold_first = released
    directory.fence_writes(guard_write)
    seq = mark_counter(store)
    with pytest.raises(LeaseLostError, match="token 7"):
        engine.apply(plan, guard=guard)
    assert directory.held_ok
    assert len(directory.groups) == 1, "nothing is written after the lease was found lost"
    results = creates(store)
    # The writer stops before its next change, or the fence refuses that change's write: either way nothing
    # stays pending and the rows of the changes never attempted are gone.
    assert results in (["success"], ["success", "error"])
    ordered = [c.cloud_id for c in plan.changes]
    assert marked_since(store, seq) == set(ordered[: len(results)]), "the groups to compare whole"


@pytest.mark.parametrize("counted", [True, False])
def test_a_lease_lost_before_a_change_is_sent_drops_its_row_and_marks_the_group_before(counted: bool) -> None:
    """The fence refuses the third change's first write. A directory that counts its writes shows nothing of
    it was sent: never attempted, its row dropped (as the engine's own lease check before a change did). One
    that does not count them: the change may be half written, so it is logged as stopped and compared too."""
    engine, directory, store, _rec, plan = world(6)
    directory.counts = counted
    directory.fail = lambda n: LeaseLostError("no longer holds the leader lease") if n == 3 else None
    seq = mark_counter(store)
    with pytest.raises(LeaseLostError):
        engine.apply(plan)
    ordered = [c.cloud_id for c in plan.changes]
    if counted:
        assert creates(store) == ["success", "success"]
        assert marked_since(store, seq) == {ordered[1]}
    else:
        assert creates(store) == ["success", "success", "error"]
        assert marked_since(store, seq) == {ordered[1], ordered[2]}


def test_a_journal_that_fails_halts_the_writer_and_leaves_no_row_pending() -> None:
    engine, directory, store, _rec, plan = world(3 * JOURNAL_BATCH, fail_batch=2)
    with pytest.raises(StateError, match="disk is full"):
        engine.apply(plan)
    results = creates(store)
    # The writer was halted in its first batch (before its first change or later); nothing of the second was
    # written, and every change written has its row.
    assert PENDING not in results and set(results) <= {"success"}
    assert len(results) == len(directory.groups) == directory.creates <= JOURNAL_BATCH


def test_the_writer_thread_gives_back_every_batch_handed_over_even_after_a_stop() -> None:
    written: list[int] = []
    switch: list[float] = []
    before = sys.getswitchinterval()

    def write(batch: int) -> bool:
        written.append(batch)
        switch.append(sys.getswitchinterval())
        return batch != 2  # the second batch stops the writer

    writer: WriterThread[int] = WriterThread(write)
    for batch in (1, 2, 3, 4):
        writer.submit(batch)
    assert writer.done() == 1 and writer.in_hand == 3
    assert writer.close() == [2, 3, 4] and writer.in_hand == 0
    assert written == [1, 2] and writer.halted and writer.error is None
    # While it writes, the writer gets the GIL back quickly; afterwards the interpreter is as it was.
    assert set(switch) == {min(before, SWITCH_INTERVAL)} and sys.getswitchinterval() == before
