"""The service and the leader lease: a standby runs no cycle, a deposed leader stops writing at once, and the
settings of [state] url and the lease are checked at load. The lease runs on a real SQLite state here (the
PostgreSQL side: tests/integration/test_store_backends.py and test_ha.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit import builders
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.lease import LeaderLease
from writeback.app.service import Service
from writeback.core.model import CloudGroup, MemberRef
from writeback.errors import ConfigError


def _world(tmp_path: Path) -> tuple[Service, FakeCloud, FakeDirectory, SqliteStore, LeaderLease, Path]:
    users, accounts = builders.synced_people(3)
    groups = {
        f"g{i}": CloudGroup(f"g{i}", display_name=f"G{i}", members=frozenset({MemberRef("user", f"u{i}")}))
        for i in range(3)
    }
    cloud = FakeCloud(users=users, groups=groups)
    directory = FakeDirectory(accounts=accounts)
    state = tmp_path / "state.sqlite"
    health = tmp_path / "health.json"
    s = builders.settings(service={"poll_interval": 1.0, "health_file": str(health)})
    lease = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5, holder="me")
    service = Service(s, Engine(s, cloud, directory, SqliteStore(state)), lease=lease)
    return service, cloud, directory, SqliteStore(state), lease, health


def test_a_standby_runs_no_cycle_and_says_who_is_active(tmp_path: Path) -> None:
    service, _, directory, other_store, lease, health = _world(tmp_path)
    other = LeaderLease(other_store, ttl=30, renew_interval=5, holder="server-b:42:abc")
    assert other.tick()
    assert not lease.tick()
    assert service.run(once=True) == 0
    data = json.loads(health.read_text())
    assert (data["role"], data["lease_token"]) == ("standby", None)
    assert "server-b:42:abc is active" in lease.reason  # what the health message says while it runs
    assert directory.ops == [] and data["cycles"] == 0


def test_the_active_instance_writes_with_its_token(tmp_path: Path) -> None:
    service, _, directory, _, lease, health = _world(tmp_path)
    assert lease.tick()
    assert service.run(once=True) == 0
    data = json.loads(health.read_text())
    assert (data["role"], data["lease_token"], data["changes_applied"]) == ("active", lease.token, 3)
    assert directory.writes() == 3


def test_a_deposed_leader_stops_writing_before_the_next_change(tmp_path: Path, caplog: Any) -> None:
    service, _, directory, other_store, lease, health = _world(tmp_path)
    assert lease.tick()
    # Another instance takes over behind this one's back (this one was paused past its lease): locally the
    # lease still looks valid, the database says otherwise.
    other_store.db.execute("UPDATE leases SET expires = 0")
    assert LeaderLease(other_store, ttl=30, renew_interval=5, holder="other").tick()
    assert lease.active
    assert service.run(once=True) == 0
    assert [op for op in directory.ops if op[0] != "search"] == [], "nothing written after the lease ended"
    data = json.loads(health.read_text())
    assert data["role"] == "standby" and data["changes_applied"] == 0
    (fenced,) = [r for r in caplog.records if getattr(r, "event", None) == "fenced"]
    assert fenced.getMessage().startswith("stopped writing to AD: ")
    assert "fencing token 1 ended" in fenced.getMessage()


@pytest.mark.parametrize(
    ("state", "service", "key", "reason"),
    [
        ({"url": "postgresql://wb:hunter2xyz@db/wb"}, {}, "state.url", "must not contain the password"),
        (
            {"url": "postgresql://wb@db/wb?password=hunter2xyz"},
            {},
            "state.url",
            "must not contain the password",
        ),
        ({"url": "postgresql://wb@db/wb?sslmode=require"}, {}, "state.url", "does not verify"),
        ({"url": "mysql://wb@db/wb"}, {}, "state.url", "must be a PostgreSQL URL"),
        ({"password_env": "PGPW"}, {}, "state.password_env", "state.url is not"),
        ({}, {"lease_ttl": 10, "lease_renew_interval": 6}, "service.lease_renew_interval", "at most half"),
    ],
)
def test_invalid_state_and_lease_settings_say_which_key(
    state: dict[str, Any], service: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        builders.settings(state=state, service=service)
    message = str(info.value)
    assert key in message and reason in message
    assert "hunter2xyz" not in message


def test_postgresql_settings_and_their_defaults() -> None:
    s = builders.settings(
        state={"url": "postgresql://wb@db.corp.test/wb?sslrootcert=/etc/ca.pem", "password_file": "/etc/pw"}
    )
    assert s.state.url == "postgresql://wb@db.corp.test/wb?sslrootcert=/etc/ca.pem"
    assert s.state.password is not None and s.state.password.file == "/etc/pw"
    assert (s.service.lease_ttl, s.service.lease_renew_interval) == (15.0, 5.0)
    local = builders.settings(state={"url": "postgresql://wb@127.0.0.1:5432/wb?sslmode=disable"})
    assert local.state.url is not None  # no TLS is acceptable on loopback only
