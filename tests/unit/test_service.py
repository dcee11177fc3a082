"""The service loop (writeback.app.service) over in-memory fakes, a real SQLite store and a fake clock."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.unit import builders
from tests.unit.builders import BASE
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Allowances, Engine
from writeback.app.service import QUARANTINE_AFTER, JsonFormatter, Service
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, MemberRef
from writeback.core.ports import SyncReport, UserChanges, UsnWatermark
from writeback.errors import DirectoryUnavailable, ThrottledError


def settings(tmp_path: Path, **service: Any) -> Any:
    # The state path is the test's own: what opens the configured state (a restart request) never touches the
    # working directory's writeback.sqlite.
    return builders.settings(
        state={"path": str(tmp_path / "writeback.sqlite")},
        service={
            "poll_interval": 1.0,
            "reconcile_interval": 100.0,
            "max_backoff": 30.0,
            "health_file": str(tmp_path / "health.json"),
            **service,
        },
    )


def gid(i: int) -> str:
    return f"{i:08d}-0000-0000-0000-{i:012d}"


def group(i: int, members: list[str], name: str | None = None) -> CloudGroup:
    return CloudGroup(
        gid(i), display_name=name or f"G{i}", members=frozenset(MemberRef("user", m) for m in members)
    )


@dataclass
class DeltaCloud(FakeCloud):
    """Loads everything each sync but reports what the test says changed, like an incremental delta round.
    ``fail`` raises instead (a Graph outage); ``requests`` counts syncs."""

    changed_users: set[str] = field(default_factory=set)
    changed_groups: set[str] = field(default_factory=set)
    full: bool = True
    fail: Exception | None = None
    syncs: int = 0

    def sync(self, replica: Any, stream: Any = None) -> SyncReport:
        self.syncs += 1
        if self.fail is not None:
            raise self.fail
        super().sync(replica)
        report = SyncReport(
            full_resync=self.full,
            changed_users=frozenset(self.changed_users),
            changed_groups=frozenset(self.changed_groups),
            requests=2,
        )
        self.full, self.changed_users, self.changed_groups = False, set(), set()
        return report


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    cloud: DeltaCloud
    directory: FakeDirectory
    store: SqliteStore
    service: Service
    clock: Clock
    health_file: Path

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.health_file.read_text())
        return data

    def members(self, i: int) -> set[str]:
        (entry,) = [
            e
            for e in self.directory.groups.values()
            if e.get("msDS-ExternalDirectoryObjectId") == f"Group_{gid(i)}"
        ]
        return {m.split(",")[0][3:] for m in entry["member"]}


@pytest.fixture
def world(tmp_path: Path) -> World:
    users, accounts = builders.synced_people(6)
    cloud = DeltaCloud(users=users, groups={gid(i): group(i, [f"u{i}"]) for i in range(1, 4)})
    directory = FakeDirectory(accounts=accounts)
    store = SqliteStore(":memory:")
    s = settings(tmp_path)
    clock = Clock()
    service = Service(s, Engine(s, cloud, directory, store), clock=clock)
    return World(cloud, directory, store, service, clock, tmp_path / "health.json")


def test_first_cycle_is_full_and_an_idle_cycle_touches_no_ldap(world: World) -> None:
    first = world.service.cycle()
    assert first.full and first.applied == 3
    ops = len(world.directory.ops)
    idle = world.service.cycle()
    assert (idle.full, idle.planned) == (False, 0)
    assert len(world.directory.ops) == ops, "an idle cycle must not read or write AD"


def test_one_membership_change_plans_one_group_and_writes_once(world: World) -> None:
    world.service.cycle()
    world.cloud.groups[gid(2)] = group(2, ["u2", "u5"])
    world.cloud.changed_groups = {gid(2)}
    writes = world.directory.writes()
    out = world.service.cycle()
    assert (out.full, out.groups, out.planned) == (False, 1, 1)
    assert world.directory.writes() == writes + 1
    assert world.members(2) == {"user2", "user5"}


def test_an_incremental_cycle_reads_only_the_planned_groups_from_the_replica(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the whole replica every poll cost 8 s at 100,000 users (docs/benchmarks.md, Large)."""
    world.service.cycle()
    asked: list[object] = []
    real = world.store.snapshot

    def spy(member_groups: Any = None) -> Any:
        asked.append(member_groups)
        return real(member_groups)

    monkeypatch.setattr(world.store, "snapshot", spy)
    world.cloud.groups[gid(2)] = group(2, ["u2", "u5"])
    world.cloud.changed_groups = {gid(2)}
    world.service.cycle()
    assert asked == [{gid(2)}]
    assert world.members(2) == {"user2", "user5"}


