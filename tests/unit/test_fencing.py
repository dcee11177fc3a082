"""Fencing per write (issue 23): an active instance that loses the leader lease in the middle of a change stops
before its next LDAP write, not after the change, records no applied state, and leaves the group marked for a
whole compare by whoever holds the lease next. The lease runs on a real SQLite state with a fake monotonic clock;
the directory double writes members in chunks, as ``target.max_values_per_modify`` makes the LDAP adapter do."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.unit import builders
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.lease import LeaderLease
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.model import CloudGroup, MemberRef
from writeback.errors import LeaseLostError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def members(n: int) -> frozenset[MemberRef]:
    return frozenset(MemberRef("user", f"u{i}") for i in range(n))


def test_a_leader_paused_mid_change_stops_before_its_next_write_and_leaves_the_group_to_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users, accounts = builders.synced_people(12)
    group = CloudGroup("g1", display_name="G1", members=members(1))
    cloud = FakeCloud(users=users, groups={"g1": group})
    directory = FakeDirectory(accounts=accounts, values_per_modify=1)  # one modify per member value
    state = str(tmp_path / "state.sqlite")
    engine = Engine(builders.settings(), cloud, directory, SqliteStore(state))
    clock = Clock()
    lease = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5, holder="me", clock=clock)
    assert lease.tick() and lease.margin == 5 and lease.write_deadline < lease.margin
    passes = ReconcilePass(engine, fence=lease)
    first = passes.run(PassOptions("full"))
    assert first.applied is not None and first.applied.ok
    printed = engine.store.applied_fingerprints()["g1"]
    stamped = engine.store.group_stamps()
    assert "g1" in stamped

    # Eleven members to add: eleven modifies of one change. Each takes 4 s of the lease's time (a DC under load,
    # or the process stopped between two of them); the database confirmed 30 s at the start of the change.
    cloud.groups["g1"] = dataclasses.replace(group, members=members(12))
    deadlines: list[float | None] = []
    real = lease.guard_write

    def slow_write() -> None:
        clock.now += 4.0
        deadlines.append(directory.write_deadline)
        real()

    monkeypatch.setattr(lease, "guard_write", slow_write)
    with pytest.raises(LeaseLostError):
        passes.run(PassOptions("full", deep=True))
    written = len(directory.groups[next(iter(directory.groups))]["member"])
    assert 1 < written < 12, f"stopped mid-change: {written} of 12 members written"
    assert written - 1 == len(deadlines) - 1, "the write the fence refused was not sent"
    assert set(deadlines) == {lease.write_deadline}, "every write waits at most the fence's deadline"
    assert directory.write_check is None, "the fence is taken off the directory after the apply"
    # Nothing recorded as applied; the group is left to compare whole by the next leader.
    assert engine.store.applied_fingerprints()["g1"] == printed
    assert "g1" in engine.store.pending_groups().groups and "g1" not in engine.store.group_stamps()

    # Whoever holds the lease next (here: a pass without a fence) plans it from its pending mark at once.
    nxt = ReconcilePass(Engine(builders.settings(), cloud, directory, SqliteStore(state)))
    done = nxt.run(PassOptions("incremental", sync=False))
    assert done.applied is not None and done.applied.ok and done.only == {"g1"}
    assert len(directory.groups[next(iter(directory.groups))]["member"]) == 12


def test_guard_write_needs_more_of_the_lease_than_one_write_may_take(tmp_path: Path) -> None:
    clock = Clock()
    lease = LeaderLease(SqliteStore(str(tmp_path / "s.sqlite")), ttl=30, renew_interval=5, clock=clock)
    with pytest.raises(LeaseLostError):
        lease.guard_write()  # never held
    assert lease.tick()
    lease.guard_write()
    clock.now += 30 - lease.margin - 1  # the database's 30 s, less the margin, less a little: still fine
    lease.guard_write()
    clock.now += 2  # less than the margin left: a write sent now could end after the lease
    with pytest.raises(LeaseLostError, match="no longer holds the leader lease"):
        lease.guard_write()
    lease.guard()  # the database confirms it again (its own clock did not move): writes go on
    lease.guard_write()
