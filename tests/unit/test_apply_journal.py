"""The apply's write-ahead journal: log rows written as pending in batches before the LDAP writes, finished in
one transaction per batch, and rows a killed run left pending marked interrupted by the next apply."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.testbed.stores import BACKENDS, open_store
from tests.unit.builders import settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_engine import accounts, gid, group, users
from writeback.adapters.state.sqlbase import INTERRUPTED
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import JOURNAL_BATCH, JOURNAL_BATCH_VALUES, Engine, journal_batches, write_order
from writeback.core.model import CloudGroup, MemberRef
from writeback.core.planning import Change, ChangeKind
from writeback.core.ports import PENDING, LogRecord
from writeback.errors import DirectoryWriteError


def change(i: int, members: int = 0) -> Change:
    return Change(
        ChangeKind.CREATE, gid(i), f"CN=G{i},OU=X", members=tuple(f"CN=u{j}" for j in range(members))
    )


def test_batches_cover_every_change_in_order_and_respect_both_limits() -> None:
    changes = [change(i) for i in range(JOURNAL_BATCH * 2 + 5)]
    changes[10] = change(10, members=JOURNAL_BATCH_VALUES)  # a big group ends its batch
    batches = list(journal_batches(changes))
    assert [c for _, b in batches for c in b] == changes
    assert [first for first, _ in batches] == [0, 11, 11 + JOURNAL_BATCH]
    assert all(len(b) <= JOURNAL_BATCH for _, b in batches)
    assert list(journal_batches([])) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_are_pending_while_written_and_finished_together(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    ids = store.log_rows([LogRecord("r1", "create", cloud_id="a"), LogRecord("r1", "create", cloud_id="b")])
    assert [e.result for e in store.read_log()] == [PENDING, PENDING]
    store.finish_log([(ids[0], "success", None, 1234.5)], dropped=[ids[1]], applied={"a": "CN=A,OU=X"})
    (entry,) = store.read_log()
    assert (entry.cloud_id, entry.result, entry.time) == ("a", "success", 1234.5), "the time of its write"
    assert store.applied_dns() == {"a": "CN=A,OU=X"}
    store.finish_log([], forgotten=["a"])
    assert store.applied_dns() == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_pending_rows_of_another_run_become_interrupted(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store = open_store(request, tmp_path, backend)
    store.log_rows([LogRecord("killed", "create", cloud_id="a"), LogRecord("now", "create", cloud_id="b")])
    assert store.close_pending_log("now") == 1
    by_run = {e.run_id: e for e in store.read_log()}
    assert by_run["killed"].result == INTERRUPTED and "may or may not" in (by_run["killed"].error or "")
    assert by_run["now"].result == PENDING
    assert store.close_pending_log("now") == 0


def test_an_apply_logs_every_change_with_its_result_and_no_row_stays_pending() -> None:
    cloud = FakeCloud(
        users=users(6), groups={gid(i): group(i, ["u0", "u1"]) for i in range(JOURNAL_BATCH + 3)}
    )
    directory = FakeDirectory(accounts=accounts(6))
    store = SqliteStore(":memory:")
    engine = Engine(settings(), cloud, directory, store)
    engine.sync()
    plan = engine.plan()
    directory.fail_on.add(plan.changes[JOURNAL_BATCH + 1].dn.lower())
    result = engine.apply(plan)
    rows = [e for e in store.read_log(limit=1000) if e.action == "create"]
    assert len(rows) == len(plan.changes) == JOURNAL_BATCH + 3
    assert sorted(e.result for e in rows) == ["error"] + ["success"] * (JOURNAL_BATCH + 2)
    assert len(result.failed) == 1
    assert len(store.applied_dns()) == JOURNAL_BATCH + 2  # the created groups, recorded with their batch


def test_a_stopped_apply_leaves_no_row_for_changes_it_never_attempted() -> None:
    cloud = FakeCloud(users=users(6), groups={gid(i): group(i, ["u0"]) for i in range(5)})
    store = SqliteStore(":memory:")
    engine = Engine(settings(), cloud, FakeDirectory(accounts=accounts(6)), store)
    engine.sync()
    calls = iter(range(100))
    result = engine.apply(engine.plan(), should_stop=lambda: next(calls) >= 2)
    assert result.aborted == "stop requested"
    assert [e.result for e in store.read_log() if e.action == "create"] == ["success", "success"]


KILLED_APPLY = """
import os, signal, sys
sys.path.insert(0, {root!r})
from tests.testbed.stores import BACKENDS, open_store
from tests.unit.builders import settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_engine import accounts, gid, group, users
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine

