"""Pause, resume and restart provisioning in the service loop (writeback.app.pause, writeback.app.service), over
the in-memory fakes and a real SQLite store, and the running cycle's phase and progress in the health file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit import builders
from tests.unit.fakes import FakeDirectory
from tests.unit.test_service import Clock, DeltaCloud, World, gid, group, settings
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app import pause as pausing
from writeback.app.engine import ApplyResult, Engine
from writeback.app.reconcile_pass import PassOptions
from writeback.app.service import Service
from writeback.core.planning import Plan
from writeback.core.ports import LogQuery
from writeback.errors import PausedError


@pytest.fixture
def world(tmp_path: Path) -> World:
    """Three cloud groups of one user each, as tests/unit/test_service.py's world."""
    users, accounts = builders.synced_people(6)
    cloud = DeltaCloud(users=users, groups={gid(i): group(i, [f"u{i}"]) for i in range(1, 4)})
    directory = FakeDirectory(accounts=accounts)
    s = settings(tmp_path)
    clock = Clock()
    service = Service(s, Engine(s, cloud, directory, SqliteStore(":memory:")), clock=clock)
    return World(cloud, directory, service.engine.store, service, clock, tmp_path / "health.json")


def _log(world: World, action: str) -> list[Any]:
    return world.store.query_log(LogQuery(action=action))


def test_paused_the_service_keeps_reading_and_writes_nothing_then_resume_applies_it(world: World) -> None:
    world.service.cycle()
    assert world.members(2) == {"user2"}
    pause, started = pausing.pause(world.store, "olga")
    assert started and pause.by == "olga"
    assert pausing.pause(world.store, "vic") == (pause, False)  # the first pause stays; logged once
    (row,) = _log(world, "pause")
    assert row.actor == "olga" and row.result == "info"

    world.cloud.groups[gid(2)] = group(2, ["u2", "u5"])
    world.cloud.changed_groups = {gid(2)}
    syncs, writes = world.cloud.syncs, world.directory.writes()
    world.service.request_reconcile()  # Reconcile now waits too
    assert world.service._run_cycle()
    assert world.cloud.syncs == syncs + 1, "paused, the service still reads the cloud"
    assert world.directory.writes() == writes and world.members(2) == {"user2"}, "and writes nothing"
    h = world.health() if world.health_file.exists() else {}
    assert world.service.health.status == "paused" and world.service.health.paused_by == "olga"
    assert h.get("phase") == "idle"
    # Any pass that would write refuses, naming how to resume; a dry run still plans.
    with pytest.raises(PausedError, match="paused by olga since .*writeback resume"):
        world.service.passes.run(PassOptions("group", group=gid(2)))
    dry = world.service.passes.run(PassOptions("full", dry_run=True))
    assert dry.applied is None and any(c.cloud_id == gid(2) for c in dry.plan.changes)

    ended = pausing.resume(world.store, "olga")
    assert ended == pause and pausing.paused(world.store) is None
    assert pausing.resume(world.store, "olga") is None  # not paused: nothing more logged
    (resumed,) = _log(world, "resume")
    assert resumed.actor == "olga" and resumed.detail["paused_by"] == "olga"
    out = world.service.cycle()
    assert out.full and out.groups == -1, (
        "the cycle after a resume is a reconcile (deep: Reconcile now waited)"
    )
    assert world.members(2) == {"user2", "user5"}


def test_an_unreadable_pause_value_keeps_writing_stopped(world: World) -> None:
    world.store.write_meta({pausing.PAUSED_KEY: "not json"})
    assert pausing.paused(world.store) == pausing.Paused("unknown", 0.0)
    with pytest.raises(PausedError):
        pausing.refuse_if_paused(world.store)


def test_restart_drops_the_delta_links_rereads_the_cloud_and_reconciles_deeply(world: World) -> None:
    world.service.cycle()
    with world.store.transaction() as tx:
        tx.set_delta_link("users", "https://graph/users/delta?token=1")
        tx.set_delta_link("groups", "https://graph/groups/delta?token=1")
    world.clock.now += 1  # the next timed reconcile is far away: only the restart makes this one deep
    links: list[tuple[str | None, str | None]] = []
    sync = world.cloud.sync

    def sync_seeing_links(replica: Any, stream: Any = None) -> Any:
        links.append((replica.get_delta_link("users"), replica.get_delta_link("groups")))
        return sync(replica, stream)

    world.cloud.sync = sync_seeing_links  # type: ignore[method-assign]
    world.service.request_restart()
    assert world.service.health.restart_pending
    out = world.service.cycle()
    assert links == [(None, None)], "the sync started without delta links: a full read of Graph"
    assert out.full and out.groups == -1, "a deep reconcile: every managed group"
    assert world.service.health.cycle_kind == "restart" and not world.service.health.restart_pending
    again = world.service.cycle()
    assert not again.full, "once: the cycle after it is incremental again"


def test_the_health_file_follows_the_cycles_phases_and_the_writing_progress(world: World) -> None:
    seen: list[tuple[str, int, int | None]] = []
    write = world.service.write_health

    def record() -> None:
        h = world.service.health
        seen.append((h.phase, h.progress_done, h.progress_total))
        write()

    world.service.write_health = record  # type: ignore[method-assign]
    at_apply: list[tuple[str, int, int | None]] = []

    def observe(plan: Plan, result: ApplyResult) -> None:
        h = world.service.health
        at_apply.append((h.phase, h.progress_done, h.progress_total))

    world.service.on_apply.append(observe)
    world.service.cycle()
    phases = [p for p, _, _ in seen]
    assert phases == ["graph", "plan", "apply", "idle"]
    assert seen[2] == ("apply", 0, 3), "three groups to create"
    assert at_apply == [("apply", 3, 3)], "all three written when the apply ends"
    assert world.health()["phase"] == "idle" and world.health()["cycle_kind"] == "reconcile"
