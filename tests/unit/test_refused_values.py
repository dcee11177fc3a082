"""A change AD refuses for the value itself (issue 23: ESC in a name, `sAMAccountName contains invalid 0x1b`)
is reported once and not retried on a timer; a refusal that can pass later (access rights) still is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.unit import builders
from tests.unit.fakes import FakeDirectory
from tests.unit.test_service import Clock, DeltaCloud, gid, group, settings
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.service import Service
from writeback.core.dn import normalize_dn


def _world(tmp_path: Path) -> tuple[Service, DeltaCloud, FakeDirectory, SqliteStore, Clock]:
    users, accounts = builders.synced_people(6)
    cloud = DeltaCloud(users=users, groups={gid(i): group(i, [f"u{i}"]) for i in range(1, 3)})
    directory = FakeDirectory(accounts=accounts)
    store = SqliteStore(":memory:")
    s = settings(tmp_path)
    clock = Clock()
    return Service(s, Engine(s, cloud, directory, store), clock=clock), cloud, directory, store, clock


def _dn(directory: FakeDirectory, i: int) -> str:
    (dn,) = [
        e["dn"]
        for e in directory.groups.values()
        if e.get("msDS-ExternalDirectoryObjectId") == f"Group_{gid(i)}"
    ]
    return normalize_dn(dn)


def test_a_value_ad_refuses_is_reported_once_and_not_retried_every_cycle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, cloud, directory, store, clock = _world(tmp_path)
    assert service.cycle().applied == 2
    directory.refuse_value_on.add(_dn(directory, 1))
    cloud.groups[gid(1)] = group(1, ["u1", "u4"])
    cloud.changed_groups = {gid(1)}
    with caplog.at_level(logging.ERROR, logger="writeback.service"):
        assert service.cycle().failed == 1
        writes = directory.writes()
        for _ in range(40):  # 40 polls, 2 s apart: no retry on a timer (a backoff would have retried 4 times)
            clock.now += 2
            service.cycle()
    assert directory.writes() == writes, "the refused write was sent again"
    refused = [r for r in caplog.records if getattr(r, "event", None) == "group_refused"]
    assert len(refused) == 1 and "CONSTRAINT_VIOLATION" in refused[0].getMessage()
    assert len([e for e in store.read_log(action="add_members") if e.result == "error"]) == 1
    assert service.health.failing_groups == 1
    # The next reconcile (every 100 s here) compares it once more: at most one attempt per reconcile.
    clock.now += 100
    assert service.cycle().full
    assert len([e for e in store.read_log(action="add_members") if e.result == "error"]) == 2
    assert len([r for r in caplog.records if getattr(r, "event", None) == "group_refused"]) == 1

    # Once the cloud group changes (someone fixed it), it is tried again at once, and goes through.
    directory.refuse_value_on.clear()
    cloud.groups[gid(1)] = group(1, ["u1", "u5"])
    cloud.changed_groups = {gid(1)}
    clock.now += 2
    assert service.cycle().failed == 0
    assert service.health.failing_groups == 0


def test_a_refusal_that_may_pass_later_is_still_retried(tmp_path: Path) -> None:
    service, cloud, directory, _store, clock = _world(tmp_path)
    service.cycle()
    directory.fail_on.add(_dn(directory, 2))  # INSUFFICIENT_ACCESS: an administrator may fix the rights
    cloud.groups[gid(2)] = group(2, ["u2", "u3"])
    cloud.changed_groups = {gid(2)}
    assert service.cycle().failed == 1
    clock.now += 3600
    assert service.cycle().failed == 1, "retried after its backoff"