def test_changed_user_replans_the_groups_holding_it(world: World) -> None:
    world.service.cycle()
    world.cloud.users["u1"] = CloudUser("u1", on_premises_sync_enabled=False)  # no longer resolvable
    world.cloud.changed_users = {"u1"}
    out = world.service.cycle()
    assert out.groups == 1 and world.members(1) == set()


def test_incremental_cycles_keep_nested_groups_and_follow_a_child_rename(world: World) -> None:
    """An incremental cycle reads the members of the planned groups only, so nesting must still resolve."""
    parent = group(1, ["u1"])
    world.cloud.groups[gid(1)] = CloudGroup(
        gid(1), display_name="G1", members=parent.members | {MemberRef("group", gid(3))}
    )
    world.service.cycle()
    assert world.members(1) == {"user1", "G3_000000000003"}
    world.cloud.groups[gid(1)] = CloudGroup(
        gid(1), display_name="G1", members=frozenset({MemberRef("user", "u4"), MemberRef("group", gid(3))})
    )
    world.cloud.changed_groups = {gid(1)}
    out = world.service.cycle()
    assert (out.full, out.groups) == (False, 1)
    assert world.members(1) == {"user4", "G3_000000000003"}, "the nested child stays a member"
    world.cloud.groups[gid(3)] = group(3, ["u3"], name="G3 renamed")
    world.cloud.changed_groups = {gid(3)}
    out = world.service.cycle()
    assert (out.full, out.groups) == (False, 2), "the renamed child and its parent"
    assert world.members(1) == {"user4", "G3 renamed_000000000003"}


def test_drift_is_reverted_by_the_periodic_reconcile_only(world: World) -> None:
    world.service.cycle()
    (entry,) = [
        e for e in world.directory.groups.values() if e["msDS-ExternalDirectoryObjectId"] == f"Group_{gid(3)}"
    ]
    world.directory.edit_by_hand(entry["dn"], member=[])
    world.service.cycle()
    assert world.members(3) == set(), "incremental cycles do not read unchanged groups"
    world.clock.now += 100.0
    out = world.service.cycle()
    assert out.full and out.groups == 1, "a quick reconcile: only the group changed in AD"
    assert world.members(3) == {"user3"}


def test_an_operators_reconcile_request_is_deep_and_the_timed_one_quick(world: World) -> None:
    """The console's *Reconcile now* reads every managed group; the hourly one only what changed."""
    world.service.cycle()
    world.clock.now += 100.0
    timed = world.service.cycle()
    assert timed.full and timed.groups == 0, "nothing changed: a quick reconcile compares no group"
    world.service.request_reconcile()
    asked = world.service.cycle()
    assert asked.full and asked.groups == -1, "every managed group (deep)"