directory = FakeDirectory(accounts=accounts(6))
original, seen = directory.create_group, []
def create_group(dn, attributes, members):
    original(dn, attributes, members)
    seen.append(dn)
    if len(seen) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # after the LDAP write, before the batch is finished
directory.create_group = create_group
cloud = FakeCloud(users=users(6), groups={{gid(i): group(i, ["u0"]) for i in range(5)}})
engine = Engine(settings(), cloud, directory, SqliteStore(sys.argv[1]))
engine.sync()
engine.apply(engine.plan(), run_id="killed")
"""


def test_a_change_written_before_a_kill_is_in_the_log(tmp_path: Path) -> None:
    """kill -9 right after an LDAP write: the change's row is there (pending), and the next apply says the run
    was interrupted while writing it."""
    root = str(Path(__file__).resolve().parents[2])
    state = tmp_path / "state.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_APPLY.format(root=root)), str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    store = SqliteStore(state)
    rows = [e for e in store.read_log() if e.action == "create"]
    assert len(rows) == 5 and {e.result for e in rows} == {PENDING}  # the whole batch was journaled first
    engine = Engine(settings(), FakeCloud(users=users(6), groups={}), FakeDirectory(), store)
    engine.apply(engine_plan_empty(), run_id="next")
    assert {e.result for e in store.read_log() if e.action == "create"} == {INTERRUPTED}


def engine_plan_empty():  # type: ignore[no-untyped-def]
    from writeback.core.planning import Plan

    return Plan()


@pytest.mark.parametrize("key", ["graph_read", "planning"])
def test_timed_accumulates_and_planning_leaves_out_ad_reads(key: str) -> None:
    class Timed(FakeDirectory):
        timings = {"ad_read": 0.0, "ad_write": 0.0}

    directory = Timed()
    engine = Engine(settings(), FakeCloud(users={}, groups={}), directory, SqliteStore(":memory:"))
    with engine.timed(key):
        directory.timings["ad_read"] += 5.0  # an AD read of 5 s "during" the block
    assert engine.timings["ad_read"] == 5.0
    assert (engine.timings[key] == 0.0) if key == "planning" else (engine.timings[key] < 1.0)
    with pytest.raises(ValueError, match="unknown timing"), engine.timed("nothing"):
        pass


# -- write order: nested groups created first, their parents' adds carry them ------------------------------


def create(name: str, *members: str) -> Change:
    return Change(ChangeKind.CREATE, f"id-{name}", f"CN={name},OU=X", members=members)


def nested(name: str, *children: str) -> Change:
    return Change(
        ChangeKind.ADD_MEMBERS,
        f"id-{name}",
        f"CN={name},OU=X",
        members=tuple(f"CN={c},OU=X" for c in children),
    )


def test_children_are_created_first_and_the_parent_add_carries_them() -> None:
    plan = [create("a", "CN=u1"), create("b"), create("c"), nested("a", "b"), nested("b", "c")]
    ordered, carried = write_order(plan)
    assert [c.cloud_id for c in ordered if c.kind is ChangeKind.CREATE] == ["id-c", "id-b", "id-a"]
    assert ordered[3:] == plan[3:]  # everything after the creates keeps the plan's order
    assert {ordered[c].cloud_id: ordered[a] for c, a in carried.items()} == {"id-a": plan[3], "id-b": plan[4]}


def test_a_nesting_cycle_or_a_member_not_created_here_is_not_carried() -> None:
    plan = [create("a"), create("b"), nested("a", "b"), nested("b", "a")]
    ordered, carried = write_order(plan)
    assert sorted(map(id, ordered)) == sorted(map(id, plan)) and len(carried) == 1  # one side of the cycle
    renamed = [create("a"), nested("a", "renamed-elsewhere")]
    assert write_order(renamed) == (renamed, {})


def test_an_apply_writes_nested_members_in_the_parent_add(world_nested) -> None:  # type: ignore[no-untyped-def]
    _cloud, directory, store, engine = world_nested
    engine.sync()
    plan = engine.plan()
    assert plan.counts()["add_members"] == 1
    dn = {c.cloud_id: c.dn for c in plan.changes if c.kind is ChangeKind.CREATE}
    assert engine.apply(plan).ok
    # No modify: the child is created first and the parent's add carries it.
    assert [(op, d.lower()) for op, d in directory.ops if op != "search"] == [
        ("add", dn[gid(2)].lower()),
        ("add", dn[gid(1)].lower()),
    ]
    assert dn[gid(2)].lower() in {m.lower() for m in directory.groups[dn[gid(1)].lower()]["member"]}
    assert [e.result for e in store.read_log() if e.action == "add_members"] == ["success"]
    engine.sync()
    assert engine.plan().changes == ()  # converged


def test_when_the_nested_group_fails_the_parent_is_still_created(world_nested) -> None:  # type: ignore[no-untyped-def]
    _cloud, directory, _store, engine = world_nested
    engine.sync()
    plan = engine.plan()
    child = next(c for c in plan.changes if c.kind is ChangeKind.CREATE and c.cloud_id == gid(2))
    directory.fail_on.add(child.dn.lower())
    result = engine.apply(plan)
    outcome = {(r.change.kind, r.change.cloud_id): r.ok for r in result.results}
    assert outcome[(ChangeKind.CREATE, gid(1))] is True  # created without the missing nested group
    assert outcome[(ChangeKind.CREATE, gid(2))] is False
    assert outcome[(ChangeKind.ADD_MEMBERS, gid(1))] is False  # then refused: the nested group does not exist


@pytest.fixture
def world_nested():  # type: ignore[no-untyped-def]
    parent = CloudGroup(
        gid(1), display_name="G1", members=frozenset({MemberRef("user", "u0"), MemberRef("group", gid(2))})
    )
    cloud = FakeCloud(users=users(6), groups={gid(1): parent, gid(2): group(2, ["u1"])})
    directory = FakeDirectory(accounts=accounts(6))
    store = SqliteStore(":memory:")
    return cloud, directory, store, Engine(settings(), cloud, directory, store)


def test_a_create_refused_for_its_nested_group_is_made_without_it(world_nested) -> None:  # type: ignore[no-untyped-def]
    """A DC may refuse a nested member (8518: a universal group cannot hold a domain-local one): the parent is
    then created without it, as it would be without write_order, and only the member add fails."""
    cloud, _directory, store, _engine = world_nested

    class Refusing(FakeDirectory):
        refused: str = ""

        def create_group(self, dn, attributes, members):  # type: ignore[no-untyped-def]
            if any(m.lower() == self.refused for m in members):
                raise DirectoryWriteError("8518: refused", dn=dn, result="UNWILLING_TO_PERFORM")
            super().create_group(dn, attributes, members)

        def add_members(self, dn, members):  # type: ignore[no-untyped-def]
            if any(m.lower() == self.refused for m in members):
                raise DirectoryWriteError("8518: refused", dn=dn, result="UNWILLING_TO_PERFORM")
            super().add_members(dn, members)

    directory = Refusing(accounts=accounts(6))
    engine = Engine(settings(), cloud, directory, store)
    engine.sync()
    plan = engine.plan()
    directory.refused = next(c.dn for c in plan.changes if c.cloud_id == gid(2)).lower()
    result = engine.apply(plan)
    outcome = {(r.change.kind, r.change.cloud_id): r.ok for r in result.results}
    assert outcome == {
        (ChangeKind.CREATE, gid(2)): True,
        (ChangeKind.CREATE, gid(1)): True,
        (ChangeKind.ADD_MEMBERS, gid(1)): False,
    }
    assert len([op for op, _ in directory.ops if op == "add"]) == 2
