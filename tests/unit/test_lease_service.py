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
from writeback.adapters.state.leases import session_name
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.lease import LeaderLease
from writeback.app.service import Service
from writeback.core.model import CloudGroup, MemberRef
from writeback.errors import ConfigError, StateError


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


class _SessionsStore(SqliteStore):
    """A real SQLite lease store that records which instances' database sessions it was asked to end (SQLite has
    none; PostgreSQL ends them: tests/integration/test_store_backends.py)."""

    def __init__(self, path: Path, fail: bool = False) -> None:
        super().__init__(path)
        self.ended: list[str] = []
        self.fail = fail

    def end_sessions(self, instance: str) -> int:
        self.ended.append(instance)
        if self.fail:
            raise StateError("state database: permission denied to terminate process")
        return 2


def test_taking_the_lease_over_ends_the_former_holders_sessions_once(tmp_path: Path, caplog: Any) -> None:
    state = tmp_path / "state.sqlite"
    former = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5, holder="a:1:0a0a")
    store = _SessionsStore(state)
    lease = LeaderLease(store, ttl=30, renew_interval=5, holder="b:2:0b0b")
    assert former.tick()
    assert not lease.tick() and store.ended == []  # standing by: the holder's lease still runs
    store.db.execute("UPDATE leases SET expires = 0")  # the former holder was paused past its lease
    assert lease.tick() and store.ended == ["a:1:0a0a"]
    (ended,) = [r for r in caplog.records if getattr(r, "event", None) == "fenced_sessions"]
    assert "ended 2 database sessions of a:1:0a0a" in ended.getMessage()
    assert lease.tick() and store.ended == ["a:1:0a0a"]  # a renewal ends nothing
    store.db.execute("UPDATE leases SET expires = 0")
    assert lease.tick() and lease.token is not None  # its own lease taken again: its own sessions are kept
    assert store.ended == ["a:1:0a0a"]


def test_sessions_that_cannot_be_ended_leave_the_takeover_standing(tmp_path: Path, caplog: Any) -> None:
    state = tmp_path / "state.sqlite"
    assert LeaderLease(SqliteStore(state), ttl=30, renew_interval=5, holder="a:1:0a0a").tick()
    store = _SessionsStore(state, fail=True)
    store.db.execute("UPDATE leases SET expires = 0")
    lease = LeaderLease(store, ttl=30, renew_interval=5, holder="b:2:0b0b")
    assert lease.tick() and lease.role == "active"
    (failed,) = [r for r in caplog.records if getattr(r, "event", None) == "fence_sessions_failed"]
    assert "could not end the database sessions of a:1:0a0a" in failed.getMessage()
    assert "permission denied" in failed.getMessage()


def test_a_leader_resumed_past_its_lease_with_its_sessions_ended_says_at_once_that_it_stands_by(
    tmp_path: Path, caplog: Any
) -> None:
    store = _SessionsStore(tmp_path / "state.sqlite")
    now = [0.0]
    lease = LeaderLease(store, ttl=30, renew_interval=5, holder="a:1:0a0a", clock=lambda: now[0])
    assert lease.tick() and lease.active
    now[0] += 60  # paused for a minute; meanwhile another instance took over and ended its sessions
    store.db.close()  # its next statement fails (as a terminated PostgreSQL session does)
    assert not lease.tick()
    assert lease.token is None and lease.role == "standby"
    (lost,) = [r for r in caplog.records if getattr(r, "event", None) == "role" and r.role == "standby"]
    assert "cannot renew the lease" in lost.getMessage()


def test_session_names_fit_postgresql_and_keep_instances_apart() -> None:
    host = "a-very-long-host-name-of-a-writeback-server.corp.example.test"
    one, two = session_name(f"{host}:4242:0badcafe"), session_name(f"{host}:4242:1badcafe")
    assert one != two and len(one.encode()) <= 63 and len(two.encode()) <= 63
    assert one.startswith("writeback 0badcafe ")
    assert session_name("web1:7:0a0a0a0a") == "writeback 0a0a0a0a web1:7:0a0a0a0a"
    assert session_name("h\u00f6st:7:0a0a") == "writeback 0a0a h?st:7:0a0a"  # PostgreSQL shows ASCII only


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