def test_groups_an_incremental_cycle_wrote_are_not_compared_again_by_the_quick_reconcile(
    world: World,
) -> None:
    """The soak (docs/benchmarks.md) found the hourly quick reconcile re-reading every group the service's own
    incremental cycles had written: they now stamp what they write. A hand edit after that is still caught."""
    world.service.cycle()
    world.clock.now += 100.0
    world.service.cycle()  # a quick reconcile: the record it keeps is what the stamps are checked against
    world.cloud.groups[gid(2)] = group(2, ["u2", "u5"])
    world.cloud.groups[gid(3)] = group(3, ["u3"], name="G3 renamed")
    world.cloud.changed_groups = {gid(2), gid(3)}
    out = world.service.cycle()
    assert (out.full, out.groups, out.failed) == (False, 2, 0)
    assert ("search", "stamps of some") in world.directory.ops
    world.clock.now += 100.0
    timed = world.service.cycle()
    assert timed.full and timed.groups == 0, "what the service wrote is in step: nothing to compare"
    (entry,) = [
        e for e in world.directory.groups.values() if e["msDS-ExternalDirectoryObjectId"] == f"Group_{gid(3)}"
    ]
    world.directory.edit_by_hand(entry["dn"], member=[])
    world.clock.now += 100.0
    again = world.service.cycle()
    assert again.full and again.groups == 1, "the hand edit after the service's write"
    assert world.members(3) == {"user3"}


def test_a_group_an_incremental_cycle_deleted_loses_its_stamp(world: World) -> None:
    world.service.cycle()
    world.clock.now += 100.0
    world.service.cycle()
    assert gid(1) in world.store.group_stamps()
    del world.cloud.groups[gid(1)]
    world.cloud.changed_groups = {gid(1)}
    out = world.service.cycle()
    assert out.applied == 1 and not any(
        e["msDS-ExternalDirectoryObjectId"] == f"Group_{gid(1)}" for e in world.directory.groups.values()
    )
    assert gid(1) not in world.store.group_stamps()


def test_rename_of_a_group_the_state_store_never_recorded_moves_it(world: World) -> None:
    """A group adopted (or created by a run killed before it recorded the create) is found by the full read
    at start, so a later rename moves it instead of creating a second group with the same anchor."""
    world.service.cycle()
    world.store.db.execute("DELETE FROM applied")
    world.service._next_full = 0.0  # as after a restart
    world.service.cycle()
    world.cloud.groups[gid(1)] = group(1, ["u1"], name="Renamed")
    world.cloud.changed_groups = {gid(1)}
    world.service.cycle()
    anchors = [e["msDS-ExternalDirectoryObjectId"] for e in world.directory.groups.values()]
    assert anchors.count(f"Group_{gid(1)}") == 1
    assert any(dn.startswith("cn=renamed") for dn in world.directory.groups)


def test_group_moved_by_hand_in_ad_is_found_not_duplicated(world: World) -> None:
    world.service.cycle()
    key = next(
        k
        for k, e in world.directory.groups.items()
        if e["msDS-ExternalDirectoryObjectId"] == f"Group_{gid(2)}"
    )
    world.directory.move(world.directory.groups[key]["dn"], f"CN=Elsewhere,OU=Other,{BASE}")
    world.cloud.groups[gid(2)] = group(2, ["u2", "u4"])
    world.cloud.changed_groups = {gid(2)}
    world.service.cycle()
    anchors = [e["msDS-ExternalDirectoryObjectId"] for e in world.directory.groups.values()]
    assert anchors.count(f"Group_{gid(2)}") == 1
    assert world.members(2) == {"user2", "user4"}


