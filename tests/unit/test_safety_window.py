"""Thresholds over time (issue 23): what was applied in the last ``safety.window`` counts with every new plan,
against what AD held at the window's start, so removals made one at a time are held once they add up to what
one plan would have been held for."""

from __future__ import annotations

import dataclasses

from tests.unit import builders
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Allowances, Engine
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.model import CloudGroup, MemberRef
from writeback.core.planning import Change, ChangeKind, Plan
from writeback.core.safety import Counted, Managed, Thresholds, Window, hold_unsafe


def members(ids: range) -> frozenset[MemberRef]:
    return frozenset(MemberRef("user", f"u{i}") for i in ids)


class World:
    def __init__(self, window: float, size: int = 60) -> None:
        users, accounts = builders.synced_people(size)
        self.group = CloudGroup("g1", display_name="G1", members=members(range(size)))
        self.cloud = FakeCloud(users=users, groups={"g1": self.group})
        self.directory = FakeDirectory(accounts=accounts)
        s = builders.settings(safety={"member_removal_percent": 30, "window": window})
        self.engine = Engine(s, self.cloud, self.directory, SqliteStore(":memory:"))
        self.now = 1_000_000.0
        self.passes = ReconcilePass(self.engine, clock=lambda: self.now)
        assert self.run().counts()["create"] == 1

    def run(self) -> Plan:
        done = self.passes.run(PassOptions("full", deep=True))
        assert done.applied is not None and done.applied.ok
        return done.plan

    def keep(self, n: int) -> None:
        self.cloud.groups["g1"] = dataclasses.replace(self.group, members=members(range(n)))

    def in_ad(self) -> int:
        return len(next(iter(self.directory.groups.values()))["member"])


def test_removals_one_at_a_time_are_held_once_they_add_up_within_the_window() -> None:
    w = World(window=3600)
    # 60 managed member values: 30 % is 18. One removal every 2.5 s goes through 18 times, not 19.
    for n in range(59, 41, -1):
        w.now += 2.5
        w.keep(n)
        plan = w.run()
        assert not plan.held, f"removal {60 - n} of 18 held"
    assert w.in_ad() == 42
    w.now += 2.5
    w.keep(41)
    plan = w.run()
    (hold,) = plan.holds
    assert hold.kind == "removals" and "18 removed already in the last safety.window" in hold.message
    assert w.in_ad() == 42, "the 19th is held, as the same 19 at once would be"
    # An hour after the first of them, the window has moved on: the removal goes through.
    w.now += 3600
    assert not w.run().held and w.in_ad() == 41


def test_a_zero_window_counts_each_plan_alone() -> None:
    w = World(window=0)
    for n in range(59, 30, -1):
        w.now += 2.5
        w.keep(n)
        assert not w.run().held
    assert w.in_ad() == 31


def test_the_window_keeps_the_base_of_its_oldest_apply_and_forgets_old_applies() -> None:
    base, later = Managed(10, 100), Managed(10, 80)
    w = Window(60.0)
    removal = [dataclasses.replace(_removal(), members=tuple(f"CN=m{i}" for i in range(20)))]
    w = w.after(1000.0, removal, base).after(1030.0, removal, later)
    assert w.counted(1030.0) == Counted(removals=40) and w.base(1030.0, Managed(10, 60)) == base
    assert w.counted(1061.0) == Counted(removals=20) and w.base(1061.0, Managed(10, 60)) == later
    assert Window.from_json(w.to_json(), 60.0) == w
    assert w.at(1100.0).entries == () and w.base(1100.0, Managed(1, 2)) == Managed(1, 2)


def test_an_allowance_lets_the_plans_own_changes_through_whatever_the_window_holds() -> None:
    plan = Plan(changes=(dataclasses.replace(_removal(), members=("CN=a", "CN=b")),))
    t = Thresholds(member_removal_percent=30)
    assert hold_unsafe(plan, Managed(10, 100), t, Counted(removals=29)).held
    assert not hold_unsafe(plan, Managed(10, 100), t, Counted(removals=28)).held
    assert not hold_unsafe(
        plan, Managed(10, 100), dataclasses.replace(t, allow_removals=2), Counted(removals=29)
    ).held


def _removal() -> Change:
    return Change(ChangeKind.REMOVE_MEMBERS, "g1", "CN=G1,OU=W,DC=corp,DC=test", "G1")


def test_changes_an_operator_allowed_do_not_hold_the_next_small_change() -> None:
    w = World(window=3600, size=200)
    w.now += 2.5
    w.keep(100)  # 100 of 200 removed at once: held
    assert w.run().held and w.in_ad() == 200
    w.now += 2.5
    done = w.passes.run(PassOptions("full", deep=True, allow=Allowances(removals=100)))
    assert done.applied is not None and done.applied.ok and w.in_ad() == 100
    # Reviewed and allowed: it does not count, and the next removal (1 of the 100 left) goes through at once.
    w.now += 2.5
    w.keep(99)
    assert not w.run().held and w.in_ad() == 99
    # What was not allowed still counts: with that one, 30 removals one at a time pass (30 % of the 100 left),
    # the 31st is held.
    for n in range(98, 69, -1):
        w.now += 2.5
        w.keep(n)
        assert not w.run().held, n
    w.now += 2.5
    w.keep(69)
    assert w.run().held and w.in_ad() == 70
