"""The quick reconcile: which groups it compares (pure rules), and the engine around it with fakes that keep
uSNChanged the way a DC does (tests/unit/fakes.py) and a real SQLite state."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from tests.unit.builders import BASE, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app import reconcile
from writeback.app.engine import ApplyResult, Engine
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, MemberRef
from writeback.core.planning import Plan
from writeback.core.ports import GroupStamp
from writeback.core.reconcile import (
    DeepReason,
    ReconcileRecord,
    changed_in_ad,
    deep_reason,
    describe_deep,
    stamps_after,
    wider_than_quick,
)

DAY = 86400.0


# -- the pure rules ---------------------------------------------------------------------------------------
def test_changed_in_ad_finds_changed_moved_new_doubled_and_missing_groups() -> None:
    recorded = {
        "same": ("CN=Same,OU=G," + BASE, 10),
        "changed": ("CN=Changed,OU=G," + BASE, 11),
        "moved": ("CN=Moved,OU=G," + BASE, 12),
        "gone": ("CN=Gone,OU=G," + BASE, 13),
        "twice": ("CN=Twice,OU=G," + BASE, 14),
    }
    listed = [
        GroupStamp("cn=same,ou=g," + BASE.lower(), "same", 10),  # DNs compare case-insensitively
        GroupStamp("CN=Changed,OU=G," + BASE, "changed", 40),
        GroupStamp("CN=Moved,OU=Elsewhere," + BASE, "moved", 12),
        GroupStamp("CN=New,OU=G," + BASE, "new", 41),
        GroupStamp("CN=Twice,OU=G," + BASE, "twice", 14),
        GroupStamp("CN=Twice copy,OU=G," + BASE, "twice", 42),
    ]
    found = changed_in_ad(listed, recorded)
    assert found.keys == {"changed", "moved", "gone", "new", "twice"}
    assert found.why == {
        "changed in AD": 1,
        "moved or renamed in AD": 1,
        "missing from AD": 1,
        "not recorded in step": 1,
        "claimed by two AD groups": 1,
    }


def test_deep_reason_for_each_condition_and_none_when_quick_is_exact() -> None:
    record = ReconcileRecord(dc="dc-a", usn=5, last_deep=1000.0, settings="s1")
    ok = {"dc": "dc-a", "now": 1000.0 + DAY - 1, "interval": DAY, "settings": "s1", "has_stamps": True}
    assert deep_reason(record, **ok) is None
    assert deep_reason(ReconcileRecord(), **ok) is DeepReason.FIRST
    assert deep_reason(record, **{**ok, "dc": "dc-b"}) is DeepReason.OTHER_DC
    assert deep_reason(record, **{**ok, "settings": "s2"}) is DeepReason.CONFIGURATION
    assert deep_reason(record, **{**ok, "now": 1000.0 + DAY}) is DeepReason.INTERVAL
    assert deep_reason(record, **{**ok, "has_stamps": False}) is DeepReason.NOT_IN_STEP


def test_stamps_after_takes_written_groups_from_the_second_listing_and_forgets_gone_ones() -> None:
    before = [GroupStamp("CN=A", "a", 1), GroupStamp("CN=B", "b", 2), GroupStamp("CN=C", "c", 3)]
    after = [GroupStamp("CN=A", "a", 9), GroupStamp("CN=B", "b", 2)]
    stamps, gone = stamps_after({"a", "b", "c"}, {"a", "c"}, before, after)
    assert stamps == {"a": ("CN=A", 9), "b": ("CN=B", 2)}
    assert gone == {"c"}, "written (deleted) and no longer listed"


def test_past_a_quarter_of_the_groups_one_read_of_all_is_cheaper() -> None:
    assert not wider_than_quick(50, 60), "a few groups are always read one by one"
    assert not wider_than_quick(500, 2000)
    assert wider_than_quick(501, 2000)


# -- the engine around it ---------------------------------------------------------------------------------
def gid(i: int) -> str:
    return f"{i:08d}-0000-0000-0000-{i:012d}"


def group(i: int, members: list[str], name: str | None = None) -> CloudGroup:
    return CloudGroup(
        gid(i), display_name=name or f"G{i}", members=frozenset(MemberRef("user", m) for m in members)
    )


def user_dn(i: int) -> str:
    return f"CN=user{i},OU=Staff,{BASE}"


class World:
    def __init__(self, **tables: Any) -> None:
        self.cloud = FakeCloud(
            users={
                f"u{i}": CloudUser(
                    f"u{i}", on_premises_sync_enabled=True, on_premises_security_identifier=f"S-1-5-21-9-{i}"
                )
                for i in range(8)
            },
            groups={gid(i): group(i, [f"u{i}", f"u{i + 1}"]) for i in range(1, 5)},
            incremental=True,
        )
        self.directory = FakeDirectory(
            accounts=[
                DirectoryAccount(user_dn(i), f"00000000-0000-0000-0000-{i:012d}", f"S-1-5-21-9-{i}")
                for i in range(8)
            ]
        )
        self.store = SqliteStore(":memory:")
        self.engine = Engine(settings(**tables), self.cloud, self.directory, self.store)
        self.now = 1_000_000.0

    def reconcile(self, *, force: str | None = None) -> tuple[reconcile.Reconcile, Plan, ApplyResult]:
        """What `writeback apply` runs (app/operations.apply): one full pass."""
        done = self.passes().run(PassOptions("full", force=force))
        assert done.applied is not None and done.scope is not None
        return done.scope, done.plan, done.applied

    def passes(self) -> ReconcilePass:
        return ReconcilePass(self.engine, clock=lambda: self.now)

    def entry(self, i: int) -> dict[str, Any]:
        (found,) = [
            e
            for e in self.directory.groups.values()
            if e["msDS-ExternalDirectoryObjectId"] == f"Group_{gid(i)}"
        ]
        return found

    def group_reads(self) -> list[str]:
        """The searches that read groups with their members since the last call."""
        reads = [target for op, target in self.directory.ops if op == "search" and target != "stamps"]
        self.directory.ops.clear()
        return reads


@pytest.fixture
def world() -> World:
    w = World()
    scope, plan, result = w.reconcile()
    assert scope.deep and result.ok and plan.counts()["create"] == 4
    w.group_reads()
    return w


def test_nothing_changed_compares_nothing_and_reads_no_group(world: World) -> None:
    scope, plan, _result = world.reconcile()
    assert not scope.deep and scope.only == frozenset()
    assert plan.changes == () and world.directory.writes() == 0
    assert world.group_reads() == [], "one listing of stamps, no group read"


def test_a_member_removed_by_hand_is_put_back_by_the_next_quick_reconcile(world: World) -> None:
    world.directory.edit_by_hand(world.entry(2)["dn"], member=[user_dn(2)])
    scope, plan, result = world.reconcile()
    assert not scope.deep and scope.only == {gid(2)} and scope.counts["changed in AD"] == 1
    assert [(c.kind.value, c.members) for c in plan.changes] == [("add_members", (user_dn(3),))]
    assert result.ok and world.entry(2)["member"] == {user_dn(2), user_dn(3)}
    # Once back in step, the group is stamped with the USN of writeback's own write: not compared again.
    assert world.reconcile()[0].only == frozenset()


def test_an_attribute_edited_by_hand_is_reverted(world: World) -> None:
    world.directory.edit_by_hand(world.entry(3)["dn"], description="edited by hand")
    _, plan, _ = world.reconcile()
    assert [c.kind.value for c in plan.changes] == ["update"]
    assert world.entry(3).get("description") != "edited by hand"


def test_a_group_deleted_by_hand_is_created_again(world: World) -> None:
    world.directory.delete_by_hand(world.entry(4)["dn"])
    scope, plan, _ = world.reconcile()
    assert scope.counts["missing from AD"] == 1
    assert [c.kind.value for c in plan.changes] == ["create"]
    assert world.entry(4)["member"] == {user_dn(4), user_dn(5)}


def test_a_cloud_change_is_compared_through_its_pending_mark_even_after_a_lost_cycle(world: World) -> None:
    world.cloud.groups[gid(1)] = group(1, ["u1", "u2", "u7"])
    world.engine.sync()  # a cycle that synced and died before planning: the mark survives in the state
    scope, _plan, result = world.reconcile()
    assert scope.only == {gid(1)} and scope.counts["pending in the cloud"] == 1
    assert result.ok and user_dn(7) in world.entry(1)["member"]
    assert world.store.pending_groups().groups == frozenset(), "cleared once in step"


def test_a_refused_change_keeps_its_group_compared_until_it_goes_through(world: World) -> None:
    world.cloud.groups[gid(2)] = group(2, ["u2", "u3", "u6"])
    world.directory.fail_on.add(world.entry(2)["dn"].lower())
    _, _, result = world.reconcile()
    assert not result.ok
    world.directory.fail_on.clear()
    scope, _plan, result = world.reconcile()
    assert gid(2) in (scope.only or ()) and result.ok
    assert user_dn(6) in world.entry(2)["member"]


def test_a_changed_ad_user_replans_the_groups_holding_it(world: World) -> None:
    world.directory.account_usns[user_dn(3).lower()] = world.directory.usn + 1
    world.directory.usn += 1
    scope, _, _ = world.reconcile()
    assert scope.only == {gid(2), gid(3)} and scope.counts["holding changed AD users"] == 2


def test_deep_after_the_interval_another_dc_or_a_changed_configuration(world: World) -> None:
    world.now += DAY
    assert world.reconcile()[0].why == "the deep reconcile interval has passed"
    assert not world.reconcile()[0].deep
    world.directory.invocation_id = "99999999-2222-3333-4444-555555555555"
    assert "domain controller" in world.reconcile()[0].why
    assert not world.reconcile()[0].deep
    world.engine.settings = dataclasses.replace(
        world.engine.settings, safety=dataclasses.replace(world.engine.settings.safety, delete_threshold=3)
    )
    assert world.reconcile()[0].why == "the configuration changed"
    assert world.reconcile(force=DeepReason.ASKED)[0].why is DeepReason.ASKED


def test_a_quick_reconcile_holds_with_the_base_the_deep_one_counted(world: World) -> None:
    """Percentages are of everything writeback manages, not of the few groups a quick reconcile reads."""
    world.directory.edit_by_hand(
        world.entry(1)["dn"], member=[user_dn(1), user_dn(2), user_dn(3), user_dn(4)]
    )
    _, plan, _ = world.reconcile()
    assert [c.kind.value for c in plan.changes] == ["remove_members"] and not plan.held


def test_the_base_counts_what_the_first_apply_wrote_so_a_quick_reconcile_holds_a_mass_removal() -> None:
    """The deep first apply counts an empty AD; the base must include what it wrote (56 values), or 20 removals
    would pass as a percentage of nothing."""
    w = World()
    w.cloud.groups = {gid(i): group(i, [f"u{n}" for n in range(7)]) for i in range(1, 9)}
    assert w.reconcile()[2].ok
    for i in range(1, 5):
        w.cloud.groups[gid(i)] = group(i, ["u0", "u1"])
    scope, plan, _result = w.reconcile()
    assert not scope.deep and scope.only == {gid(i) for i in range(1, 5)}
    assert plan.changes == () and len(plan.held) == 4, "20 of 56 values (36 %) over the 30 % threshold"
    assert "20 of the 56 member values" in plan.holds[0].message
    assert w.reconcile()[0].only == {gid(i) for i in range(1, 5)}, "held groups stay to compare"


def test_a_dry_run_plans_what_an_apply_would_and_leaves_the_state_as_it_was(world: World) -> None:
    """`writeback plan` and the console's plan page: the same pass, stopped before anything is written. Where
    the listing found a group renamed by hand, stamps, pending marks and the reconcile record stay as they were
    until a pass applies."""
    old = world.entry(2)["dn"]
    world.directory.move(old, old.replace("CN=", "CN=Renamed ", 1))  # an administrator renames it in AD
    world.cloud.groups[gid(1)] = group(1, ["u1", "u2", "u7"])
    world.engine.sync()  # the replica is a cache of Graph: a plan brings it up to date, and marks gid(1)
    store = world.store

    def state() -> tuple[Any, ...]:
        return (
            store.applied_dns(),
            store.group_stamps(),
            store.get_meta("reconcile"),
            store.pending_groups(),
            store.applied_fingerprints(),
            len(store.read_log(limit=1000)),
        )

    before, writes = state(), world.directory.writes()
    dry = world.passes().run(PassOptions("full", dry_run=True, sync=False))
    assert dry.applied is None and {c.cloud_id for c in dry.plan.changes} == {gid(1), gid(2)}
    assert state() == before and world.directory.writes() == writes

    _, plan, result = world.reconcile()
    assert result.ok and plan.digest() == dry.plan.digest(), "the apply did what the dry run showed"
    assert store.applied_dns()[gid(2)].lower() == old.lower() == world.entry(2)["dn"].lower()
    assert store.pending_groups().groups == frozenset() and state() != before


def test_graph_objects_the_sync_skipped_as_malformed_are_named_in_the_plan(world: World) -> None:
    from writeback.cli.report import render_plan
    from writeback.core.ports import SkippedObject, SyncReport

    bad = SkippedObject("groups", "g-bad", "displayName", "a number (int), expected a string or null")
    report = SyncReport(skipped=(bad,))
    plan = world.passes().run(PassOptions("full", dry_run=True, sync=False), report=report).plan
    text = render_plan(plan)
    assert "Graph groups object g-bad skipped: displayName is a number (int)" in text
    assert world.passes().run(PassOptions("full", dry_run=True, sync=False)).plan.warnings == ()


def test_a_deep_reason_reads_the_same_in_the_plan_the_progress_and_the_log(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 28: one vocabulary (DeepReason) for why a reconcile went deep, wherever it is shown."""
    said: list[str] = []
    world.engine.progress = said.append
    with caplog.at_level(logging.INFO, logger="writeback.reconcile"):
        done = world.passes().run(PassOptions("full", deep=True))
    assert done.scope is not None and done.scope.why is DeepReason.ASKED
    assert done.plan.scope == "deep reconcile (an operator asked for one)"
    assert said.count("Deep reconcile (an operator asked for one)") == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "writeback.reconcile"]
    assert logged and logged[-1].startswith("deep reconcile (an operator asked for one): ")


def test_each_deep_reason_is_worded_once() -> None:
    texts = [str(r) for r in DeepReason]
    assert len(set(texts)) == len(texts) and all(t and t[0].islower() for t in texts)
    assert describe_deep(DeepReason.CONFIGURATION) == "deep reconcile (the configuration changed)"
    assert describe_deep(DeepReason.WIDER, "60 of 100 managed groups to compare") == (
        "deep reconcile (reading every group is cheaper than comparing the changed ones one by one: "
        "60 of 100 managed groups to compare)"
    )