def test_graph_outage_backs_off_quarantines_then_recovers_with_a_full_reconcile(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    svc = world.service
    svc.stop_event.wait = lambda delay: svc.stop_event.is_set()  # type: ignore[method-assign]
    assert svc.run(once=True) == 0
    world.cloud.fail = ThrottledError("Graph kept answering 429 after 3 retries")
    delays = []
    for _ in range(QUARANTINE_AFTER):
        assert svc.run(once=True) == 1
        delays.append(svc.delay_after_failure())
        svc.stop_event.clear()
    assert world.health()["status"] == "stopped"  # run(once) ends with a stop
    assert svc.health.consecutive_failures == QUARANTINE_AFTER
    assert any("quarantined: 5 cycles in a row failed" in r.getMessage() for r in caplog.records)
    assert any("cycle failed (1 in a row)" in r.getMessage() for r in caplog.records)
    assert max(delays) <= 30.0 * 1.2 and delays[0] < delays[-1]
    world.cloud.fail = None
    world.cloud.groups[gid(1)] = group(
        1, ["u1", "u0"]
    )  # changed during the outage, never reported as a change
    assert svc.run(once=True) == 0
    assert world.members(1) == {"user0", "user1"}, (
        "the first good cycle after a failure reconciles everything"
    )
    assert svc.health.status == "stopped" and svc.health.consecutive_failures == 0


def test_status_in_the_health_file_while_failing(world: World) -> None:
    svc = world.service
    world.cloud.fail = DirectoryUnavailable("ldaps://dc: Can't contact LDAP server")
    svc._run_cycle()
    svc.write_health()
    h = world.health()
    assert h["status"] == "degraded" and "Can't contact LDAP server" in h["message"]
    for _ in range(QUARANTINE_AFTER):
        svc._run_cycle()
    svc.write_health()
    assert world.health()["status"] == "quarantined"
    world.cloud.fail = None
    svc._run_cycle()
    svc.write_health()
    assert world.health()["status"] == "ok"


def test_refused_write_is_retried_with_backoff_and_converges(world: World) -> None:
    svc = world.service
    svc.cycle()
    world.cloud.groups[gid(2)] = group(2, ["u2", "u3"])
    world.cloud.changed_groups = {gid(2)}
    dn = next(
        e["dn"]
        for e in world.directory.groups.values()
        if e["msDS-ExternalDirectoryObjectId"] == f"Group_{gid(2)}"
    )
    world.directory.fail_on = {dn.lower()}
    assert svc.cycle().failed == 1
    assert svc._run_cycle() and svc.health.status == "degraded" and svc.health.failing_groups == 1
    assert "refused" in (svc.health.last_error or "")
    writes = world.directory.writes()
    svc.cycle()  # not due yet: no retry
    assert world.directory.writes() == writes
    world.directory.fail_on = set()
    world.clock.now += 5.0
    out = svc.cycle()
    assert out.groups == 1 and out.applied == 1
    assert world.members(2) == {"user2", "user3"}
    svc._run_cycle()
    assert svc.health.status == "ok" and svc.health.failing_groups == 0


def test_directory_lost_mid_apply_fails_the_cycle(world: World) -> None:
    class Flaky(FakeDirectory):
        def create_group(self, dn: str, attributes: Any, members: Any) -> None:
            raise DirectoryUnavailable("connection lost during add")

    world.service.engine.directory = Flaky(accounts=world.directory.accounts)
    with pytest.raises(DirectoryUnavailable, match="apply stopped after 1 changes"):
        world.service.cycle()


def test_stop_request_ends_run_with_exit_0_and_status_stopped(world: World) -> None:
    svc = world.service
    svc.stop_event.wait = lambda delay: (svc.request_stop(), True)[1]  # type: ignore[method-assign]
    assert svc.run() == 0
    assert world.health()["status"] == "stopped"
    assert svc.health.cycles == 1


def test_unexpected_exception_is_a_failed_cycle_not_a_dead_service(world: World) -> None:
    world.cloud.fail = RuntimeError("boom")
    assert world.service._run_cycle() is False
    assert world.service.health.last_error == "unexpected error: RuntimeError: boom"


def test_json_formatter_writes_one_object_per_line_with_extras() -> None:
    record = logging.makeLogRecord(
        {
            "name": "writeback.service",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "cycle %s",
            "args": ("failed",),
        }
    )
    record.failures = 3
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert "\n" not in line
    assert data["message"] == "cycle failed" and data["failures"] == 3 and data["level"] == "WARNING"
    assert data["time"].endswith("+00:00")


def test_hard_delete_in_the_cloud_deletes_the_group_at_the_next_incremental_cycle(world: World) -> None:
    world.service.cycle()
    del world.cloud.groups[gid(3)]
    world.cloud.changed_groups = {gid(3)}
    out = world.service.cycle()
    assert (out.full, out.applied) == (False, 1)
    assert not any(
        e.get("msDS-ExternalDirectoryObjectId") == f"Group_{gid(3)}" for e in world.directory.groups.values()
    )


class BlindToDeletes(FakeDirectory):
    """AD users for dynamic groups, read like an account that may not list Deleted Objects: an incremental
    read sees new users but never the deleted ones (only a full read drops them)."""

    def read_user_changes(self, base_dn: str, since: Any) -> UserChanges:
        users = [
            {
                "id": a.object_guid,
                "onPremisesDistinguishedName": a.dn,
                "department": "Eng",
                "accountEnabled": True,
            }
            for a in self.accounts
        ]
        if since is not None:
            users = [u for u in users if u["id"] not in self.seen]
        self.seen |= {u["id"] for u in users}
        return UserChanges(users=users, watermark=UsnWatermark("dc", len(self.seen)), full=since is None)


def test_a_dynamic_group_refused_for_a_deleted_user_is_retried_from_a_full_user_read(tmp_path: Path) -> None:
    s = builders.settings(
        scope={"mode": "none"},
        service={"poll_interval": 1.0, "reconcile_interval": 1000.0, "health_file": str(tmp_path / "h.json")},
        dynamic_groups=[{"id": "eng", "name": "Eng", "rule": 'user.department -eq "Eng"'}],
    )
    people = [DirectoryAccount(f"CN={n},OU=Staff,{BASE}", f"guid-{n}", None) for n in ("a", "b")]
    directory = BlindToDeletes(accounts=list(people))
    directory.seen = set()
    clock = Clock()
    service = Service(s, Engine(s, FakeCloud(), directory, SqliteStore(":memory:")), clock=clock)
    service.cycle()
    (entry,) = directory.groups.values()
    assert {m.split(",")[0] for m in entry["member"]} == {"CN=a", "CN=b"}
    # b is deleted in AD (AD drops it from the group); e joins. The incremental read sees e, not the delete.
    directory.accounts.remove(people[1])
    entry["member"].discard(people[1].dn)
    directory.accounts.append(DirectoryAccount(f"CN=e,OU=Staff,{BASE}", "guid-e", None))
    refused = service.cycle()
    assert refused.failed == 1  # AD refuses the stale DN of b
    clock.now += 60
    retried = service.cycle()
    assert retried.failed == 0 and retried.applied == 1
    assert {m.split(",")[0] for m in entry["member"]} == {"CN=a", "CN=e"}


def test_a_hold_stays_in_the_health_status_through_incremental_cycles_until_allowed(world: World) -> None:
    s = builders.settings(
        service={"poll_interval": 1.0, "reconcile_interval": 100.0, "health_file": str(world.health_file)},
        safety={"delete_threshold": 0},
    )
    service = Service(s, Engine(s, world.cloud, world.directory, world.store), clock=world.clock)
    assert service._run_cycle()  # the first full reconcile writes the three groups
    del world.cloud.groups[gid(3)]
    world.cloud.full = True  # the next full reconcile holds the delete (threshold 0)
    service._next_full = 0.0
    assert service._run_cycle()
    assert service.health.status == "held" and service.health.held[0]["kind"] == "deletes"
    world.cloud.groups[gid(2)] = group(2, ["u2", "u5"])  # an unrelated change: an incremental cycle
    world.cloud.changed_groups = {gid(2)}
    assert service._run_cycle()
    assert world.members(2) == {"user2", "user5"}
    assert service.health.status == "held", "an incremental cycle must not clear a hold it did not see"
    service.engine.allow(Allowances(deletes=1))
    assert service._run_cycle()
    assert service.health.status == "ok" and service.health.held == []
    assert not any(
        e.get("msDS-ExternalDirectoryObjectId") == f"Group_{gid(3)}" for e in world.directory.groups.values()
    )
